//! Configuration in two steps: raw values from a TOML file, the environment and flags (flags win
//! over the environment, which wins over the file, which wins over the defaults), then one
//! validated [`Config`]. Validation happens before any port is bound or file is created.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kt_core::cosignature::CosignatureVerifier;
use kt_core::note::KeyName;
use serde::Deserialize;
use thiserror::Error;

use crate::sequencer::SequencerConfig;
use crate::startup::StartupCheck;

/// A secret setting: never printed, not even by `Debug` (configs are logged when they fail).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// Raw settings; every field optional so the sources can be layered.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory of the RocksDB database (and of the default key file).
    #[arg(long, env = "KTD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "KTD_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Read-only HTTP (tlog-tiles) listen address.
    #[arg(long, env = "KTD_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// The log's origin line, also the name of its signing key.
    #[arg(long, env = "KTD_ORIGIN")]
    pub origin: Option<String>,
    /// Signing key file (`ktd keygen` writes one). Default: `<data_dir>/log.key`, generated on
    /// the first start of a new log.
    #[arg(long, env = "KTD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Epoch length in milliseconds.
    #[arg(long, env = "KTD_EPOCH_INTERVAL_MS")]
    pub epoch_interval_ms: Option<u64>,
    /// Interval of empty (heartbeat) epochs in milliseconds.
    #[arg(long, env = "KTD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Most entries per epoch.
    #[arg(long, env = "KTD_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Most appends waiting for the sequencer before RESOURCE_EXHAUSTED.
    #[arg(long, env = "KTD_QUEUE_DEPTH")]
    pub queue_depth: Option<usize>,
    /// Free space (MiB) kept on the data directory's filesystem: below it appends are refused
    /// (UNAVAILABLE) and resume by themselves when space is freed. Default 256; 0 turns it off.
    #[arg(long, env = "KTD_MIN_FREE_DISK_MIB")]
    pub min_free_disk_mib: Option<u64>,
    /// Start-up verification: `full` (re-hash everything) or `quick` (right border only).
    #[arg(long, env = "KTD_STARTUP_CHECK", value_parser = parse_startup_check)]
    pub startup_check: Option<StartupCheck>,
    /// The identity provider's bearer token for register and recover (at least 16 characters).
    /// Prefer the environment or a file over the command line, where other users can see it.
    #[arg(long, env = "KTD_PROVIDER_TOKEN", hide_env_values = true)]
    pub provider_token: Option<Secret>,
    /// File holding the provider token. Default: `<data_dir>/provider.token`, generated on the
    /// first start when no token is given.
    #[arg(long, env = "KTD_PROVIDER_TOKEN_FILE")]
    pub provider_token_file: Option<PathBuf>,
    /// Reads per second from one peer (IP address; IPv6 by /64): every RPC but the writes, and
    /// every HTTP request. 0 turns the limit off (behind a proxy that limits: every request then
    /// has the proxy's address). Default 2000.
    #[arg(long, env = "KTD_READ_RATE_PER_SEC")]
    pub read_rate_per_sec: Option<u32>,
    /// Reads one peer may make at once after being idle. Default: twice the rate.
    #[arg(long, env = "KTD_READ_BURST")]
    pub read_burst: Option<u32>,
    /// Writes per second from one peer (append, register, rotate, revoke, recover, send,
    /// cosignatures); 0 turns the limit off. Default 1000.
    #[arg(long, env = "KTD_WRITE_RATE_PER_SEC")]
    pub write_rate_per_sec: Option<u32>,
    /// Writes one peer may make at once after being idle. Default: twice the rate.
    #[arg(long, env = "KTD_WRITE_BURST")]
    pub write_burst: Option<u32>,
    /// Open connections of one peer, per listener (gRPC, HTTP). Default 128.
    #[arg(long, env = "KTD_MAX_CONNECTIONS_PER_PEER")]
    pub max_connections_per_peer: Option<u32>,
    /// Open connections of all peers, per listener. Default 4096.
    #[arg(long, env = "KTD_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Close gRPC connections older than this many seconds (their calls get 30 s to finish).
    /// Default 0: never, since `kt monitor` and `kt-audit --follow` hold one stream open.
    #[arg(long, env = "KTD_MAX_CONNECTION_AGE_SECS")]
    pub max_connection_age_secs: Option<u64>,
    /// VRF key file (labels are VRF outputs of identifiers). Default: `<data_dir>/vrf.key`,
    /// generated with `<data_dir>/vrf.pub` on the first start of a new log.
    #[arg(long, env = "KTD_VRF_KEY_FILE")]
    pub vrf_key_file: Option<PathBuf>,
    /// A witness's cosignature verifier key (`<name>+<hex8 id>+base64(0x04 || key)`, as
    /// `kt-audit witness-keygen` prints it); repeat for each witness. Only these keys may submit
    /// cosignatures. The environment variable takes a comma-separated list.
    #[arg(long = "witness", env = "KTD_WITNESSES", value_delimiter = ',')]
    pub witnesses: Option<Vec<String>>,
    /// PEM certificate chain of this server; with --tls-key-file, gRPC and HTTP use TLS.
    #[arg(long, env = "KTD_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file (mode 0600).
    #[arg(long, env = "KTD_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) of the identity provider's client certificates (mTLS, needs TLS): a
    /// gRPC client whose certificate chains to it may register and recover without the token.
    #[arg(long, env = "KTD_PROVIDER_CLIENT_CA_FILE")]
    pub provider_client_ca_file: Option<PathBuf>,
    /// RocksDB block cache shared by every column family, in MiB. Default 256.
    #[arg(long, env = "KTD_BLOCK_CACHE_MIB")]
    pub block_cache_mib: Option<u64>,
    /// RocksDB memtables of all column families together, in MiB. Default 128.
    #[arg(long, env = "KTD_WRITE_BUFFER_MIB")]
    pub write_buffer_mib: Option<u64>,
}

