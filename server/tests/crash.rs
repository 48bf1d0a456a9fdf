//! Crash safety: the real `ktd` binary on real RocksDB, under concurrent load (message-log
//! appends, directory registrations and key rotations with real signatures, a checkpoint
//! watcher), killed with SIGKILL at random moments and restarted on the same data directory.
//! After every restart (`docs/reliability.md`, "Crash safety"):
//!
//! - every acknowledged write is at its acknowledged index with exactly the same bytes;
//! - every checkpoint ever served is a prefix of the new state (checked against a verified copy
//!   of the log, and by the server's consistency proofs) and is the checkpoint stored for its
//!   epoch: no epoch was signed twice with different contents;
//! - the stored checkpoints form an unbroken hash chain;
//! - a replay of the log gives the latest map root, and kt-audit (carrying its state across
//!   restarts) passes: chain, roots, consistency, per-epoch map roots, HTTP tiles.
//!
//! `KT_CRASH_CYCLES` kills (default 25; `make crash-test` runs 500), `KT_CRASH_SEED` to repeat a
//! run's choices, `KT_CRASH_FULL_EVERY` (default 10): every that many restarts, and after the
//! last, the check re-reads everything instead of what is new; `KT_CRASH_VERBOSE` prints every
//! check; `KT_CRASH_KTD` runs another ktd binary (a copy, for long runs).

mod common;
#[path = "common/crash.rs"]
mod crash;

use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crash::{
    free_port, Appender, Checker, DirectoryWorker, Ktd, KtdOptions, Output, Ready, Rng, Shared,
    Target,
};

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// How a cycle ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// While ktd starts (RocksDB recovery, start-up verification), before it serves.
    DuringStartup(u64),
    /// With no load: during heartbeat epochs.
    Idle(u64),
    /// At a random moment under load.
    UnderLoad(u64),
    /// Right after the `n`-th acknowledgement of the cycle.
    AfterReply(u64),
}

impl Kill {
    fn pick(rng: &mut Rng, restart: bool) -> Kill {
        match rng.below(10) {
            0 if restart => Kill::DuringStartup(rng.below(60)),
            0 | 1 => Kill::Idle(rng.below(300)),
            2..=5 => Kill::UnderLoad(1 + rng.below(400)),
            _ => Kill::AfterReply(1 + rng.below(30)),
        }
    }
}

/// What the run did, for the report and `docs/reliability.md`.
#[derive(Debug, Default)]
struct Stats {
    kills: u64,
    mid_epoch: u64,
    after_reply: u64,
    during_startup: u64,
    idle: u64,
    full_startup_checks: u64,
    quick_startup_checks: u64,
    checks: u64,
    full_checks: u64,
    stored_compared: u64,
    port_moves: u64,
}

/// One run: a data directory, the clients' ledger and workers, and the checker.
struct Harness {
    seed: u64,
    work: PathBuf,
    output: Output,
    rng: Rng,
    shared: Arc<Shared>,
    appenders: Vec<Appender>,
    directory: Vec<DirectoryWorker>,
    checker: Checker,
    stats: Stats,
    ports: (u16, u16),
    token: Option<String>,
    log_key: Option<String>,
    cycle: u64,
    started: Instant,
}

