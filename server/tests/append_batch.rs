//! `AppendBatch` over loopback gRPC with RocksDB: a batch lands whole, consecutively and in order
//! in one signed epoch while other clients append single records, with the bytes a single
//! `Append` would write; bad batches are refused naming what is wrong and change nothing; and
//! every record costs one write token. Batches also build the log of several download chunks
//! that the auditor's chunked, prefetching walk is tested on.

mod common;

use futures::StreamExt;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::entry::{Entry, Namespace, Record};
use kt_core::hash::leaf_hash;
use kt_core::merkle::verify_inclusion;
use kt_core::note::NoteVerifier;
use kt_proto::hashes_from_wire;
use kt_proto::v1::log_client::LogClient;
use kt_proto::v1::{
    AppendBatchRequest, AppendRequest, GetEntriesRequest, GetInclusionProofRequest,
};
use ktd::RunningServer;
use tonic::transport::Channel;
use tonic::Code;

const BATCHES: usize = 5;
const BATCH: usize = 200;

fn record(namespace: &str, payload: String) -> AppendRequest {
    AppendRequest {
        namespace: namespace.into(),
        payload: payload.into_bytes(),
    }
}

fn canonical(r: &AppendRequest) -> Vec<u8> {
    let record = Record::new(Namespace::new(&r.namespace).unwrap(), r.payload.clone()).unwrap();
    Entry::Record(record).encode()
}

async fn client(server: &RunningServer) -> LogClient<Channel> {
    LogClient::connect(common::grpc_url(server)).await.unwrap()
}

fn open(server: &RunningServer, note: &[u8]) -> SignedCheckpoint {
    let verifier = NoteVerifier::parse(&server.verifier_key).unwrap();
    SignedCheckpoint::open(note, common::ORIGIN, &verifier).unwrap()
}

async fn log_size(server: &RunningServer) -> u64 {
    common::log_check::latest(&mut client(server).await)
        .await
        .size
}

