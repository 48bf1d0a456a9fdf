//! What one run does: the command line ([`Args`]) and the validated settings ([`BenchConfig`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kt_core::vrf::VrfPublicKey;
use serde::Serialize;

use crate::error::BenchError;

/// One kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A single-entry `Log.Append` of a message-log record.
    Append,
    /// A `Log.AppendBatch` of `batch_size` records.
    #[serde(rename = "append-batch")]
    AppendBatch,
    /// A new identity: a lookup for its VRF label, then `Directory.Register`.
    Register,
    /// A new key for a registered identity, signed by the previous and the new key.
    Rotate,
    /// `Directory.Lookup` with full proofs.
    Lookup,
    /// `Directory.History` with full proofs.
    History,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Append,
        Kind::AppendBatch,
        Kind::Register,
        Kind::Rotate,
        Kind::Lookup,
        Kind::History,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Append => "append",
            Kind::AppendBatch => "append-batch",
            Kind::Register => "register",
            Kind::Rotate => "rotate",
            Kind::Lookup => "lookup",
            Kind::History => "history",
        }
    }

    /// Whether the kind works on identities registered before the run (the setup phase).
    pub fn needs_users(self) -> bool {
        matches!(self, Kind::Rotate | Kind::Lookup | Kind::History)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The workload named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadName {
    Append,
    AppendBatch,
    Register,
    Rotate,
    Lookup,
    History,
    /// A weighted mix (`--mix`).
    Mix,
}

/// Weights of the kinds of a mix, e.g. `lookup=90,rotate=5,append=5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
    total: u32,
}

impl Mix {
    /// A single kind (weight 1).
    pub fn only(kind: Kind) -> Mix {
        Mix {
            weights: vec![(kind, 1)],
            total: 1,
        }
    }

    /// The kinds with a weight above zero.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.weights.iter().map(|(k, _)| *k)
    }

    pub fn weights(&self) -> BTreeMap<String, u32> {
        self.weights
            .iter()
            .map(|(k, w)| (k.name().to_owned(), *w))
            .collect()
    }

    /// The kind for a uniform draw `r` in `[0, total)`.
    pub fn pick(&self, r: u64) -> Kind {
        let mut r = (r % u64::from(self.total)) as u32;
        for (kind, weight) in &self.weights {
            if r < *weight {
                return *kind;
            }
            r -= weight;
        }
        unreachable!("weights add up to total")
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Kind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: want KIND=WEIGHT"))?;
            let kind = <Kind as ValueEnum>::from_str(name.trim(), true).map_err(|_| {
                format!(
                    "{name:?} is not one of append, append-batch, register, rotate, lookup, history"
                )
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|e| format!("{part:?}: weight: {e}"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{kind} is named twice"));
            }
            if weight > 0 {
                weights.push((kind, weight));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |sum, (_, w)| sum.checked_add(*w))
            .ok_or("weights add up to more than 2^32")?;
        if total == 0 {
            return Err("a mix needs at least one kind with a weight above 0".into());
        }
        Ok(Mix { weights, total })
    }
}

/// The key algorithm of new keys (registrations and rotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlg {
    Ed25519,
    /// secp256k1 ECDSA (SHA-256, low-S).
    Secp256k1,
    /// BIP-340 Schnorr on secp256k1.
    Bip340,
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (operations under way then are finished and counted).
    Duration(Duration),
    /// After this many operations (all clients together).
    Count(u64),
}

