//! `kt`: the KeyTrail command line. Every answer is verified before it is shown.
//!
//! Exit codes: 0 success; 1 failure (bad input, unreachable server, refused request); 3 the log or
//! the server misbehaved (a rollback or fork with evidence, an answer that does not verify, a
//! checkpoint dated in the future) or the owner's monitor found a version of its label that this
//! device did not make.

/// `println!` for kt's output, except that a reader that went away (`kt ... | head -1`) is not
/// an error: the rest of the output is dropped, and kt still finishes its work and exits with the
/// status its result calls for (a refused answer still exits 3). `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod directory;

use std::path::PathBuf;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Parser, Subcommand};
use kt_client::{BadAnswer, ClientError, LogClient, Refresh, DEFAULT_SERVER};
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::note::NoteVerifier;
use serde_json::json;

use directory::{KeyCommand, MessageCommand};

#[derive(Debug, Parser)]
#[command(
    name = "kt",
    version,
    about = "KeyTrail client: the log, the key directory and the message log, every answer verified"
)]
struct Cli {
    /// gRPC address of ktd; `https://` connects over TLS.
    #[arg(long, env = "KT_SERVER", default_value = DEFAULT_SERVER, global = true)]
    server: String,
    /// For an https:// --server: PEM CA certificate(s) to trust instead of the system's roots.
    #[arg(long, env = "KT_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// For an https:// --server: PEM client certificate, sent when the server asks (the identity
    /// provider's mTLS: register and recover then need no --provider-token).
    #[arg(long, env = "KT_TLS_CERT", global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "KT_TLS_KEY", global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The log's verifier key (`name+keyid+base64`), or a file holding it (ktd writes
    /// `data/log.pub`).
    #[arg(long, env = "KT_LOG_KEY", global = true)]
    log_key: Option<String>,
    /// The log's VRF public key (64 hex digits), or a file holding it (ktd writes
    /// `data/vrf.pub`). The key directory's commands check every label with it.
    #[arg(long, env = "KT_VRF_KEY", global = true)]
    vrf_key: Option<String>,
    /// Trusted-state file. Default: ~/.keytrail/trusted-<key id>.json
    #[arg(long, env = "KT_STATE", global = true)]
    state: Option<PathBuf>,
    /// This device's key file (private keys and the updates this device made).
    /// Default: ~/.keytrail/keys.json
    #[arg(long, env = "KT_KEYS", global = true)]
    keys: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A witness's cosignature verifier key (`name+keyid+base64`, as `kt-audit witness-keygen`
    /// prints it); repeat for each witness of the policy. With witnesses, every checkpoint must
    /// carry at least --witness-threshold valid cosignatures from them.
    #[arg(
        long = "witness",
        env = "KT_WITNESSES",
        value_delimiter = ',',
        global = true
    )]
    witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned (default: all of them).
    #[arg(long, env = "KT_WITNESS_THRESHOLD", global = true)]
    witness_threshold: Option<usize>,
    /// Refuse a latest checkpoint or receipt whose time is more than this many seconds old.
    #[arg(long, env = "KT_MAX_AGE", global = true)]
    max_age: Option<u64>,
    /// Refuse any checkpoint whose time is more than this many seconds ahead of this clock (exit
    /// 3: an honest log never signs a time in the future, unless this clock is behind).
    #[arg(long, env = "KT_MAX_AHEAD", default_value_t = kt_client::DEFAULT_MAX_AHEAD.as_secs(), global = true)]
    max_ahead: u64,
    /// Give up on an HTTP read (`check-witness <url>`: connecting, the headers and the whole
    /// body) after this many seconds. Each read is also bounded in bytes.
    #[arg(long, env = "KT_HTTP_TIMEOUT", default_value_t = kt_client::http::DEFAULT_TIMEOUT.as_secs(), global = true)]
    http_timeout: u64,
    /// How many seconds to keep asking for a checkpoint's cosignatures before giving up.
    #[arg(long, env = "KT_QUORUM_WAIT", default_value_t = 10, global = true)]
    quorum_wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append a record to the message log and verify its receipt.
    Append {
        /// Namespace (a-z, 0-9, '.', '_', '-', '/').
        #[arg(long, short)]
        namespace: String,
        /// The payload; `-` reads standard input.
        payload: String,
    },
    /// Fetch the latest checkpoint and verify it is consistent with the trusted state.
    Checkpoint,
    /// Fetch entry <index> and prove it is in the latest checkpoint.
    Prove { index: u64 },
    /// Re-verify the trusted state against the server, then advance it.
    Verify,
    /// Gossip: check the latest checkpoint a witness cosigned (`kt-audit witness-latest`
    /// prints it) against the trusted state; a conflict is a fork with evidence (exit 3).
    CheckWitness {
        /// The witness's cosignature verifier key.
        witness: String,
        /// Where the witness's latest cosigned checkpoint is: its URL (`kt-audit --serve-latest`
        /// serves `http://<addr>/checkpoint`), a file, or `-` for standard input.
        note: String,
    },
    /// This device's keys for a user identifier: create, register, rotate, revoke, recover.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The current key of a user identifier (or at an epoch), verified.
    Lookup {
        identifier: String,
        /// The epoch to look at (default: the latest).
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Every version of a user identifier's key, verified.
    History { identifier: String },
    /// Watch an identifier's key history and raise every version this device did not make
    /// (exit 3).
    Monitor {
        identifier: String,
        /// Check once and exit (0 if every version was made by this device).
        #[arg(long)]
        once: bool,
    },
    /// The message log: messages signed by a user's current key.
    #[command(subcommand)]
    Message(MessageCommand),
}

