//! `kt-scale`: the scale test (`make scale-test`; docs/performance.md).
//!
//! For each size in `--levels`, in order: registers identities up to that size in the data
//! directory ([`kt_bench::scale::load_users`]), then starts the real `ktd` binary on it and
//! measures the time from start to serving, lookups and histories under load (kt-bench, with
//! answers verified and not), the server's memory, and the disk used.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use kt_bench::report::{KindReport, Report};
use kt_bench::scale::{load_users, LoadStats};
use kt_bench::{run, BenchConfig, BenchError, KeyAlg, Kind, Mix, Stop, Target, WorkloadName};
use kt_proto::v1::log_client::LogClient;
use kt_proto::v1::GetCheckpointRequest;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "kt-scale",
    version,
    about = "KeyTrail scale test: load users, measure reads"
)]
struct Cli {
    /// The ktd binary to measure (a release build).
    #[arg(long)]
    ktd: PathBuf,
    /// Data directory; created on first use, and grown level by level (reuse it to resume).
    #[arg(long)]
    data_dir: PathBuf,
    /// Sizes at which to measure, ascending.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
    levels: Vec<u64>,
    /// Registrations per epoch while loading.
    #[arg(long, default_value_t = 20_000)]
    epoch_size: usize,
    /// Length of each measured kt-bench run, in seconds (after 2 s of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Also time a start with the full start-up check (it re-reads the whole log).
    #[arg(long)]
    full_restart: bool,
    /// The kt-audit binary: when given, a fresh audit (every entry replayed from the first:
    /// signatures, the directory's rules, the map rebuilt in memory) is timed at each size up to
    /// `--audit-up-to`.
    #[arg(long)]
    kt_audit: Option<PathBuf>,
    #[arg(long, default_value_t = 1_000_000)]
    audit_up_to: u64,
    #[arg(long, default_value = "scale")]
    prefix: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The figures of one size.
#[derive(Debug, Serialize)]
struct Level {
    users: u64,
    /// Loading up to this size (absent when the data directory already held it).
    load: Option<LoadFigures>,
    /// From starting ktd right after loading (quick start-up check) to its first answer; RocksDB
    /// replays the loader's write-ahead log first.
    first_start_secs: f64,
    /// From starting ktd again after a clean stop (quick start-up check: the tree's right border
    /// only) to its first answer.
    restart_quick_secs: f64,
    /// The same with the full start-up check, when asked for.
    restart_full_secs: Option<f64>,
    lookup_verified: KindReport,
    lookup_unverified: KindReport,
    history_verified: KindReport,
    /// A fresh kt-audit run over the whole log, when asked for.
    audit: Option<AuditFigures>,
    /// ktd's resident memory after the runs, and its peak.
    rss_mib: f64,
    peak_rss_mib: f64,
    disk_mib: f64,
}

#[derive(Debug, Serialize)]
struct AuditFigures {
    entries: u64,
    secs: f64,
    entries_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct LoadFigures {
    registered: u64,
    epochs: u64,
    secs: f64,
    registrations_per_sec: f64,
    commit_us_per_entry_at_end: f64,
}

impl From<LoadStats> for LoadFigures {
    fn from(s: LoadStats) -> Self {
        LoadFigures {
            registered: s.registered,
            epochs: s.epochs,
            secs: s.secs,
            registrations_per_sec: s.registered as f64 / s.secs.max(1e-9),
            commit_us_per_entry_at_end: s.commit_us_per_entry_at_end,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match scale_test(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kt-scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fail(what: impl std::fmt::Display) -> BenchError {
    BenchError::Scale(what.to_string())
}

fn scale_test(cli: &Cli) -> Result<(), BenchError> {
    if cli.levels.windows(2).any(|w| w[0] >= w[1]) || cli.levels.is_empty() {
        return Err(BenchError::Config("--levels must be ascending".into()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(fail)?;
    if !cli.data_dir.join("CURRENT").exists() {
        // ktd makes the log's keys and its first checkpoint.
        std::fs::create_dir_all(&cli.data_dir).map_err(fail)?;
        let ktd = Ktd::start(cli, "quick")?;
        runtime.block_on(ktd.ready())?;
        ktd.stop()?;
    }
    let mut levels = Vec::new();
    for &users in &cli.levels {
        eprintln!("== {users} users");
        let load = load_to(cli, users)?;
        let ktd = Ktd::start(cli, "quick")?;
        let first_start_secs = runtime.block_on(ktd.ready())?;
        eprintln!("ktd serving {first_start_secs:.2} s after its first start (quick check)");
        let lookup_verified = runtime.block_on(measure(cli, &ktd, users, Kind::Lookup, true))?;
        let lookup_unverified = runtime.block_on(measure(cli, &ktd, users, Kind::Lookup, false))?;
        let history_verified = runtime.block_on(measure(cli, &ktd, users, Kind::History, true))?;
        let (rss_mib, peak_rss_mib) = ktd.memory()?;
        let audit = match &cli.kt_audit {
            Some(kt_audit) if users <= cli.audit_up_to => Some(audit(cli, kt_audit, &ktd, users)?),
            _ => None,
        };
        ktd.stop()?;
        let ktd = Ktd::start(cli, "quick")?;
        let restart_quick_secs = runtime.block_on(ktd.ready())?;
        ktd.stop()?;
        eprintln!("ktd serving {restart_quick_secs:.2} s after a restart (quick check)");
        let restart_full_secs = if cli.full_restart {
            let ktd = Ktd::start(cli, "full")?;
            let secs = runtime.block_on(ktd.ready())?;
            ktd.stop()?;
            eprintln!("ktd serving {secs:.2} s after start (full check)");
            Some(secs)
        } else {
            None
        };
        let level = Level {
            users,
            load,
            first_start_secs,
            restart_quick_secs,
            restart_full_secs,
            lookup_verified,
            lookup_unverified,
            history_verified,
            audit,
            rss_mib,
            peak_rss_mib,
            disk_mib: dir_size(&cli.data_dir)? as f64 / (1 << 20) as f64,
        };
        print_level(&level);
        levels.push(level);
        if let Some(path) = &cli.json {
            // Written after every level, so a long run that is stopped keeps what it measured.
            let json = serde_json::to_vec_pretty(&levels)?;
            std::fs::write(path, json).map_err(|source| BenchError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Registers identities until the log holds `users` (each level grows the last one).
fn load_to(cli: &Cli, users: u64) -> Result<Option<LoadFigures>, BenchError> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    // The log's size when this load's first epoch lands, less that epoch: where it started.
    let mut first: Option<u64> = None;
    let stats = load_users(
        &cli.data_dir,
        &cli.prefix,
        KeyAlg::Ed25519,
        users,
        cli.epoch_size,
        |loaded, total| {
            let from = *first.get_or_insert(loaded.saturating_sub(cli.epoch_size as u64));
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = Instant::now();
                let rate = (loaded - from) as f64 / started.elapsed().as_secs_f64();
                eprint!("\rloaded {loaded} of {total} ({rate:.0}/s)   ");
                let _ = std::io::stderr().flush();
            }
        },
    )?;
    Ok(stats.map(|s| {
        eprintln!(
            "\rloaded {} in {:.0} s; commit {:.1} µs per entry at the end",
            s.registered, s.secs, s.commit_us_per_entry_at_end
        );
        s.into()
    }))
}

/// One kt-bench run of `kind` against the loaded identities.
async fn measure(
    cli: &Cli,
    ktd: &Ktd,
    users: u64,
    kind: Kind,
    verify: bool,
) -> Result<KindReport, BenchError> {
    let path = |name: &str| cli.data_dir.join(name).display().to_string();
    let target = Target {
        server: ktd.url(),
        log_key: kt_client::read_log_key(&path("log.pub")).map_err(BenchError::Config)?,
        vrf_key: kt_client::directory::read_vrf_key(&path("vrf.pub"))
            .map_err(BenchError::Config)?,
        provider_token: None,
    };
    let workload = match kind {
        Kind::Lookup => WorkloadName::Lookup,
        _ => WorkloadName::History,
    };
    let stop = Stop::Duration(Duration::from_secs(cli.seconds));
    let mut config = BenchConfig::new(target, workload, Mix::only(kind), stop);
    config.clients = cli.clients;
    config.connections = cli.connections;
    config.users = users;
    config.skip_setup = true;
    config.verify = verify;
    config.prefix = cli.prefix.clone();
    config.warmup = Duration::from_secs(2);
    config.progress = false;
    let report: Report = run(&config).await?;
    let k = report.kinds[kind.name()].clone();
    if k.ok == 0 || k.verify_failures > 0 || !k.errors_by_code.is_empty() {
        return Err(fail(format!(
            "{} {}: {}",
            kind.name(),
            if verify { "verified" } else { "unverified" },
            report.text()
        )));
    }
    Ok(k)
}

/// Times a kt-audit run from an empty state directory over the log of `entries`.
fn audit(cli: &Cli, kt_audit: &Path, ktd: &Ktd, entries: u64) -> Result<AuditFigures, BenchError> {
    let state = cli.data_dir.with_extension("audit-state");
    let _ = std::fs::remove_dir_all(&state);
    let started = Instant::now();
    let status = Command::new(kt_audit)
        .args(["--server", &ktd.url(), "--once", "--quiet"])
        .arg("--log-key")
        .arg(cli.data_dir.join("log.pub"))
        .arg("--state-dir")
        .arg(&state)
        .status()
        .map_err(|e| fail(format!("starting {}: {e}", kt_audit.display())))?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&state);
    if !status.success() {
        return Err(fail(format!("kt-audit exited with {status}")));
    }
    eprintln!("kt-audit replayed {entries} entries in {secs:.1} s");
    Ok(AuditFigures {
        entries,
        secs,
        entries_per_sec: entries as f64 / secs,
    })
}

fn print_level(l: &Level) {
    let row = |name: &str, k: &KindReport| {
        println!(
            "{:>10} {name:<20} {:>8.0}/s  p50 {:>7.0} µs  p99 {:>7.0} µs  answer {:>5.0} B (excl. checkpoint){}",
            l.users,
            k.throughput_ops_per_sec,
            k.latency_us.p50,
            k.latency_us.p99,
            k.answer_bytes.as_ref().map_or(0.0, |b| b.mean_excl_checkpoint),
            k.verify_us
                .as_ref()
                .map_or(String::new(), |v| format!("  verify p50 {:.0} µs", v.p50)),
        );
    };
    row("lookup verified", &l.lookup_verified);
    row("lookup unverified", &l.lookup_unverified);
    row("history verified", &l.history_verified);
    println!(
        "{:>10} first start {:.2} s, restart {:.2} s (quick){}, RSS {:.0} MiB (peak {:.0}), disk {:.0} MiB{}",
        l.users,
        l.first_start_secs,
        l.restart_quick_secs,
        l.restart_full_secs
            .map_or(String::new(), |s| format!(", {s:.2} s (full)")),
        l.rss_mib,
        l.peak_rss_mib,
        l.disk_mib,
        l.load.as_ref().map_or(String::new(), |f| format!(
            ", loaded {:.0}/s, commit {:.1} µs/entry",
            f.registrations_per_sec, f.commit_us_per_entry_at_end
        )),
    );
    if let Some(a) = &l.audit {
        println!(
            "{:>10} audit replay {:.0} entries/s ({:.1} s)",
            l.users, a.entries_per_sec, a.secs
        );
    }
}

/// Bytes in the files under `dir`.
fn dir_size(dir: &Path) -> Result<u64, BenchError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let meta = entry.metadata().map_err(fail)?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// A running ktd on loopback ports, its output appended to `<data dir>.ktd.log`.
struct Ktd {
    child: Child,
    grpc: String,
    started: Instant,
    log: PathBuf,
}

fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(fail)?
        .port())
}

impl Ktd {
    fn start(cli: &Cli, startup_check: &str) -> Result<Ktd, BenchError> {
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let http = format!("127.0.0.1:{}", free_port()?);
        let log = cli.data_dir.with_extension("ktd.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(fail)?;
        let err = out.try_clone().map_err(fail)?;
        let started = Instant::now();
        let child = Command::new(&cli.ktd)
            .arg("--data-dir")
            .arg(&cli.data_dir)
            .args(["--grpc-addr", &grpc, "--http-addr", &http])
            .args(["--startup-check", startup_check])
            // The load generator is one peer: per-peer limits would measure the limiter.
            .args(["--read-rate-per-sec", "0", "--write-rate-per-sec", "0"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| fail(format!("starting {}: {e}", cli.ktd.display())))?;
        Ok(Ktd {
            child,
            grpc,
            started,
            log,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Waits for the first answered `GetCheckpoint`; the seconds since start.
    async fn ready(&self) -> Result<f64, BenchError> {
        let deadline = self.started + Duration::from_secs(1800);
        while Instant::now() < deadline {
            if let Ok(mut client) = LogClient::connect(self.url()).await {
                if client
                    .get_checkpoint(GetCheckpointRequest::default())
                    .await
                    .is_ok()
                {
                    return Ok(self.started.elapsed().as_secs_f64());
                }
            }
            if std::fs::metadata(format!("/proc/{}", self.child.id())).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(fail(format!(
            "ktd did not start serving; see {}",
            self.log.display()
        )))
    }

    /// Resident and peak resident memory in MiB, from `/proc`.
    fn memory(&self) -> Result<(f64, f64), BenchError> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).map_err(fail)?;
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
    }

    /// SIGTERM (ktd finishes its epoch and exits), then waits.
    fn stop(mut self) -> Result<(), BenchError> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(fail)?;
        let status = self.child.wait().map_err(fail)?;
        if !status.success() {
            return Err(fail(format!(
                "ktd exited with {status}; see {}",
                self.log.display()
            )));
        }
        Ok(())
    }
}