fn parse_startup_check(s: &str) -> Result<StartupCheck, String> {
    match s {
        "full" => Ok(StartupCheck::Full),
        "quick" => Ok(StartupCheck::Quick),
        other => Err(format!("expected `full` or `quick`, got {other:?}")),
    }
}

impl RawConfig {
    /// `self` over `lower`: fields set here win.
    pub fn or(self, lower: RawConfig) -> RawConfig {
        RawConfig {
            data_dir: self.data_dir.or(lower.data_dir),
            grpc_addr: self.grpc_addr.or(lower.grpc_addr),
            http_addr: self.http_addr.or(lower.http_addr),
            origin: self.origin.or(lower.origin),
            key_file: self.key_file.or(lower.key_file),
            epoch_interval_ms: self.epoch_interval_ms.or(lower.epoch_interval_ms),
            heartbeat_ms: self.heartbeat_ms.or(lower.heartbeat_ms),
            max_batch: self.max_batch.or(lower.max_batch),
            queue_depth: self.queue_depth.or(lower.queue_depth),
            min_free_disk_mib: self.min_free_disk_mib.or(lower.min_free_disk_mib),
            startup_check: self.startup_check.or(lower.startup_check),
            provider_token: self.provider_token.or(lower.provider_token),
            provider_token_file: self.provider_token_file.or(lower.provider_token_file),
            vrf_key_file: self.vrf_key_file.or(lower.vrf_key_file),
            read_rate_per_sec: self.read_rate_per_sec.or(lower.read_rate_per_sec),
            read_burst: self.read_burst.or(lower.read_burst),
            write_rate_per_sec: self.write_rate_per_sec.or(lower.write_rate_per_sec),
            write_burst: self.write_burst.or(lower.write_burst),
            max_connections_per_peer: self
                .max_connections_per_peer
                .or(lower.max_connections_per_peer),
            max_connections: self.max_connections.or(lower.max_connections),
            max_connection_age_secs: self
                .max_connection_age_secs
                .or(lower.max_connection_age_secs),
            witnesses: self.witnesses.or(lower.witnesses),
            tls_cert_file: self.tls_cert_file.or(lower.tls_cert_file),
            tls_key_file: self.tls_key_file.or(lower.tls_key_file),
            provider_client_ca_file: self
                .provider_client_ca_file
                .or(lower.provider_client_ca_file),
            block_cache_mib: self.block_cache_mib.or(lower.block_cache_mib),
            write_buffer_mib: self.write_buffer_mib.or(lower.write_buffer_mib),
        }
    }

    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// The embedded defaults: a loopback server with its data under `./data`.
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_ORIGIN: &str = "keytrail.localhost/log";
pub const DEFAULT_KEY_FILE_NAME: &str = "log.key";
pub const DEFAULT_PROVIDER_TOKEN_FILE_NAME: &str = "provider.token";

/// Where the identity provider's token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum ProviderTokenSource {
    /// Given directly (environment, flag or config file).
    Value(String),
    /// Read from a file, generated there if missing.
    File(PathBuf),
}