/// A `60s`, `500ms`, `2m` or plain-seconds duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: want a number and a unit (ms, s, m, h)"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=30.0 * 86_400.0).contains(&seconds) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// How to reach the server and what to trust.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` of ktd's gRPC listener (plaintext only).
    pub server: String,
    /// The log's note verifier key (its name is the log's origin).
    pub log_key: String,
    /// The log's VRF public key.
    pub vrf_key: VrfPublicKey,
    /// The identity provider's token, needed by registrations (and the setup phase).
    pub provider_token: Option<String>,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: Target,
    /// The workload's name as given (`mix` or a single kind).
    pub workload: WorkloadName,
    pub mix: Mix,
    pub stop: Stop,
    /// Operations run this long first, unrecorded.
    pub warmup: Duration,
    /// Concurrent clients (tokio tasks), each with one call in flight at a time.
    pub clients: usize,
    /// HTTP/2 connections the clients share (client `i` uses connection `i % connections`).
    pub connections: usize,
    /// Payload bytes of each appended record.
    pub payload_size: usize,
    /// Records per `AppendBatch` call.
    pub batch_size: usize,
    /// Namespace of appended records.
    pub namespace: String,
    /// Identities registered by the setup phase for rotations, lookups and histories.
    pub users: u64,
    /// Skip the setup phase: the identities of `prefix` are already registered.
    pub skip_setup: bool,
    /// Percentage of lookups and histories of identities that are not registered.
    pub absent_percent: u8,
    pub key_alg: KeyAlg,
    /// Verify lookup and history answers (VRF label, map proof, inclusion, checkpoint signature).
    pub verify: bool,
    /// Prefix of every identifier this run makes, so runs can repeat on one log.
    pub prefix: String,
    /// Deadline of each call.
    pub timeout: Duration,
    /// Draw a progress display on stderr.
    pub progress: bool,
    /// Seed of the clients' random choices (identities, mix draws, payloads).
    pub seed: u64,
}

impl BenchConfig {
    /// A config with the defaults of the command line, for `target` and one workload.
    pub fn new(target: Target, workload: WorkloadName, mix: Mix, stop: Stop) -> BenchConfig {
        BenchConfig {
            target,
            workload,
            mix,
            stop,
            warmup: Duration::ZERO,
            clients: 64,
            connections: 4,
            payload_size: 64,
            batch_size: 100,
            namespace: "bench".into(),
            users: 1_000,
            skip_setup: false,
            absent_percent: 10,
            key_alg: KeyAlg::Ed25519,
            verify: true,
            prefix: random_prefix(),
            timeout: Duration::from_secs(30),
            progress: false,
            seed: random_u64(),
        }
    }

    /// Whether the run needs identities registered before it.
    pub fn needs_users(&self) -> bool {
        self.mix.kinds().any(Kind::needs_users)
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |what: String| Err(BenchError::Config(what));
        if self.clients == 0 || self.connections == 0 {
            return bad("--clients and --connections must be at least 1".into());
        }
        if self.connections > self.clients {
            return bad(format!(
                "--connections {} is more than --clients {}: a connection without a client is idle",
                self.connections, self.clients
            ));
        }
        if self.absent_percent > 100 {
            return bad("--absent-percent is at most 100".into());
        }
        if self.payload_size == 0 || self.payload_size > 32_768 {
            return bad("--payload-size is 1 to 32768 bytes (the log's limit)".into());
        }
        if self.batch_size == 0 || self.batch_size > 1_000 {
            return bad("--batch-size is 1 to 1000 records (the server's limit)".into());
        }
        if let Stop::Count(0) = self.stop {
            return bad("--count must be at least 1".into());
        }
        if self.needs_users() && self.users == 0 {
            return bad("rotations, lookups and histories need --users above 0".into());
        }
        let kinds: Vec<Kind> = self.mix.kinds().collect();
        if kinds.contains(&Kind::Rotate) && self.users < self.clients as u64 {
            // Each identity is rotated by one client only (its state is that client's), so
            // every client needs at least one.
            return bad(format!(
                "rotations need --users ({}) at least --clients ({})",
                self.users, self.clients
            ));
        }
        let registers = kinds.contains(&Kind::Register) || (self.needs_users() && !self.skip_setup);
        if registers && self.target.provider_token.is_none() {
            return bad(
                "registrations (and the setup phase) need the provider token: --provider-token-file or --data-dir"
                    .into(),
            );
        }
        if self.prefix.is_empty()
            || self.prefix.len() > 64
            || self.prefix.chars().any(char::is_control)
        {
            return bad("--prefix is 1 to 64 printable characters".into());
        }
        Ok(())
    }
}