/// A started ktd and how to reach it.
struct Running {
    ktd: Ktd,
    ready: Ready,
    target: Target,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        // Kept when the test fails (for a post-mortem), removed when it passes.
        let work = tempfile::Builder::new()
            .prefix("kt-crash-")
            .tempdir()
            .unwrap()
            .keep();
        let mut rng = Rng::new(seed);
        Harness {
            seed,
            output: Output::default(),
            appenders: (0..APPENDERS)
                .map(|i| Appender::new(i, rng.fork(), &work))
                .collect(),
            directory: (0..DIRECTORY_WORKERS)
                .map(|i| DirectoryWorker::new(i, rng.fork(), &work))
                .collect(),
            checker: Checker::new(&work),
            rng,
            work,
            shared: Arc::new(Shared::default()),
            stats: Stats::default(),
            ports: (free_port(), free_port()),
            token: None,
            log_key: None,
            cycle: 0,
            started: Instant::now(),
        }
    }

    fn fail(&self, what: &str, details: &[String]) -> ! {
        panic!(
            "CRASH HARNESS FAILURE ({what}); seed {} (rerun with KT_CRASH_SEED={}); data kept in {}\n{}\n--- writes that got no OK answer, by error ---\n{}\n--- ktd output (last lines) ---\n{}",
            self.seed,
            self.seed,
            self.work.display(),
            details.join("\n"),
            self.errors(),
            self.output.tail(40)
        );
    }

    /// The errors of unanswered writes so far, one line each with its count.
    fn errors(&self) -> String {
        let ledger = self.shared.ledger.lock().unwrap();
        let lines: Vec<String> = ledger
            .counts
            .errors
            .iter()
            .map(|(error, n)| format!("{n} × {error}"))
            .collect();
        lines.join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.work.join("db")
    }

    /// Options for the next start: epoch length, heartbeat and batch size vary, so kills fall
    /// in epochs of every shape.
    fn options(&mut self, full_startup_check: bool) -> KtdOptions {
        let epoch_ms = [2, 5, 10, 20][self.rng.below(4) as usize];
        KtdOptions {
            data_dir: self.data_dir(),
            grpc_port: self.ports.0,
            http_port: self.ports.1,
            epoch_ms,
            heartbeat_ms: epoch_ms.max([30, 100, 250][self.rng.below(3) as usize]),
            // Now and then a small batch, so that one burst spans several epochs.
            max_batch: if self.rng.below(4) == 0 { 4 } else { 1_000 },
            full_startup_check,
            output: self.output.clone(),
        }
    }

    /// Starts ktd (on new ports if someone took ours while it was down) and waits until it
    /// serves; a refusal to start is a failure.
    fn start(&mut self, full_startup_check: bool) -> Result<Running, String> {
        loop {
            let opts = self.options(full_startup_check);
            let mut ktd = Ktd::spawn(&opts);
            let ready = match ktd.wait_ready() {
                Ok(ready) => ready,
                Err(status) if self.output.tail(3).contains("binding") => {
                    eprintln!("crash harness: port taken ({status}), moving to new ports");
                    self.ports = (free_port(), free_port());
                    self.stats.port_moves += 1;
                    continue;
                }
                Err(status) => {
                    return Err(format!(
                        "ktd refused to start after {} kills: {status}",
                        self.stats.kills
                    ))
                }
            };
            if full_startup_check {
                self.stats.full_startup_checks += 1;
            } else {
                self.stats.quick_startup_checks += 1;
            }
            let data_dir = self.data_dir();
            let token = self
                .token
                .get_or_insert_with(|| {
                    std::fs::read_to_string(data_dir.join("provider.token"))
                        .unwrap()
                        .trim()
                        .to_owned()
                })
                .clone();
            if *self.log_key.get_or_insert_with(|| ready.log_key.clone()) != ready.log_key {
                return Err(format!("the log key changed to {}", ready.log_key));
            }
            let target = Target::new(&ready, token);
            return Ok(Running { ktd, ready, target });
        }
    }

    /// Kills ktd while it starts (RocksDB recovery, start-up verification).
    async fn kill_during_startup(&mut self, ms: u64) -> Result<(), String> {
        let full = self.rng.below(2) == 0;
        let opts = self.options(full);
        let ktd = Ktd::spawn(&opts);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Err(status) = ktd.kill() {
            // A taken port is not ktd's fault; anything else is.
            if !self.output.tail(3).contains("binding") {
                return Err(format!("ktd exited on its own while starting: {status}"));
            }
        }
        self.stats.kills += 1;
        self.stats.during_startup += 1;
        Ok(())
    }

    /// The checks after a restart (see `Checker::check`).
    async fn check(&mut self, running: &Running, full: bool) -> Result<(), Vec<String>> {
        let report = self
            .checker
            .check(
                &running.target,
                &running.ready.http_url,
                &self.shared,
                full,
                SAMPLE,
                &mut self.rng,
            )
            .await?;
        let (acked, served) = {
            let ledger = self.shared.ledger.lock().unwrap();
            (ledger.acked.len(), ledger.served.len())
        };
        self.stats.checks += 1;
        self.stats.full_checks += u64::from(full);
        self.stats.stored_compared += report.stored_compared;
        if full || std::env::var_os("KT_CRASH_VERBOSE").is_some() {
            eprintln!(
                "crash harness: after {} kills: epoch {}, {} entries ({} new), {acked} acknowledged writes, {served} served checkpoints; {} consistency proofs{} [{:.0?}]",
                self.stats.kills,
                report.epoch,
                report.size,
                report.new_entries,
                report.consistency_proofs,
                if full { ", full check" } else { "" },
                self.started.elapsed()
            );
        }
        Ok(())
    }

    /// Puts the server under load (unless idle), kills it as `kill` says, and collects the
    /// workers and what their clients found wrong.
    async fn load_and_kill(&mut self, running: Running, kill: Kill) -> Result<(), Vec<String>> {
        let Running { ktd, target, .. } = running;
        self.cycle += 1;
        let cycle = self.cycle;
        let shared = self.shared.clone();
        shared.stop.store(false, SeqCst);
        let acks_before = shared.acks.load(SeqCst);
        let loaded = !matches!(kill, Kill::Idle(_));
        let mut appenders = Vec::new();
        let mut directory = Vec::new();
        let mut watcher = None;
        if loaded {
            for a in self.appenders.drain(..) {
                appenders.push(tokio::spawn(a.run(target.clone(), shared.clone(), cycle)));
            }
            for d in self.directory.drain(..) {
                directory.push(tokio::spawn(d.run(target.clone(), shared.clone(), cycle)));
            }
            watcher = Some(tokio::spawn(crash::watcher(target.clone(), shared.clone())));
        }
        match kill {
            Kill::Idle(ms) | Kill::UnderLoad(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Kill::AfterReply(n) => {
                // Not a timing assertion: a hang guard, after which the kill happens anyway.
                let guard = tokio::time::sleep(Duration::from_secs(10));
                tokio::pin!(guard);
                loop {
                    let notified = shared.ack_notify.notified();
                    if shared.acks.load(SeqCst) >= acks_before + n {
                        self.stats.after_reply += 1;
                        break;
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = &mut guard => {
                            // Worth knowing (a server refusing writes: a full disk, a stopped
                            // sequencer), not a failure by itself: the checks decide.
                            eprintln!(
                                "crash harness: cycle {cycle}: fewer than {n} writes acknowledged in 10 s; errors so far:\n{}",
                                self.errors()
                            );
                            break;
                        }
                    }
                }
            }
            Kill::DuringStartup(_) => unreachable!("handled by kill_during_startup"),
        }
        // Workers finish the write they are waiting on (which the kill cuts off) and send no
        // more, so that only writes in flight at the kill go unanswered.
        shared.stop.store(true, SeqCst);
        let in_flight = shared.in_flight.load(SeqCst);
        let killed = ktd.kill();
        self.stats.kills += 1;
        self.stats.idle += u64::from(!loaded);
        self.stats.mid_epoch += u64::from(in_flight > 0);
        for t in appenders {
            self.appenders.push(t.await.unwrap());
        }
        for t in directory {
            self.directory.push(t.await.unwrap());
        }
        if let Some(w) = watcher {
            w.abort();
        }
        let mut failures = std::mem::take(&mut shared.ledger.lock().unwrap().failures);
        if let Err(status) = killed {
            failures.push(format!("ktd exited on its own under load: {status}"));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    fn report(&self) {
        // RocksDB flushes its memtables into SST files on every reopen and compacts them in the
        // background, so kills also fell during flushes and compactions.
        let (mut sst, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(self.data_dir()).unwrap() {
            let entry = entry.unwrap();
            bytes += entry.metadata().unwrap().len();
            sst += u64::from(entry.file_name().to_string_lossy().ends_with(".sst"));
        }
        let ledger = self.shared.ledger.lock().unwrap();
        let landed = self.checker.landed(&ledger.unanswered);
        let (s, c) = (&self.stats, &ledger.counts);
        eprintln!(
            "crash harness: PASSED, seed {}, {:.1?}\n  \
             kills: {} ({} with writes in flight, {} right after a reply, {} during start-up, {} idle)\n  \
             restarts: {} with the full start-up check, {} quick; {} checks ({} full); ports moved {} times\n  \
             acknowledged: {} records, {} registrations, {} rotations ({} in all), all present with the same bytes\n  \
             unanswered writes (in flight at a kill): {} ({} RESOURCE_EXHAUSTED), of which {} are in the log ({} directory writes seen landed by their owner)\n  \
             log: {} entries, {} epochs in an unbroken chain; {} served checkpoints, {} compared with storage, {} consistency proofs; kt-audit started {} times\n  \
             data directory: {sst} SST files, {:.1} MB",
            self.seed,
            self.started.elapsed(),
            s.kills,
            s.mid_epoch,
            s.after_reply,
            s.during_startup,
            s.idle,
            s.full_startup_checks,
            s.quick_startup_checks,
            s.checks,
            s.full_checks,
            s.port_moves,
            c.records,
            c.registers,
            c.rotations,
            ledger.acked.len(),
            c.unanswered,
            c.exhausted,
            landed,
            c.landed_unanswered,
            self.checker.entries().len(),
            self.checker.chain_epoch().map_or(0, |e| e + 1),
            ledger.served.len(),
            s.stored_compared,
            self.checker.proofs,
            self.checker.auditor_restarts,
            bytes as f64 / 1e6,
        );
        for (error, n) in &c.errors {
            eprintln!("  unanswered: {n} × {error}");
        }
        drop(ledger);
    }

    /// Removes the data (only when everything passed).
    fn clean_up(self) {
        std::fs::remove_dir_all(&self.work).unwrap();
    }
}

const APPENDERS: usize = 6;
const DIRECTORY_WORKERS: usize = 3;
/// Older served checkpoints proven consistent again at each check that is not full.
const SAMPLE: usize = 64;

/// `KT_CRASH_SEED`, or a fresh seed (printed, so that the run can be repeated).
fn seed() -> u64 {
    env_u64(
        "KT_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ u64::from(std::process::id()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing() {
    let cycles = env_u64("KT_CRASH_CYCLES", 25);
    let full_every = env_u64("KT_CRASH_FULL_EVERY", 10).max(1);
    let seed = seed();
    eprintln!(
        "crash harness: seed {seed}, {cycles} kill cycles (repeat with KT_CRASH_SEED={seed} KT_CRASH_CYCLES={cycles})"
    );
    let mut h = Harness::new(seed);
    loop {
        let last = h.stats.kills >= cycles;
        let kill = (!last).then(|| Kill::pick(&mut h.rng, h.stats.kills > 0));
        if let Some(Kill::DuringStartup(ms)) = kill {
            if let Err(e) = h.kill_during_startup(ms).await {
                h.fail("kill during start-up", &[e]);
            }
            continue;
        }
        // The full start-up verification on about half the restarts, and the last.
        let full_startup_check = last || h.rng.below(2) == 0;
        let running = match h.start(full_startup_check) {
            Ok(running) => running,
            Err(e) => h.fail("restart", &[e]),
        };
        // After every restart: everything clients were told still holds.
        let full = last || (h.stats.kills > 0 && h.stats.kills.is_multiple_of(full_every));
        if let Err(failures) = h.check(&running, full).await {
            h.fail(&format!("check after {} kills", h.stats.kills), &failures);
        }
        let Some(kill) = kill else {
            break;
        };
        if let Err(failures) = h.load_and_kill(running, kill).await {
            h.fail(&format!("clients in cycle {}", h.cycle), &failures);
        }
    }
    h.report();
    h.clean_up();
}

/// The harness can fail: a restore of a stale backup after a crash (the Venafi 2017 failure,
/// storage internally consistent but behind what was acknowledged) is caught by the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_catches_a_restored_stale_backup() {
    let mut h = Harness::new(seed());
    let running = h.start(true).unwrap();
    h.check(&running, true).await.unwrap();
    h.load_and_kill(running, Kill::AfterReply(20))
        .await
        .unwrap();
    let backup = h.work.join("backup");
    common::copy_dir(&h.data_dir(), &backup);

    let running = h.start(false).unwrap();
    h.check(&running, false).await.unwrap();
    h.load_and_kill(running, Kill::AfterReply(20))
        .await
        .unwrap();
    std::fs::remove_dir_all(h.data_dir()).unwrap();
    common::copy_dir(&backup, &h.data_dir());

    // The backup is consistent in itself: ktd starts on it with the full verification.
    let running = h.start(true).unwrap();
    let failures = h.check(&running, false).await.unwrap_err();
    // The entries of the second load were acknowledged but are not in the restored log, and
    // so are the checkpoints served during it.
    let gone = |what: &str| failures.iter().any(|f| f.contains(what));
    assert!(gone("is gone: the log has"), "{failures:#?}");
    assert!(gone("is beyond the restarted log"), "{failures:#?}");
    // Under load it signs new checkpoints for epochs it had already signed and served.
    let failures = h
        .load_and_kill(running, Kill::AfterReply(20))
        .await
        .unwrap_err();
    let forked = |what: &str| failures.iter().any(|f| f.contains(what));
    assert!(
        forked("was served with two different checkpoints"),
        "{failures:#?}"
    );
    h.clean_up();
}
