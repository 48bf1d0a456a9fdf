//! Storage faults injected at every step of the epoch commit, on a real server with RocksDB:
//!
//! | step                                    | fault                                   |
//! |-----------------------------------------|-----------------------------------------|
//! | before signing (verify the new root)    | reading the stored tree border fails    |
//! | the commit point (one synced batch)     | fails and nothing is written            |
//! |                                         | fails like a full disk (ENOSPC)         |
//! |                                         | reports failure but was written         |
//! | after the commit, before publish/reply  | the write path fails there              |
//!
//! (ktd signs before its single batch, which holds the entries, tiles, map and checkpoint, so
//! "after the batch, before signing" and "after signing, before storing the checkpoint" are one
//! step: the batch.) After each fault: the request of that epoch is answered UNAVAILABLE, reads
//! keep working, no checkpoint is ever served that storage does not hold, no epoch is ever
//! served with two different checkpoints, the sequencer recovers by itself (a signed epoch whose
//! write failed is written again, so its entries are in the log), the chain and every
//! acknowledged entry are intact, and a restart with the full start-up check accepts the result.

mod common;

use std::collections::BTreeMap;

use common::log_check::*;
use kt_proto::v1::log_client::LogClient as Rpc;
use ktd::storage::Fault;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_at_each_commit_step_loses_nothing_and_forks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let url = common::grpc_url(&server);
    let mut rpc = Rpc::connect(url.clone()).await.unwrap();
    let served = watch_everything(Rpc::connect(url).await.unwrap());
    let mut acknowledged = BTreeMap::new();

    let faults = [
        (Fault::ReadBeforeSigningFails, false),
        (Fault::CommitFailsNotWritten, true),
        (Fault::CommitNoSpace, true),
        (Fault::CommitFailsButWritten, true),
        (Fault::FailsAfterCommit, true),
    ];
    for (round, (fault, signed)) in faults.into_iter().enumerate() {
        for i in 0..3 {
            let text = format!("round {round} before {i}");
            let index = append(&mut rpc, &text).await.unwrap();
            acknowledged.insert(index, record_bytes(&text));
        }
        let before = latest(&mut rpc).await;

        server.storage().inject_fault(fault);
        let victim = format!("round {round}: the entry of the failed epoch ({fault:?})");
        let refused = append(&mut rpc, &victim).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{fault:?}: {refused:?}");
        assert!(
            refused.message().contains("may or may not be in the log")
                || refused.message().contains("commit failed"),
            "{fault:?}: the message says what happened: {}",
            refused.message()
        );
        // Reads keep working while the write path recovers.
        let during = latest(&mut rpc).await;
        assert!(during.epoch == before.epoch || (signed && during.epoch == before.epoch + 1));

        let after_text = format!("round {round} after the fault");
        let after = append_when_recovered(&mut rpc, &after_text).await;
        acknowledged.insert(after, record_bytes(&after_text));

        // A signed epoch whose write failed is written again, not signed anew: the victim is in
        // the log exactly once, in the epoch right after `before`. Before signing, nothing was
        // signed and the victim is not in the log.
        let size = latest(&mut rpc).await.size;
        let entries = server.storage().entries(0, size).unwrap();
        let victim_bytes = record_bytes(&victim);
        let found: Vec<u64> = (0..size)
            .filter(|i| entries[*i as usize] == victim_bytes)
            .collect();
        if signed {
            assert_eq!(found, vec![before.size], "{fault:?}");
            let next = body_of(
                &server
                    .storage()
                    .log_checkpoint(before.epoch + 1)
                    .unwrap()
                    .unwrap(),
            );
            assert_eq!(
                next.size,
                before.size + 1,
                "{fault:?}: the failed epoch as signed"
            );
        } else {
            assert!(found.is_empty(), "{fault:?}: {found:?}");
        }
        check_log(&server, &served, &acknowledged);
    }

    // A restart with the full start-up check accepts everything the faults left behind.
    let last = latest(&mut rpc).await;
    drop(rpc);
    server.shutdown().await;
    let server = common::start(dir.path()).await;
    let mut rpc = Rpc::connect(common::grpc_url(&server)).await.unwrap();
    assert_eq!(latest(&mut rpc).await, last);
    let index = append(&mut rpc, "after the restart").await.unwrap();
    acknowledged.insert(index, record_bytes("after the restart"));
    check_log(&server, &served, &acknowledged);
    server.shutdown().await;
}

/// Without a fault, the same sequence of appends never leaves the UNAVAILABLE path: the test
/// above fails for the faults, not for its own load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_without_faults_are_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut rpc = Rpc::connect(common::grpc_url(&server)).await.unwrap();
    for i in 0..20 {
        assert_eq!(append(&mut rpc, &format!("plain {i}")).await.unwrap(), i);
    }
    server.shutdown().await;
}
