//! `kt-audit`: audit a KeyTrail log from the command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kt_audit::{AuditConfig, Auditor, Outcome};

#[derive(Debug, Parser)]
#[command(
    name = "kt-audit",
    version,
    about = "Audit a KeyTrail log: download every entry, recompute the tree, replay the directory, check every checkpoint and map root"
)]
struct Cli {
    /// gRPC address of ktd.
    #[arg(long, env = "KT_SERVER", default_value = kt_client::DEFAULT_SERVER)]
    server: String,
    /// The log's verifier key, or a file holding it.
    #[arg(long, env = "KT_LOG_KEY")]
    log_key: String,
    /// Where the audit state is kept between runs.
    #[arg(long, env = "KT_AUDIT_STATE_DIR", default_value = "./audit")]
    state_dir: PathBuf,
    /// Where evidence files are written (default: the state directory).
    #[arg(long)]
    evidence_dir: Option<PathBuf>,
    /// Also compare the HTTP tiles, e.g. http://127.0.0.1:8080
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
}

/// Exit code when the log was caught misbehaving (evidence written).
const EXIT_VIOLATION: u8 = 2;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let log_key = kt_client::read_log_key(&cli.log_key).map_err(anyhow::Error::msg)?;
    let config = AuditConfig {
        server: cli.server,
        log_key,
        evidence_dir: cli.evidence_dir.unwrap_or_else(|| cli.state_dir.clone()),
        state_dir: cli.state_dir,
        tiles_url: cli.tiles_url,
        progress: !cli.quiet && std::io::stderr().is_terminal(),
    };
    let mut auditor = Auditor::new(config).await?;
    if cli.once {
        auditor.run_once().await
    } else {
        auditor.follow().await
    }
}
