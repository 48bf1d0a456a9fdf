//! `kt-audit`: audit a KeyTrail log from the command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kt_audit::{AuditConfig, Auditor, Outcome};

#[derive(Debug, Parser)]
#[command(
    name = "kt-audit",
    version,
    about = "Audit a KeyTrail log: download every entry, recompute the tree, replay the directory, check every checkpoint and map root"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// gRPC address of ktd; `https://` connects over TLS.
    #[arg(long, env = "KT_SERVER", default_value = kt_client::DEFAULT_SERVER)]
    server: String,
    /// For an https:// --server and --tiles-url: PEM CA certificate(s) to trust instead of the
    /// system's roots.
    #[arg(long, env = "KT_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate, sent when the server asks.
    #[arg(long, env = "KT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "KT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The log's verifier key, or a file holding it.
    #[arg(long, env = "KT_LOG_KEY")]
    log_key: Option<String>,
    /// Where the audit state is kept between runs.
    #[arg(long, env = "KT_AUDIT_STATE_DIR", default_value = "./audit")]
    state_dir: PathBuf,
    /// Where evidence files are written (default: the state directory).
    #[arg(long)]
    evidence_dir: Option<PathBuf>,
    /// Also compare the HTTP tiles, e.g. http://127.0.0.1:8080 (or https:// with TLS)
    #[arg(long)]
    tiles_url: Option<String>,
    /// Audit up to the latest checkpoint, then exit.
    #[arg(long, conflicts_with = "follow")]
    once: bool,
    /// Keep auditing new checkpoints as they are published.
    #[arg(long)]
    follow: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also be a witness: cosign every checkpoint that passes the audit with this key file
    /// (`kt-audit witness-keygen` writes one) and submit the cosignature to the server.
    #[arg(long, env = "KT_AUDIT_WITNESS_KEY")]
    witness_key: Option<PathBuf>,
    /// Refuse (a `future-checkpoint` finding; a witness does not cosign it) a checkpoint whose
    /// time is more than this many seconds ahead of this machine's clock.
    #[arg(long, env = "KT_AUDIT_MAX_AHEAD", default_value_t = kt_client::DEFAULT_MAX_AHEAD.as_secs())]
    max_ahead: u64,
    /// Give up on an HTTP read of --tiles-url (connecting, the headers and the whole body) after
    /// this many seconds. Each read is also bounded in bytes (docs/operations.md, "HTTP reads").
    #[arg(long, env = "KT_AUDIT_HTTP_TIMEOUT", default_value_t = kt_client::http::DEFAULT_TIMEOUT.as_secs())]
    http_timeout: u64,
    /// With --witness-key: also serve the latest checkpoint this witness cosigned at
    /// `http://<addr>/checkpoint`, for clients' gossip (`kt check-witness`).
    #[arg(long, requires = "witness_key")]
    serve_latest: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new witness key file (mode 0600) and `<file>.pub`, and print the verifier key
    /// (what ktd's `--witness` and a client's witness policy take).
    WitnessKeygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
        /// The witness's name, e.g. `witness.example.org/w1`.
        #[arg(long)]
        name: String,
    },
    /// Print the latest checkpoint this witness cosigned (the log's signature and this witness's
    /// cosignature): what clients check with `kt check-witness` (gossip). Publish it anywhere.
    WitnessLatest,
}

/// Exit code when the log was caught misbehaving (evidence written).
const EXIT_VIOLATION: u8 = 2;

// Multi-threaded, so the next chunk of entries downloads while the replay works on this one.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::WitnessKeygen { out, name }) = &cli.command {
        return match kt_audit::witness::generate_key(out, name) {
            Ok(cosigner) => {
                eprintln!(
                    "wrote {} (mode 0600) and {}.pub",
                    out.display(),
                    out.display()
                );
                println!("{}", cosigner.verifier());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kt-audit: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::WitnessLatest) = &cli.command {
        return match witness_latest(&cli) {
            Ok(note) => {
                print!("{note}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kt-audit: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if !cli.once && !cli.follow {
        eprintln!("kt-audit: choose --once (audit up to the latest checkpoint) or --follow (keep watching)");
        return ExitCode::FAILURE;
    }
    match run(cli).await {
        Ok(Outcome::Clean { epoch, size }) => {
            println!(
                "audit passed: every checkpoint up to epoch {epoch} (tree size {size}) verified"
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::Violation {
            finding,
            evidence_file,
        }) => {
            eprintln!(
                "kt-audit: VIOLATION ({}) at epoch {}: {}",
                finding.kind, finding.epoch, finding.detail
            );
            eprintln!("kt-audit: evidence written to {}", evidence_file.display());
            ExitCode::from(EXIT_VIOLATION)
        }
        Err(e) => {
            eprintln!("kt-audit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn witness_latest(cli: &Cli) -> anyhow::Result<String> {
    let log_key = cli
        .log_key
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--log-key (or KT_LOG_KEY) is required"))?;
    let log_key = kt_core::note::NoteVerifier::parse(
        &kt_client::read_log_key(log_key).map_err(anyhow::Error::msg)?,
    )?;
    let key_file = cli
        .witness_key
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--witness-key is required"))?;
    let cosigner = kt_audit::witness::load_key(key_file)?;
    let witness = kt_audit::witness::Witness::open(cosigner, &cli.state_dir, &log_key)?;
    let cp = witness
        .cosigned()
        .ok_or_else(|| anyhow::anyhow!("this witness has cosigned nothing yet"))?;
    Ok(cp.note().to_owned())
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let serve_dir = cli.state_dir.clone();
    let log_key = cli
        .log_key
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--log-key (or KT_LOG_KEY) is required"))?;
    let log_key = kt_client::read_log_key(log_key).map_err(anyhow::Error::msg)?;
    let witness = cli
        .witness_key
        .as_deref()
        .map(kt_audit::witness::load_key)
        .transpose()?;
    let tls = kt_client::TlsOptions {
        ca_file: cli.tls_ca,
        cert_file: cli.tls_cert,
        key_file: cli.tls_key,
    };
    let config = AuditConfig {
        server: cli.server,
        log_key,
        evidence_dir: cli.evidence_dir.unwrap_or_else(|| cli.state_dir.clone()),
        state_dir: cli.state_dir,
        tiles_url: cli.tiles_url,
        progress: !cli.quiet && std::io::stderr().is_terminal(),
    };
    if let Some(addr) = cli.serve_latest {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding --serve-latest {addr}: {e}"))?;
        eprintln!(
            "kt-audit: serving the latest cosigned checkpoint at http://{}/checkpoint",
            listener.local_addr()?
        );
        let dir = serve_dir;
        tokio::spawn(async move {
            if let Err(e) = kt_audit::witness::serve_latest(listener, dir).await {
                eprintln!("kt-audit: the gossip endpoint failed: {e:#}");
            }
        });
    }
    let mut auditor = Auditor::with_tls(config, &tls).await?;
    auditor.set_max_ahead(std::time::Duration::from_secs(cli.max_ahead));
    auditor.set_http_timeout(std::time::Duration::from_secs(cli.http_timeout));
    if let Some(cosigner) = witness {
        auditor.set_witness(cosigner)?;
    }
    if cli.once {
        auditor.run_once().await
    } else {
        auditor.follow().await
    }
}