/// Exit code when the log was caught misbehaving.
const EXIT_VIOLATION: u8 = 3;

/// Set when output could not be written for any reason but a closed pipe (a full disk under a
/// redirect): a run that otherwise succeeded then exits 1, so a script never takes a truncated
/// file for a complete one.
static OUTPUT_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes one line of output (see [`say!`]).
fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("kt: writing the output: {e}");
            OUTPUT_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) if OUTPUT_FAILED.load(std::sync::atomic::Ordering::Relaxed) => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Violation(v)) => {
            let evidence = serde_json::to_string_pretty(v.evidence()).expect("serializable");
            eprintln!("kt: REFUSED: {v}");
            eprintln!("kt: the trusted state was not changed. Evidence (keep it; anyone can check it with the log's key):");
            say!("{evidence}");
            ExitCode::from(EXIT_VIOLATION)
        }
        Err(Failure::Answer(bad)) => {
            let BadAnswer {
                what,
                checkpoint_note,
                source,
            } = *bad;
            eprintln!("kt: REFUSED: the server's {what} does not verify: {source}");
            eprintln!("kt: the trusted state was not changed. The answer came with this signed checkpoint (keep it):");
            let mut out = json!({
                "kind": "bad-answer",
                "detail": format!("{what}: {source}"),
                "checkpoint_note": checkpoint_note,
            });
            if let kt_core::directory::AnswerError::ForgedMessage(forged) = &source {
                out["kind"] = json!("forged-message");
                out["forged_message"] = forged_message_json(forged);
            }
            say!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serializable")
            );
            ExitCode::from(EXIT_VIOLATION)
        }
        Err(Failure::FromTheFuture { future, note }) => {
            eprintln!("kt: REFUSED: {future}");
            eprintln!("kt: the trusted state was not changed. The signed checkpoint and this clock (keep them):");
            let out = json!({
                "kind": "future-checkpoint",
                "detail": future.to_string(),
                "checkpoint_note": note,
                "local_time_ms": future.now_ms,
                "max_ahead_ms": future.max_ms,
            });
            say!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serializable")
            );
            ExitCode::from(EXIT_VIOLATION)
        }
        Err(Failure::BadChain(e)) => {
            eprintln!("kt: REFUSED: {e}");
            eprintln!("kt: the trusted state was not changed. The chain was to link these signed checkpoints (keep them):");
            if let ClientError::BadChain { notes, .. } = &e {
                let out = json!({
                    "kind": "bad-chain",
                    "detail": e.to_string(),
                    "checkpoint_notes": notes,
                });
                say!(
                    "{}",
                    serde_json::to_string_pretty(&out).expect("serializable")
                );
            }
            ExitCode::from(EXIT_VIOLATION)
        }
        // Already reported by the monitor.
        Err(Failure::Alert) => ExitCode::from(EXIT_VIOLATION),
        Err(Failure::Other(e)) => {
            eprintln!("kt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The evidence of a message its author's key did not sign: the entry, where it is in the log
/// (with its inclusion proof against the checkpoint note), and the key it was checked against.
fn forged_message_json(f: &kt_core::directory::ForgedMessage) -> serde_json::Value {
    json!({
        "index": f.index,
        "entry_base64": B64.encode(&f.entry),
        "inclusion_proof": f.inclusion.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "key_version": f.key_version,
        "key": f.key.as_ref().map(|k| json!({
            "algorithm": k.algorithm(),
            "public_key": hex::encode(k.public_bytes()),
        })),
        "rule": f.rule.to_string(),
    })
}

enum Failure {
    Violation(Box<kt_core::trust::Violation>),
    /// A directory or message answer that does not verify against its checkpoint.
    Answer(Box<BadAnswer>),
    /// A checkpoint dated in the future (see `ClientError::FromTheFuture`).
    FromTheFuture {
        future: kt_core::trust::FromTheFuture,
        note: String,
    },
    /// A chain of checkpoint bodies that does not link ([`ClientError::BadChain`]).
    BadChain(ClientError),
    /// The owner's monitor raised versions this device did not make (already printed).
    Alert,
    Other(anyhow::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Violation(v) => Failure::Violation(v),
            ClientError::Answer(bad) => Failure::Answer(bad),
            ClientError::FromTheFuture { future, note } => Failure::FromTheFuture { future, note },
            bad @ ClientError::BadChain { .. } => Failure::BadChain(bad),
            other => Failure::Other(other.into()),
        }
    }
}

impl From<kt_client::keys::KeyFileError> for Failure {
    fn from(e: kt_client::keys::KeyFileError) -> Self {
        Failure::Other(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn log_key(cli: &Cli) -> anyhow::Result<String> {
    let Some(value) = &cli.log_key else {
        anyhow::bail!(
            "no log key: pass --log-key (or KT_LOG_KEY) with the verifier key ktd prints at start, \
             or the path of its .pub file (make run writes data/log.pub)"
        );
    };
    kt_client::read_log_key(value).map_err(anyhow::Error::msg)
}

/// Largest witness checkpoint `kt check-witness` reads from a URL: a note with its log
/// signature and cosignatures is a few hundred bytes.
const WITNESS_NOTE_LIMIT: u64 = 64 * 1024;

/// Fetches a witness's latest cosigned checkpoint over HTTP(S), bounded in bytes and time.
/// The system's roots are trusted for an https:// witness (not --tls-ca, which is ktd's).
async fn fetch_witness_checkpoint(cli: &Cli, url: &str) -> anyhow::Result<Vec<u8>> {
    let limits = kt_client::http::HttpLimits::new(WITNESS_NOTE_LIMIT)
        .with_timeout(std::time::Duration::from_secs(cli.http_timeout));
    let client = kt_client::TlsOptions::default().http_client(limits.client_builder())?;
    kt_client::http::get_bounded(&client, url, &limits)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("GET {url}: HTTP 404 (has the witness cosigned anything yet?)")
        })
}

/// The witness policy and freshness bound of the flags.
fn policy(cli: &Cli) -> anyhow::Result<kt_client::Policy> {
    let witnesses = cli
        .witnesses
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .map(|w| {
            kt_core::cosignature::CosignatureVerifier::parse(w)
                .map_err(|e| anyhow::anyhow!("--witness {w:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witnesses = if witnesses.is_empty() {
        anyhow::ensure!(
            cli.witness_threshold.is_none(),
            "--witness-threshold needs --witness keys"
        );
        None
    } else {
        let k = cli.witness_threshold.unwrap_or(witnesses.len());
        Some(
            kt_core::cosignature::WitnessPolicy::new(witnesses, k)
                .map_err(|e| anyhow::anyhow!("--witness: {e}"))?,
        )
    };
    Ok(kt_client::Policy {
        witnesses,
        max_age: cli.max_age.map(std::time::Duration::from_secs),
        max_ahead: std::time::Duration::from_secs(cli.max_ahead),
        quorum_wait: std::time::Duration::from_secs(cli.quorum_wait),
    })
}

/// The user identifier a command names, if any.
fn named_identifier(command: &Command) -> Option<&str> {
    match command {
        Command::Lookup { identifier, .. }
        | Command::History { identifier }
        | Command::Monitor { identifier, .. }
        | Command::Key(
            KeyCommand::New { identifier, .. }
            | KeyCommand::Register { identifier, .. }
            | KeyCommand::Rotate { identifier, .. }
            | KeyCommand::Revoke { identifier }
            | KeyCommand::Recover { identifier, .. },
        )
        | Command::Message(
            MessageCommand::Send { identifier, .. } | MessageCommand::Read { identifier, .. },
        ) => Some(identifier),
        _ => None,
    }
}

fn state_path(cli: &Cli, key: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = &cli.state {
        return Ok(p.clone());
    }
    let verifier = NoteVerifier::parse(key)?;
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("HOME is not set; pass --state"))?;
    Ok(PathBuf::from(home)
        .join(".keytrail")
        .join(format!("trusted-{:08x}.json", verifier.key_id())))
}

/// A payload argument: the text itself, or `-` for standard input.
fn read_payload(payload: &str) -> anyhow::Result<Vec<u8>> {
    if payload == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf)
    } else {
        Ok(payload.as_bytes().to_vec())
    }
}

fn checkpoint_json(cp: &SignedCheckpoint) -> serde_json::Value {
    let c = cp.checkpoint();
    json!({
        "origin": c.origin,
        "epoch": c.epoch,
        "size": c.size,
        "root": B64.encode(c.root),
        "time_ms": c.time_ms,
        "note": cp.note(),
    })
}

fn checkpoint_line(cp: &SignedCheckpoint) -> String {
    let c = cp.checkpoint();
    format!(
        "epoch {}, tree size {}, root {}",
        c.epoch,
        c.size,
        B64.encode(c.root)
    )
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    // The one command that needs no server.
    if let Command::Key(KeyCommand::New { identifier, alg }) = &cli.command {
        return directory::key_new(cli, identifier, *alg);
    }
    // Flags and arguments first: a bad witness policy or identifier is refused before anything
    // is sent.
    let policy = policy(cli)?;
    if let Some(identifier) = named_identifier(&cli.command) {
        kt_core::directory::check_identifier(identifier)
            .map_err(|e| anyhow::anyhow!("identifier {identifier:?}: {e}"))?;
    }
    let key = log_key(cli)?;
    let state = state_path(cli, &key)?;
    let tls = kt_client::TlsOptions {
        ca_file: cli.tls_ca.clone(),
        cert_file: cli.tls_cert.clone(),
        key_file: cli.tls_key.clone(),
    };
    let mut client = LogClient::connect_tls(&cli.server, &key, &state, &tls)
        .await?
        .with_policy(policy);
    match &cli.command {
        Command::Append { namespace, payload } => {
            let bytes = read_payload(payload)?;
            let receipt = client.append(namespace, bytes).await?;
            if cli.json {
                let out = json!({
                    "index": receipt.index,
                    "entry": B64.encode(&receipt.entry),
                    "checkpoint": checkpoint_json(&receipt.checkpoint),
                    "inclusion_proof": receipt.inclusion_proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                });
                say!("{out}");
            } else {
                say!("appended entry {} (verified)", receipt.index);
                say!("  in checkpoint {}", checkpoint_line(&receipt.checkpoint));
                say!(
                    "  inclusion proof: {} hashes, verified against the signed root",
                    receipt.inclusion_proof.len()
                );
                print_quorum(&client, &receipt.checkpoint);
            }
        }
        Command::CheckWitness { witness, note } => {
            let witness = kt_core::cosignature::CosignatureVerifier::parse(witness.trim())
                .map_err(|e| anyhow::anyhow!("witness key {witness:?}: {e}"))?;
            let bytes = if note == "-" {
                read_payload(note)?
            } else if note.starts_with("http://") || note.starts_with("https://") {
                fetch_witness_checkpoint(cli, note).await?
            } else {
                std::fs::read(note).map_err(|e| anyhow::anyhow!("{note}: {e}"))?
            };
            let theirs = client.check_witness(&witness, &bytes).await?;
            if cli.json {
                say!("{}", checkpoint_json(&theirs));
            } else {
                say!(
                    "witness {} cosigned {}: consistent with the trusted state",
                    witness.name(),
                    checkpoint_line(&theirs)
                );
            }
        }
        Command::Checkpoint => {
            let refresh = client.refresh().await?;
            print_refresh(cli.json, &refresh, state.display().to_string());
            if !cli.json {
                print_quorum(&client, refresh.checkpoint());
            }
        }
        Command::Prove { index } => {
            let proof = client.prove(*index).await?;
            if cli.json {
                let out = json!({
                    "index": proof.index,
                    "entry": B64.encode(&proof.entry),
                    "checkpoint": checkpoint_json(&proof.checkpoint),
                    "inclusion_proof": proof.inclusion_proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                });
                say!("{out}");
            } else {
                say!("entry {} is in the log (verified)", proof.index);
                say!("  checkpoint {}", checkpoint_line(&proof.checkpoint));
                say!("  inclusion proof: {} hashes", proof.inclusion_proof.len());
                match kt_core::entry::Entry::decode(&proof.entry) {
                    Ok(kt_core::entry::Entry::Record(r)) => {
                        say!("  namespace {}", r.namespace());
                        say!("  payload   {}", String::from_utf8_lossy(r.payload()));
                    }
                    Ok(kt_core::entry::Entry::KeyUpdate(u)) => {
                        say!(
                            "  key update: {} of label {}, version {}",
                            u.op(),
                            u.label(),
                            u.version()
                        );
                    }
                    Ok(kt_core::entry::Entry::Message(m)) => {
                        say!(
                            "  message {} of author {} in {}",
                            m.sequence(),
                            m.author(),
                            m.namespace()
                        );
                    }
                    Err(e) => say!("  entry bytes do not decode: {e}"),
                }
            }
        }
        Command::Verify => {
            let refresh = client.verify().await?;
            if !cli.json {
                say!("the server still serves the trusted checkpoint, and its latest is consistent with it");
            }
            print_refresh(cli.json, &refresh, state.display().to_string());
        }
        Command::Key(cmd) => directory::key(cli, client, cmd).await?,
        Command::Lookup { identifier, epoch } => {
            directory::lookup(cli, client, identifier, *epoch).await?
        }
        Command::History { identifier } => directory::history(cli, client, identifier).await?,
        Command::Monitor { identifier, once } => {
            directory::monitor(cli, client, identifier, *once).await?
        }
        Command::Message(cmd) => directory::message(cli, client, cmd).await?,
    }
    Ok(())
}

/// Under a witness policy: which of its witnesses cosigned `cp`.
fn print_quorum(client: &LogClient, cp: &SignedCheckpoint) {
    let Some(policy) = &client.policy().witnesses else {
        return;
    };
    let Ok(note) = kt_core::note::Note::parse(cp.note().as_bytes()) else {
        return;
    };
    let names: Vec<String> = policy
        .cosigners(&note)
        .iter()
        .map(|(w, _)| w.name().to_string())
        .collect();
    if names.len() >= policy.threshold() {
        say!(
            "  cosigned by {} of the policy's {} witnesses ({} required): {}",
            names.len(),
            policy.witnesses().len(),
            policy.threshold(),
            names.join(", ")
        );
    } else {
        // The trusted copy of an unchanged checkpoint may predate its cosignatures.
        say!(
            "  witness quorum ({} of {}) met when it was accepted",
            policy.threshold(),
            policy.witnesses().len()
        );
    }
}

fn print_refresh(json: bool, refresh: &Refresh, state: String) {
    if json {
        let (status, from) = match refresh {
            Refresh::FirstUse(_) => ("first-use", None),
            Refresh::Unchanged(_) => ("unchanged", None),
            Refresh::Advanced { from, .. } => ("advanced", Some(checkpoint_json(from))),
        };
        let out = json!({
            "status": status,
            "checkpoint": checkpoint_json(refresh.checkpoint()),
            "previous": from,
            "state": state,
        });
        say!("{out}");
        return;
    }
    match refresh {
        Refresh::FirstUse(cp) => {
            say!(
                "trusting this log from now on (first use): {}",
                checkpoint_line(cp)
            );
            say!("  state saved to {state}");
        }
        Refresh::Unchanged(cp) => say!("checkpoint unchanged: {}", checkpoint_line(cp)),
        Refresh::Advanced { from, to } => {
            say!("checkpoint verified: {}", checkpoint_line(to));
            say!(
                "  consistent with the previously trusted epoch {} (tree size {})",
                from.checkpoint().epoch,
                from.checkpoint().size
            );
        }
    }
}
