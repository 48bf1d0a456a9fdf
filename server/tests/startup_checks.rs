//! The server refuses to serve storage that does not match its last signed checkpoint.

mod common;

use kt_client::LogClient;

async fn log_with_entries(dir: &std::path::Path, n: usize) {
    let server = common::start(dir).await;
    let mut client = LogClient::connect(
        &common::grpc_url(&server),
        &server.verifier_key,
        dir.join("c.json"),
    )
    .await
    .unwrap();
    for i in 0..n {
        client
            .append("startup", format!("entry {i}").into_bytes())
            .await
            .unwrap();
    }
    server.shutdown().await;
}

async fn start_error(dir: &std::path::Path) -> String {
    let config = ktd::config::Config::validate(common::raw_config(dir)).unwrap();
    match ktd::start(config).await {
        Ok(_) => panic!("the server started on tampered storage"),
        Err(e) => format!("{e:#}"),
    }
}

fn open_db(dir: &std::path::Path) -> ktd::storage::Storage {
    ktd::storage::Storage::open(&dir.join("db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_entry_byte_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 5).await;
    {
        let db = open_db(dir.path());
        let mut entry = db.entry(2).unwrap().unwrap();
        let last = entry.len() - 1;
        entry[last] ^= 1;
        db.raw_put("entries", &2u64.to_be_bytes(), &entry).unwrap();
    }
    let err = start_error(dir.path()).await;
    assert!(err.contains("disagrees") || err.contains("root"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tile_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 3).await;
    open_db(dir.path())
        .raw_delete("tiles", &[0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let err = start_error(dir.path()).await;
    assert!(err.contains("tile 0/0 is missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_log_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 4).await;
    open_db(dir.path())
        .raw_delete("entries", &3u64.to_be_bytes())
        .unwrap();
    let err = start_error(dir.path()).await;
    assert!(err.contains("entry 3 is missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 1).await;
    let other = dir.path().join("other.key");
    ktd::keys::generate(&other, common::ORIGIN).unwrap();
    let mut raw = common::raw_config(dir.path());
    raw.key_file = Some(other);
    let config = ktd::config::Config::validate(raw).unwrap();
    let err = format!("{:#}", ktd::start(config).await.unwrap_err());
    assert!(err.contains("verifier_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 3).await;
    let server = common::start(dir.path()).await;
    server.shutdown().await;
}