impl std::fmt::Debug for ProviderTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderTokenSource::Value(_) => f.write_str("Value(<redacted>)"),
            ProviderTokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An existing key file.
    File(PathBuf),
    /// The default key file of a brand-new data directory: generated on first start.
    GenerateAt(PathBuf),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub origin: String,
    pub key: KeySource,
    pub sequencer: SequencerConfig,
    pub startup_check: StartupCheck,
    pub provider_token: ProviderTokenSource,
    /// The VRF key that derives labels (`crate::vrf_labels`).
    pub vrf_key: KeySource,
    /// Per-peer rate limits and connection caps (`crate::limits`).
    pub limits: crate::limits::LimitsConfig,
    /// The witnesses whose cosignatures are accepted (at most [`MAX_WITNESSES`]).
    pub witnesses: Vec<CosignatureVerifier>,
    /// TLS of both listeners (and the provider's mTLS); `None` serves plaintext.
    pub tls: Option<crate::tls::TlsSettings>,
    /// RocksDB's block cache and memtable budget.
    pub storage_memory: crate::storage::MemoryBudget,
}

/// Most witnesses a log accepts cosignatures from: every served note carries one line per
/// witness, and notes are parsed with at most 100 signature lines.
pub const MAX_WITNESSES: usize = 50;

/// A configuration that cannot be used; the server exits before binding anything.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn ranged<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(invalid(field, format!("{value} is outside {min}..={max}")));
    }
    Ok(value)
}

