//! Why a run could not start or finish. Failed operations are not errors of the run: they are
//! counted in the report by gRPC code.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {server}: {reason} (is ktd running there?)")]
    Connect { server: String, reason: String },
    /// The setup phase must register every identity, or later operations would fail for a
    /// reason that is not the server's load.
    #[error("setup: registering {identifier}: {reason}")]
    Setup { identifier: String, reason: String },
    /// The scale test's loader or its server could not do their part.
    #[error("scale test: {0}")]
    Scale(String),
    #[error("writing the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}
