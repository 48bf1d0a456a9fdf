//! End to end over loopback gRPC with a real RocksDB: concurrent appends across many epochs,
//! every receipt, inclusion proof and consecutive consistency proof verified, a restart, more
//! appends, and a clean `kt-audit --once` (including the HTTP tiles).

mod common;

use std::sync::Arc;

use futures::StreamExt;
use kt_audit::{Auditor, Outcome};
use kt_client::{LogApi, LogClient};
use kt_core::hash::leaf_hash;
use kt_core::merkle::{verify_consistency, verify_inclusion};

const CLIENTS: u64 = 8;
const PER_CLIENT: u64 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_appends_survive_restart_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let url = common::grpc_url(&server);
    let key = server.verifier_key.clone();

    // Concurrent clients, each with its own trusted state; every receipt is verified by the client.
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (url, key, state) = (
            url.clone(),
            key.clone(),
            dir.path().join(format!("client-{c}.json")),
        );
        tasks.push(tokio::spawn(async move {
            let mut client = LogClient::connect(&url, &key, state).await.unwrap();
            let mut receipts = Vec::new();
            for i in 0..PER_CLIENT {
                let payload = format!("client {c} record {i}").into_bytes();
                let r = client.append("e2e/test", payload).await.unwrap();
                receipts.push(r);
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    let total = CLIENTS * PER_CLIENT;
    assert_eq!(receipts.len() as u64, total);
    let mut indexes: Vec<u64> = receipts.iter().map(|r| r.index).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..total).collect::<Vec<_>>(),
        "every index assigned once"
    );

    let api = LogApi::connect(&url, &key).await.unwrap();
    let latest = api.checkpoint(None).await.unwrap();
    let final_cp = latest.checkpoint().clone();
    assert_eq!(final_cp.size, total);
    assert!(
        final_cp.epoch > 10,
        "appends spread over many epochs, got {}",
        final_cp.epoch
    );

    // Every entry's inclusion proof against the final checkpoint, and the bytes match the receipt.
    let entries = api.entries(0, total).await.unwrap();
    for r in &receipts {
        assert_eq!(entries[r.index as usize], r.entry);
        let proof = api.inclusion_proof(r.index, final_cp.size).await.unwrap();
        verify_inclusion(
            &leaf_hash(&r.entry),
            r.index,
            final_cp.size,
            &proof,
            &final_cp.root,
        )
        .unwrap();
    }

    // Every checkpoint from genesis, in order, each consistent with and linked to the one before.
    let mut watch = Box::pin(api.watch(Some(0)).await.unwrap());
    let mut prev = api.checkpoint(Some(0)).await.unwrap();
    assert_eq!(prev.checkpoint().size, 0);
    while prev.checkpoint().epoch < final_cp.epoch {
        let next = watch.next().await.unwrap().unwrap();
        kt_core::trust::check_link(&prev, &next).unwrap();
        let (a, b) = (prev.checkpoint(), next.checkpoint());
        if a.size > 0 && a.size < b.size {
            let proof = api.consistency_proof(a.size, b.size).await.unwrap();
            verify_consistency(a.size, b.size, &proof, &a.root, &b.root).unwrap();
        }
        prev = next;
    }
    drop(watch);

    // Restart on the same storage: the state survived and appending continues.
    server.shutdown().await;
    let server = common::start(dir.path()).await;
    let url = common::grpc_url(&server);
    let mut client = LogClient::connect(&url, &key, dir.path().join("client-0.json"))
        .await
        .unwrap();
    let refreshed = client.refresh().await.unwrap();
    assert_eq!(refreshed.checkpoint().checkpoint().size, total);
    assert_eq!(refreshed.checkpoint().checkpoint().root, final_cp.root);
    let after = client
        .append("e2e/test", b"after restart".to_vec())
        .await
        .unwrap();
    assert_eq!(after.index, total);
    let proved = client.prove(7).await.unwrap();
    assert_eq!(proved.entry, entries[7]);

    // The auditor downloads everything, recomputes every root and compares the HTTP tiles.
    let audit = common::audit_config(&server, &dir.path().join("audit"));
    let mut auditor = Auditor::new(audit.clone()).await.unwrap();
    match auditor.run_once().await.unwrap() {
        Outcome::Clean { size, .. } => assert_eq!(size, total + 1),
        Outcome::Violation { finding, .. } => panic!("clean log flagged: {finding:?}"),
    }
    // A second run continues from the saved state and still passes.
    client
        .append("e2e/test", b"one more".to_vec())
        .await
        .unwrap();
    let mut auditor = Auditor::new(audit).await.unwrap();
    assert_eq!(
        auditor.state().frontier.size(),
        total + 1,
        "state was kept on disk"
    );
    match auditor.run_once().await.unwrap() {
        Outcome::Clean { size, .. } => assert_eq!(size, total + 2),
        Outcome::Violation { finding, .. } => panic!("clean log flagged: {finding:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_publish_empty_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = common::raw_config(dir.path());
    raw.heartbeat_ms = Some(30);
    let server = common::start_with(raw).await;
    let api = LogApi::connect(&common::grpc_url(&server), &server.verifier_key)
        .await
        .unwrap();
    let mut watch = Box::pin(api.watch(None).await.unwrap());
    let first = watch.next().await.unwrap().unwrap();
    let second = watch.next().await.unwrap().unwrap();
    let third = watch.next().await.unwrap().unwrap();
    kt_core::trust::check_link(&first, &second).unwrap();
    kt_core::trust::check_link(&second, &third).unwrap();
    assert_eq!(third.checkpoint().size, 0, "heartbeats carry no entries");
    drop(watch);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_queued_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = common::raw_config(dir.path());
    raw.epoch_interval_ms = Some(300);
    raw.heartbeat_ms = Some(3_600_000);
    let server = common::start_with(raw).await;
    let (url, key) = (common::grpc_url(&server), server.verifier_key.clone());
    let api = Arc::new(LogApi::connect(&url, &key).await.unwrap());
    let mut pending = Vec::new();
    for i in 0..20u32 {
        let api = api.clone();
        pending.push(tokio::spawn(async move {
            let record = kt_core::entry::Record::new(
                kt_core::entry::Namespace::new("shutdown").unwrap(),
                i.to_be_bytes().to_vec(),
            )
            .unwrap();
            api.append(&record).await
        }));
    }
    // Let the requests reach the queue, then stop mid-epoch.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    server.shutdown().await;
    let mut acknowledged = Vec::new();
    for p in pending {
        if let Ok(receipt) = p.await.unwrap() {
            acknowledged.push(receipt);
        }
    }
    assert_eq!(
        acknowledged.len(),
        20,
        "every queued append was sequenced before exit"
    );
    // Everything acknowledged is on disk after a restart.
    let server = common::start(dir.path()).await;
    let api = LogApi::connect(&common::grpc_url(&server), &key)
        .await
        .unwrap();
    let entries = api.entries(0, 20).await.unwrap();
    for r in &acknowledged {
        assert_eq!(entries[r.index as usize], r.entry);
    }
    server.shutdown().await;
}
