//! `ktd`: parse flags, validate the config, serve until SIGINT/SIGTERM, drain.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ktd::config::{Config, RawConfig, DEFAULT_ORIGIN};

#[derive(Debug, Parser)]
#[command(name = "ktd", version, about = "KeyTrail key transparency server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file; flags and KTD_* environment variables override its values.
    #[arg(long, env = "KTD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    raw: RawConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the log (the default).
    Serve,
    /// Write a new signing key file (mode 0600) and print its verifier key.
    Keygen {
        /// Where to write the key; the verifier key goes next to it with extension `.pub`.
        #[arg(long)]
        out: PathBuf,
        /// The log's origin, which names the key.
        #[arg(long, default_value = DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Write a new VRF key file (mode 0600; labels are VRF outputs of identifiers) and print its
    /// public key, which clients are given like the log key.
    VrfKeygen {
        /// Where to write the key; the public key goes next to it with extension `.pub`.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Keygen { out, origin }) => keygen(&out, &origin),
        Some(Command::VrfKeygen { out }) => vrf_keygen(&out),
        Some(Command::Serve) | None => serve(cli.serve),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ktd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn keygen(out: &std::path::Path, origin: &str) -> anyhow::Result<()> {
    let signer = ktd::keys::generate(out, origin)?;
    eprintln!("wrote {} (mode 0600)", out.display());
    println!("{}", signer.verifier());
    Ok(())
}

fn vrf_keygen(out: &std::path::Path) -> anyhow::Result<()> {
    let seed = ktd::keys::generate_vrf(out)?;
    eprintln!("wrote {} (mode 0600)", out.display());
    let public = kt_core::vrf::VrfSecretKey::from_seed(seed).public();
    println!("{}", hex::encode(public.as_bytes()));
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let config = Config::validate(args.raw.or(file))?;
    let (grpc_scheme, http_scheme) = match &config.tls {
        Some(tls) if tls.provider_mtls() => ("TLS, provider mTLS", "https"),
        Some(_) => ("TLS", "https"),
        None => ("plaintext", "http"),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // tokio reads `TOKIO_WORKER_THREADS` itself, unless a count is set here.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(default_worker_threads());
    }
    runtime.enable_all().build()?.block_on(async move {
        let server = ktd::start(config).await?;
        println!("ktd serving origin {}", server.origin);
        println!("  gRPC        {} ({grpc_scheme})", server.grpc_addr);
        println!(
            "  HTTP tiles  {http_scheme}://{}/checkpoint",
            server.http_addr
        );
        println!("  log key     {}", server.verifier_key);
        println!("  VRF key     {}", server.vrf_public_key);
        wait_for_signal().await;
        eprintln!("ktd: shutting down (finishing the current epoch)");
        server.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Async workers: four per core, at least eight. Storage reads run on the worker serving the
/// request (see `service::on_blocking_pool`), so a read that waits on the disk holds its worker;
/// the spare workers keep serving meanwhile. On the 2-core machine 4 and 16 workers served
/// lookups alike (docs/performance.md).
fn default_worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).max(8)
}