/// `kt-bench`: drives a running `ktd` with concurrent clients and reports throughput and latency.
///
/// Start ktd with its per-peer rate limits off (`--read-rate-per-sec 0 --write-rate-per-sec 0`):
/// every client here has the same address, so the limits would measure themselves.
#[derive(Debug, Parser)]
#[command(name = "kt-bench", version)]
pub struct Args {
    /// What to run.
    #[arg(value_enum)]
    pub workload: WorkloadName,
    /// ktd's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "KT_SERVER")]
    pub server: String,
    /// ktd's data directory: `log.pub`, `vrf.pub` and `provider.token` are read from it unless
    /// given one by one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The log's verifier key, or a file holding it (`<data_dir>/log.pub`).
    #[arg(long)]
    pub log_key: Option<String>,
    /// The log's VRF public key (64 hex digits), or a file holding it (`<data_dir>/vrf.pub`).
    #[arg(long)]
    pub vrf_key: Option<String>,
    /// The identity provider's token file (`<data_dir>/provider.token`), for registrations.
    #[arg(long)]
    pub provider_token_file: Option<PathBuf>,
    /// Weights of a mix, e.g. `lookup=90,rotate=5,append=5`.
    #[arg(long, default_value = "lookup=90,rotate=5,append=5")]
    pub mix: Mix,
    /// How long the measured phase runs (e.g. `60s`, `2m`); default 10s unless --count.
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// How many operations the measured phase runs (all clients together).
    #[arg(long)]
    pub count: Option<u64>,
    /// Unrecorded operations for this long first.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Concurrent clients, each with one call in flight.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// HTTP/2 connections shared by the clients (one connection is one TCP stream).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Payload bytes of each appended record.
    #[arg(long, default_value_t = 64)]
    pub payload_size: usize,
    /// Records per `AppendBatch` call (`append-batch`).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Namespace of appended records.
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    /// Identities the setup phase registers for rotations, lookups and histories.
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    /// The identities of --prefix are already registered (by an earlier run): no setup phase.
    #[arg(long, requires = "prefix")]
    pub skip_setup: bool,
    /// Percentage of lookups and histories of identities that are not registered.
    #[arg(long, default_value_t = 10)]
    pub absent_percent: u8,
    /// Algorithm of new keys.
    #[arg(long, value_enum, default_value = "ed25519")]
    pub key_alg: KeyAlg,
    /// Do not verify lookup and history answers.
    #[arg(long)]
    pub no_verify: bool,
    /// Prefix of the identifiers this run makes (default: random, so runs repeat on one log).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Deadline of each call.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Seed of the random choices (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Args {
    /// The validated config (reads the key and token files).
    pub fn config(&self) -> Result<BenchConfig, BenchError> {
        let from_dir = |name: &str| self.data_dir.as_deref().map(|d| d.join(name));
        let log_key = match (&self.log_key, from_dir("log.pub")) {
            (Some(v), _) => v.clone(),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => return Err(BenchError::Config("--log-key or --data-dir".into())),
        };
        let log_key = kt_client::read_log_key(&log_key).map_err(BenchError::Config)?;
        let vrf_key = match (&self.vrf_key, from_dir("vrf.pub")) {
            (Some(v), _) => v.clone(),
            (None, Some(path)) => path.display().to_string(),
            (None, None) => return Err(BenchError::Config("--vrf-key or --data-dir".into())),
        };
        let vrf_key = kt_client::directory::read_vrf_key(&vrf_key).map_err(BenchError::Config)?;
        let token_file = self
            .provider_token_file
            .clone()
            .or_else(|| from_dir("provider.token").filter(|p| p.exists()));
        let provider_token = token_file.as_deref().map(read_token).transpose()?;
        let (workload, mix) = match self.workload {
            WorkloadName::Mix => (WorkloadName::Mix, self.mix.clone()),
            single => (single, Mix::only(kind_of(single))),
        };
        let stop = match (self.count, self.duration) {
            (Some(n), _) => Stop::Count(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Duration(Duration::from_secs(10)),
        };
        let target = Target {
            server: self.server.clone(),
            log_key,
            vrf_key,
            provider_token,
        };
        let mut config = BenchConfig::new(target, workload, mix, stop);
        config.warmup = self.warmup;
        config.clients = self.clients;
        config.connections = self.connections;
        config.payload_size = self.payload_size;
        config.batch_size = self.batch_size;
        config.namespace = self.namespace.clone();
        config.users = self.users;
        config.skip_setup = self.skip_setup;
        config.absent_percent = self.absent_percent;
        config.key_alg = self.key_alg;
        config.verify = !self.no_verify;
        config.timeout = self.timeout;
        config.progress = !self.quiet;
        if let Some(prefix) = &self.prefix {
            config.prefix = prefix.clone();
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        config.validate()?;
        Ok(config)
    }
}

fn kind_of(workload: WorkloadName) -> Kind {
    match workload {
        WorkloadName::Append => Kind::Append,
        WorkloadName::AppendBatch => Kind::AppendBatch,
        WorkloadName::Register => Kind::Register,
        WorkloadName::Rotate => Kind::Rotate,
        WorkloadName::Lookup => Kind::Lookup,
        WorkloadName::History | WorkloadName::Mix => Kind::History,
    }
}

fn read_token(path: &Path) -> Result<String, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(BenchError::Config(format!("{} is empty", path.display())));
    }
    Ok(token.to_owned())
}

