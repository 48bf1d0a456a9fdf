//! Shared helpers for the end-to-end tests: a real `ktd` on 127.0.0.1 with RocksDB in a temp dir.
#![allow(dead_code)]

pub mod directory;
pub mod log_check;

use std::path::Path;

use ktd::config::{Config, RawConfig};
use ktd::startup::StartupCheck;
use ktd::RunningServer;

pub const ORIGIN: &str = "test.keytrail/log";
/// The identity provider's token of every test server.
pub const PROVIDER_TOKEN: &str = "test-provider-token-0123456789";

/// A config for a test server: ephemeral ports, short epochs, no heartbeats unless asked.
pub fn raw_config(dir: &Path) -> RawConfig {
    RawConfig {
        data_dir: Some(dir.join("db")),
        grpc_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        origin: Some(ORIGIN.into()),
        key_file: None,
        epoch_interval_ms: Some(10),
        heartbeat_ms: Some(3_600_000),
        max_batch: Some(1_000),
        queue_depth: Some(10_000),
        startup_check: Some(StartupCheck::Full),
        provider_token: Some(PROVIDER_TOKEN.into()),
        provider_token_file: None,
        vrf_key_file: None,
        witnesses: None,
        // Plaintext; later settings (TLS, limits) keep their defaults.
        ..RawConfig::default()
    }
}

/// Starts a server on `dir` (creating the log and its key on first use).
pub async fn start(dir: &Path) -> RunningServer {
    start_with(raw_config(dir)).await
}

pub async fn start_with(raw: RawConfig) -> RunningServer {
    let config = Config::validate(raw).expect("valid test config");
    ktd::start(config).await.expect("server starts")
}

pub fn grpc_url(server: &RunningServer) -> String {
    format!("http://{}", server.grpc_addr)
}

pub fn http_url(server: &RunningServer) -> String {
    format!("http://{}", server.http_addr)
}

/// An in-process `kt-audit` of `server` that also compares its HTTP tiles, with its state and
/// evidence under `state_dir`.
pub fn audit_config(server: &RunningServer, state_dir: &Path) -> kt_audit::AuditConfig {
    kt_audit::AuditConfig {
        server: grpc_url(server),
        log_key: server.verifier_key.clone(),
        state_dir: state_dir.to_owned(),
        evidence_dir: state_dir.to_owned(),
        tiles_url: Some(http_url(server)),
        progress: false,
    }
}

/// A built workspace binary (`kt`, `kt-audit`, `ktd`): they sit next to the test's `deps/`
/// directory when the tests are built with `cargo build/test --workspace --all-targets`.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace --all-targets` (make test)",
        path.display()
    );
    path
}

/// Copies a directory tree (a stopped server's data directory, to make a second view of it).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
