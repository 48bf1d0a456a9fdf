//! `kt-bench`: parse flags, run, print the summary, write the JSON report.

use clap::Parser;
use kt_bench::{run, Args, BenchError};

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match main_with(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kt-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main_with(args: &Args) -> Result<(), BenchError> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    let report = runtime.block_on(run(&config))?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).map_err(|source| BenchError::Io {
            path: path.clone(),
            source,
        })?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