/// 64 random bits from the OS.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The OS's random source does not fail on Linux once booted; a fixed seed still works.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// A fresh identifier prefix: `b` and 8 hex digits.
pub fn random_prefix() -> String {
    format!("b{:08x}", random_u64() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_picks_by_weight() {
        let mix: Mix = "lookup=90, rotate=5,append=5,history=0".parse().unwrap();
        assert_eq!(
            mix.kinds().collect::<Vec<_>>(),
            [Kind::Lookup, Kind::Rotate, Kind::Append]
        );
        let mut counts = BTreeMap::new();
        for r in 0..100 {
            *counts.entry(mix.pick(r)).or_insert(0) += 1;
        }
        assert_eq!(counts[&Kind::Lookup], 90);
        assert_eq!(counts[&Kind::Rotate], 5);
        assert_eq!(counts[&Kind::Append], 5);
        for bad in [
            "",
            "lookup",
            "lookup=x",
            "lookup=0",
            "lookup=1,lookup=2",
            "scan=3",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} parses");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "s", "10x", "-1s", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parses");
        }
    }

    #[test]
    fn command_line_reads_the_data_dir_and_checks_settings() {
        let dir = tempfile::tempdir().unwrap();
        let signer = kt_core::note::NoteSigner::from_seed(
            kt_core::note::KeyName::new("bench.test/log").unwrap(),
            [7; 32],
        );
        std::fs::write(dir.path().join("log.pub"), signer.verifier().to_string()).unwrap();
        let vrf = kt_core::vrf::VrfSecretKey::from_seed([9; 32]).public();
        std::fs::write(dir.path().join("vrf.pub"), hex::encode(vrf.as_bytes())).unwrap();
        std::fs::write(dir.path().join("provider.token"), "secret-token\n").unwrap();
        let d = dir.path().to_str().unwrap();

        let args = Args::try_parse_from([
            "kt-bench",
            "mix",
            "--data-dir",
            d,
            "--count",
            "10",
            "--clients",
            "2",
            "--connections",
            "1",
            "--users",
            "4",
            "-q",
        ])
        .unwrap();
        let c = args.config().unwrap();
        assert_eq!(c.stop, Stop::Count(10));
        assert_eq!(c.target.provider_token.as_deref(), Some("secret-token"));
        assert_eq!(c.target.vrf_key, vrf);
        assert!(c.needs_users() && c.verify && !c.progress);

        let fails = |extra: &[&str]| {
            let mut argv = vec!["kt-bench", "rotate", "--data-dir", d, "--count", "10"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv)
                .map_err(|e| e.to_string())
                .and_then(|a| a.config().map_err(|e| e.to_string()))
                .unwrap_err()
        };
        assert!(
            fails(&["--users", "3", "--clients", "4", "--connections", "1"]).contains("--users")
        );
        assert!(fails(&["--clients", "2", "--connections", "3"]).contains("--connections"));
        assert!(fails(&["--duration", "5s"]).contains("cannot be used with"));
        assert!(fails(&["--skip-setup"]).contains("--prefix"));
    }
}