impl Config {
    /// Validates raw settings.
    pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let limits = limits(&raw)?;
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let addr =
            |field, value: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
                let value = value.unwrap_or_else(|| default.to_owned());
                value
                    .parse()
                    .map_err(|e| invalid(field, format!("{value:?} is not an address: {e}")))
            };
        let grpc_addr = addr("grpc_addr", raw.grpc_addr, DEFAULT_GRPC_ADDR)?;
        let http_addr = addr("http_addr", raw.http_addr, DEFAULT_HTTP_ADDR)?;
        if grpc_addr == http_addr && grpc_addr.port() != 0 {
            return Err(invalid("http_addr", "must differ from grpc_addr"));
        }
        let origin = raw.origin.unwrap_or_else(|| DEFAULT_ORIGIN.to_owned());
        KeyName::new(&origin).map_err(|e| invalid("origin", e.to_string()))?;

        let key = match raw.key_file {
            Some(path) => {
                check_key_file(&path)?;
                KeySource::File(path)
            }
            None => {
                let path = data_dir.join(DEFAULT_KEY_FILE_NAME);
                if path.exists() {
                    check_key_file(&path)?;
                    KeySource::File(path)
                } else if data_dir.join("CURRENT").exists() {
                    // Never mint a new key for a log that already exists.
                    return Err(invalid(
                        "key_file",
                        format!(
                            "{} is missing but the log in {} exists",
                            path.display(),
                            data_dir.display()
                        ),
                    ));
                } else {
                    KeySource::GenerateAt(path)
                }
            }
        };

        let epoch_ms = ranged(
            "epoch_interval_ms",
            raw.epoch_interval_ms.unwrap_or(500),
            1,
            3_600_000,
        )?;
        let heartbeat_ms = ranged(
            "heartbeat_ms",
            raw.heartbeat_ms.unwrap_or(5_000),
            1,
            86_400_000,
        )?;
        if heartbeat_ms < epoch_ms {
            return Err(invalid(
                "heartbeat_ms",
                format!("{heartbeat_ms} is shorter than epoch_interval_ms {epoch_ms}"),
            ));
        }
        let default_memory = crate::storage::MemoryBudget::default();
        let mib = |field, value: Option<u64>, default: usize| -> Result<usize, ConfigError> {
            let value = value.unwrap_or((default >> 20) as u64);
            Ok(ranged(field, value, 8, 1 << 20)? as usize * (1 << 20))
        };
        let storage_memory = crate::storage::MemoryBudget {
            block_cache_bytes: mib(
                "block_cache_mib",
                raw.block_cache_mib,
                default_memory.block_cache_bytes,
            )?,
            write_buffer_bytes: mib(
                "write_buffer_mib",
                raw.write_buffer_mib,
                default_memory.write_buffer_bytes,
            )?,
        };
        let sequencer = SequencerConfig {
            epoch_interval: Duration::from_millis(epoch_ms),
            heartbeat: Duration::from_millis(heartbeat_ms),
            max_batch: ranged("max_batch", raw.max_batch.unwrap_or(1_000), 1, 100_000)?,
            queue_depth: ranged(
                "queue_depth",
                raw.queue_depth.unwrap_or(10_000),
                1,
                1_000_000,
            )?,
            min_free_bytes: ranged(
                "min_free_disk_mib",
                raw.min_free_disk_mib.unwrap_or(256),
                0,
                1 << 30,
            )? << 20,
        };
        let provider_token = match (raw.provider_token, raw.provider_token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "provider_token",
                    "give either provider_token or provider_token_file, not both",
                ))
            }
            (Some(token), None) if token.expose().len() < crate::keys::MIN_PROVIDER_TOKEN_LEN => {
                return Err(invalid(
                    "provider_token",
                    format!(
                        "needs at least {} characters",
                        crate::keys::MIN_PROVIDER_TOKEN_LEN
                    ),
                ))
            }
            (Some(token), None) => ProviderTokenSource::Value(token.expose().to_owned()),
            (None, Some(path)) => ProviderTokenSource::File(path),
            (None, None) => {
                ProviderTokenSource::File(data_dir.join(DEFAULT_PROVIDER_TOKEN_FILE_NAME))
            }
        };
        let mut witnesses: Vec<CosignatureVerifier> = Vec::new();
        for w in raw.witnesses.unwrap_or_default() {
            let w = w.trim();
            if w.is_empty() {
                continue;
            }
            let parsed = CosignatureVerifier::parse(w)
                .map_err(|e| invalid("witnesses", format!("{w:?}: {e}")))?;
            if witnesses
                .iter()
                .any(|o| o.name() == parsed.name() && o.key_id() == parsed.key_id())
            {
                return Err(invalid("witnesses", format!("{w:?} is listed twice")));
            }
            witnesses.push(parsed);
        }
        if witnesses.len() > MAX_WITNESSES {
            return Err(invalid(
                "witnesses",
                format!("{} witnesses, at most {MAX_WITNESSES}", witnesses.len()),
            ));
        }
        let vrf_key = crate::vrf_labels::key_source(raw.vrf_key_file, &data_dir)?;
        let tls = match (raw.tls_cert_file, raw.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsSettings::load(
                &cert,
                &key,
                raw.provider_client_ca_file.as_deref(),
            )?),
            (None, None) if raw.provider_client_ca_file.is_some() => {
                return Err(invalid(
                    "provider_client_ca_file",
                    "client certificates need TLS: give tls_cert_file and tls_key_file too",
                ))
            }
            (None, None) => None,
            (Some(_), None) => return Err(invalid("tls_key_file", "tls_cert_file needs its key")),
            (None, Some(_)) => {
                return Err(invalid(
                    "tls_cert_file",
                    "tls_key_file needs its certificate",
                ))
            }
        };
        Ok(Config {
            limits,
            tls,
            vrf_key,
            witnesses,
            provider_token,
            data_dir,
            grpc_addr,
            http_addr,
            origin,
            key,
            sequencer,
            startup_check: raw.startup_check.unwrap_or(StartupCheck::Full),
            storage_memory,
        })
    }
}