async fn entries(log: &mut LogClient<Channel>, start: u64, end: u64) -> Vec<Vec<u8>> {
    let mut stream = log
        .get_entries(GetEntriesRequest { start, end })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.next().await {
        out.push(e.unwrap().data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_land_whole_and_in_order_among_single_appends() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;

    // Two clients append single records the whole time the batches are sent.
    let mut singles = Vec::new();
    for c in 0..2 {
        let mut log = client(&server).await;
        singles.push(tokio::spawn(async move {
            for i in 0..60 {
                log.append(record("batch/single", format!("client {c} record {i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut log = client(&server).await;
    let mut sent = Vec::new();
    for b in 0..BATCHES {
        let records: Vec<AppendRequest> = (0..BATCH)
            .map(|i| record("batch/test", format!("batch {b} record {i}")))
            .collect();
        let answer = log
            .append_batch(AppendBatchRequest {
                records: records.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        sent.push((records, answer));
    }
    for s in singles {
        s.await.unwrap();
    }

    for (records, answer) in &sent {
        let cp = open(&server, &answer.checkpoint.as_ref().unwrap().note);
        let cp = cp.checkpoint();
        let first = answer.first_index;
        let end = first + records.len() as u64;
        assert!(end <= cp.size, "the checkpoint includes the whole batch");
        // Consecutive and in request order, with the bytes a single Append would write.
        let stored = entries(&mut log, first, end).await;
        let expected: Vec<Vec<u8>> = records.iter().map(canonical).collect();
        assert_eq!(stored, expected);
        // Proven against the answer's checkpoint, at both ends of the batch.
        for index in [first, end - 1] {
            let proof = log
                .get_inclusion_proof(GetInclusionProofRequest {
                    index,
                    tree_size: cp.size,
                })
                .await
                .unwrap()
                .into_inner();
            let proof = hashes_from_wire("hashes", &proof.hashes).unwrap();
            let leaf = leaf_hash(&stored[(index - first) as usize]);
            verify_inclusion(&leaf, index, cp.size, &proof, &cp.root).unwrap();
        }
    }
    assert_eq!(
        log_size(&server).await,
        (BATCHES * BATCH + 2 * 60) as u64,
        "every record once"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut log = client(&server).await;
    log.append(record("batch/test", "first".into()))
        .await
        .unwrap();
    let before = log_size(&server).await;

    let good = |n: usize| -> Vec<AppendRequest> {
        (0..n)
            .map(|i| record("batch/test", format!("record {i}")))
            .collect()
    };
    let mut one_bad = good(10);
    one_bad[3].namespace = "Not A Namespace".into();
    let mut one_empty = good(10);
    one_empty[7].payload.clear();
    for (records, says) in [
        (Vec::new(), "1 to 1000 records"),
        (good(1001), "1 to 1000 records"),
        (one_bad, "records[3]"),
        (one_empty, "records[7]"),
    ] {
        let status = log
            .append_batch(AppendBatchRequest { records })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }
    assert_eq!(log_size(&server).await, before, "nothing was appended");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_of_a_batch_costs_one_write_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = common::raw_config(dir.path());
    // 1 write per second in bursts of 20: the tokens of one test run do not come back.
    raw.write_rate_per_sec = Some(1);
    raw.write_burst = Some(20);
    let server = common::start_with(raw).await;
    let mut log = client(&server).await;
    let batch = |n: usize| AppendBatchRequest {
        records: (0..n)
            .map(|i| record("batch/test", format!("record {i}")))
            .collect(),
    };

    let status = log.append_batch(batch(21)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("burst of 20"), "{status:?}");
    // 15 of the 20 tokens (less the one the refused call took) go to this batch ...
    log.append_batch(batch(15)).await.unwrap();
    // ... so another batch of 15 must wait, and says for how long.
    let status = log.append_batch(batch(15)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.metadata().get("retry-after-ms").is_some(),
        "{status:?}"
    );
    assert_eq!(log_size(&server).await, 15);
    server.shutdown().await;
}

/// The auditor downloads entries in chunks of 10,000, the next one while it replays the current
/// one: a log of several chunks (the last one partial) passes, the walk resumed mid-chunk from
/// saved state passes, and a fresh auditor on that state downloads and replays it all again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_of_several_download_chunks_passes_and_resumes() {
    use kt_audit::{Auditor, Outcome};

    let dir = tempfile::tempdir().unwrap();
    let mut raw = common::raw_config(dir.path());
    raw.write_rate_per_sec = Some(0);
    let server = common::start_with(raw).await;
    let log = client(&server).await;
    let append = |records: usize, tag: &'static str| {
        let mut log = log.clone();
        let requests: Vec<AppendRequest> = (0..records)
            .map(|i| record("batch/audit", format!("{tag} {i}")))
            .collect();
        async move {
            log.append_batch(AppendBatchRequest { records: requests })
                .await
        }
    };
    let audit = common::audit_config(&server, &dir.path().join("audit"));
    let clean = |outcome: Outcome| match outcome {
        Outcome::Clean { size, .. } => size,
        Outcome::Violation { finding, .. } => panic!("clean log flagged: {finding:?}"),
    };

    for b in 0..12 {
        append(1_000, if b % 2 == 0 { "even" } else { "odd" })
            .await
            .unwrap();
    }
    let first = log_size(&server).await;
    assert_eq!(first, 12_000);
    let mut auditor = Auditor::new(audit.clone()).await.unwrap();
    assert_eq!(clean(auditor.run_once().await.unwrap()), first);

    for _ in 0..10 {
        append(1_000, "more").await.unwrap();
    }
    append(7, "tail").await.unwrap();
    let second = log_size(&server).await;
    assert_eq!(second, 22_007);
    assert_eq!(clean(auditor.run_once().await.unwrap()), second);

    let mut fresh = Auditor::new(audit).await.unwrap();
    assert_eq!(fresh.state().frontier.size(), second, "state was kept");
    assert_eq!(clean(fresh.run_once().await.unwrap()), second);
    server.shutdown().await;
}