/// A token bucket from its two settings: a rate of 0 is no limit; the burst defaults to twice
/// the rate.
fn rate(
    (rate_field, per_second): (&'static str, Option<u32>),
    (burst_field, burst): (&'static str, Option<u32>),
    default_per_second: u32,
) -> Result<Option<crate::limits::Rate>, ConfigError> {
    use std::num::NonZeroU32;
    let per_second = ranged(
        rate_field,
        per_second.unwrap_or(default_per_second),
        0,
        1_000_000,
    )?;
    let Some(per_second) = NonZeroU32::new(per_second) else {
        return Ok(None);
    };
    let burst = ranged(
        burst_field,
        burst.unwrap_or(per_second.get().saturating_mul(2)),
        1,
        10_000_000,
    )?;
    Ok(Some(crate::limits::Rate {
        per_second,
        burst: NonZeroU32::new(burst).expect("at least 1"),
    }))
}

fn limits(raw: &RawConfig) -> Result<crate::limits::LimitsConfig, ConfigError> {
    use crate::limits as l;
    let max_connections = ranged(
        "max_connections",
        raw.max_connections.unwrap_or(l::DEFAULT_MAX_CONNECTIONS),
        1,
        1_000_000,
    )?;
    Ok(l::LimitsConfig {
        read: rate(
            ("read_rate_per_sec", raw.read_rate_per_sec),
            ("read_burst", raw.read_burst),
            l::DEFAULT_READ_RATE_PER_SEC,
        )?,
        write: rate(
            ("write_rate_per_sec", raw.write_rate_per_sec),
            ("write_burst", raw.write_burst),
            l::DEFAULT_WRITE_RATE_PER_SEC,
        )?,
        max_connections_per_peer: ranged(
            "max_connections_per_peer",
            raw.max_connections_per_peer
                .unwrap_or(l::DEFAULT_MAX_CONNECTIONS_PER_PEER.min(max_connections)),
            1,
            max_connections,
        )?,
        max_connections,
        max_connection_age: match ranged(
            "max_connection_age_secs",
            raw.max_connection_age_secs.unwrap_or(0),
            0,
            365 * 86_400,
        )? {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    })
}

/// A key file must exist and be private to its owner.
fn check_key_file(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| invalid("key_file", format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(invalid(
                "key_file",
                format!(
                    "{} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    let _ = meta;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = RawConfig {
            data_dir: Some(dir.path().to_owned()),
            max_batch: Some(7),
            heartbeat_ms: Some(9_000),
            ..RawConfig::default()
        };
        let flags = RawConfig {
            max_batch: Some(11),
            ..RawConfig::default()
        };
        let c = Config::validate(flags.or(file)).unwrap();
        assert_eq!(c.sequencer.max_batch, 11);
        assert_eq!(c.sequencer.heartbeat, Duration::from_millis(9_000));
        assert_eq!(c.grpc_addr.to_string(), DEFAULT_GRPC_ADDR);
        assert!(matches!(c.key, KeySource::GenerateAt(_)));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |raw: RawConfig| match Config::validate(raw) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        let dir = tempfile::tempdir().unwrap();
        let base = RawConfig {
            data_dir: Some(dir.path().to_owned()),
            ..RawConfig::default()
        };
        assert_eq!(
            bad(RawConfig {
                grpc_addr: Some("nowhere".into()),
                ..base.clone()
            }),
            "grpc_addr"
        );
        assert_eq!(
            bad(RawConfig {
                origin: Some("a b".into()),
                ..base.clone()
            }),
            "origin"
        );
        assert_eq!(
            bad(RawConfig {
                max_batch: Some(0),
                ..base.clone()
            }),
            "max_batch"
        );
        assert_eq!(
            bad(RawConfig {
                epoch_interval_ms: Some(0),
                ..base.clone()
            }),
            "epoch_interval_ms"
        );
        assert_eq!(
            bad(RawConfig {
                epoch_interval_ms: Some(1000),
                heartbeat_ms: Some(10),
                ..base.clone()
            }),
            "heartbeat_ms"
        );
        assert_eq!(
            bad(RawConfig {
                key_file: Some(dir.path().join("absent")),
                ..base.clone()
            }),
            "key_file"
        );
    }

    #[test]
    fn witnesses_are_parsed_from_toml_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let w = kt_core::cosignature::Cosigner::from_seed(KeyName::new("w1").unwrap(), [7; 32])
            .verifier()
            .to_string();
        let path = dir.path().join("ktd.toml");
        std::fs::write(&path, format!("witnesses = [\"{w}\"]\n")).unwrap();
        let raw = RawConfig {
            data_dir: Some(dir.path().to_owned()),
            ..RawConfig::default()
        }
        .or(RawConfig::from_file(&path).unwrap());
        let c = Config::validate(raw.clone()).unwrap();
        assert_eq!(c.witnesses.len(), 1);
        assert_eq!(c.witnesses[0].to_string(), w);
        let bad = |witnesses: Vec<String>| {
            let raw = RawConfig {
                witnesses: Some(witnesses),
                ..raw.clone()
            };
            match Config::validate(raw) {
                Err(ConfigError::Invalid { field, .. }) => field,
                other => panic!("expected an invalid witness list, got {other:?}"),
            }
        };
        assert_eq!(bad(vec!["not a key".into()]), "witnesses");
        assert_eq!(bad(vec![w.clone(), w.clone()]), "witnesses");
        // A log (note) key is not a witness key.
        let note_key = kt_core::note::NoteSigner::from_seed(KeyName::new("w1").unwrap(), [7; 32])
            .verifier()
            .to_string();
        assert_eq!(bad(vec![note_key]), "witnesses");
    }

    #[test]
    fn limits_have_defaults_layer_and_zero_turns_a_rate_off() {
        use crate::limits::{default_rate, LimitsConfig};
        let dir = tempfile::tempdir().unwrap();
        let base = RawConfig {
            data_dir: Some(dir.path().to_owned()),
            ..RawConfig::default()
        };
        let c = Config::validate(base.clone()).unwrap();
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.limits.read.unwrap().burst.get(), 4_000);

        let path = dir.path().join("ktd.toml");
        std::fs::write(
            &path,
            "read_rate_per_sec = 10\nread_burst = 3\nwrite_rate_per_sec = 7\nmax_connection_age_secs = 60\nblock_cache_mib = 64\n",
        )
        .unwrap();
        let flags = RawConfig {
            write_rate_per_sec: Some(0),
            max_connections_per_peer: Some(5),
            ..base.clone()
        };
        let c = Config::validate(flags.or(RawConfig::from_file(&path).unwrap())).unwrap();
        assert_eq!(c.limits.read.unwrap().per_second.get(), 10);
        assert_eq!(c.limits.read.unwrap().burst.get(), 3);
        assert_eq!(c.limits.write, None, "the flag's 0 wins over the file's 7");
        assert_eq!(c.limits.max_connections_per_peer, 5);
        assert_eq!(c.limits.max_connection_age, Some(Duration::from_secs(60)));
        assert_eq!(default_rate(7).unwrap().burst.get(), 14);
        assert_eq!(
            c.storage_memory.block_cache_bytes,
            64 << 20,
            "from the file"
        );
        assert_eq!(
            c.storage_memory.write_buffer_bytes,
            128 << 20,
            "the default"
        );

        let bad = |raw: RawConfig| match Config::validate(raw) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(
            bad(RawConfig {
                write_buffer_mib: Some(4),
                ..base.clone()
            }),
            "write_buffer_mib"
        );
        assert_eq!(
            bad(RawConfig {
                read_burst: Some(0),
                ..base.clone()
            }),
            "read_burst"
        );
        assert_eq!(
            bad(RawConfig {
                max_connections: Some(10),
                max_connections_per_peer: Some(11),
                ..base.clone()
            }),
            "max_connections_per_peer"
        );
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ktd.toml");
        std::fs::write(&path, "data_dir = \"x\"\nbogus = 1\n").unwrap();
        assert!(matches!(
            RawConfig::from_file(&path),
            Err(ConfigError::File { .. })
        ));
    }
}
