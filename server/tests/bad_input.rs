//! Bad input gets the right status with a message that says what was wrong, and writes nothing.

mod common;

use kt_proto::v1::log_client::LogClient as Rpc;
use kt_proto::v1::*;
use tonic::Code;

async fn latest_size(rpc: &mut Rpc<tonic::transport::Channel>) -> (u64, u64) {
    let note = rpc
        .get_checkpoint(GetCheckpointRequest { epoch: None })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .note;
    let text = String::from_utf8(note).unwrap();
    let body = format!("{}\n", text.split("\n\n").next().unwrap());
    let cp = kt_core::checkpoint::Checkpoint::parse_body(&body).unwrap();
    (cp.size, cp.epoch)
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, mentions: &str) {
    let status = result.expect_err("bad input must be refused");
    assert_eq!(status.code(), code, "message: {}", status.message());
    assert!(
        status.message().contains(mentions),
        "message {:?} should mention {mentions:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut rpc = Rpc::connect(common::grpc_url(&server)).await.unwrap();
    let ok = rpc
        .append(AppendRequest {
            namespace: "ok".into(),
            payload: b"fine".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.index, 0);
    let before = latest_size(&mut rpc).await;

    let append = |namespace: &str, payload: Vec<u8>| AppendRequest {
        namespace: namespace.into(),
        payload,
    };
    let mut r = rpc.clone();
    assert_status(
        r.append(append("ns", vec![1; 32 * 1024 + 1])).await,
        Code::InvalidArgument,
        "payload",
    );
    assert_status(
        r.append(append("ns", vec![])).await,
        Code::InvalidArgument,
        "payload",
    );
    assert_status(
        r.append(append("", b"x".to_vec())).await,
        Code::InvalidArgument,
        "namespace",
    );
    assert_status(
        r.append(append("Bad Space", b"x".to_vec())).await,
        Code::InvalidArgument,
        "namespace",
    );
    assert_status(
        r.append(append(&"n".repeat(65), b"x".to_vec())).await,
        Code::InvalidArgument,
        "namespace",
    );
    // Larger than the server's message limit: refused by the transport before any handler.
    let huge = r.append(append("ns", vec![1; 300 * 1024])).await;
    assert!(huge.is_err());

    assert_status(
        r.get_inclusion_proof(GetInclusionProofRequest {
            index: 5,
            tree_size: 1,
        })
        .await,
        Code::InvalidArgument,
        "index 5",
    );
    assert_status(
        r.get_inclusion_proof(GetInclusionProofRequest {
            index: 0,
            tree_size: 99,
        })
        .await,
        Code::OutOfRange,
        "tree_size 99",
    );
    assert_status(
        r.get_inclusion_proof(GetInclusionProofRequest {
            index: 0,
            tree_size: 0,
        })
        .await,
        Code::InvalidArgument,
        "index 0",
    );
    assert_status(
        r.get_consistency_proof(GetConsistencyProofRequest {
            old_size: 2,
            new_size: 1,
        })
        .await,
        Code::InvalidArgument,
        "old_size 2",
    );
    assert_status(
        r.get_consistency_proof(GetConsistencyProofRequest {
            old_size: 1,
            new_size: 50,
        })
        .await,
        Code::OutOfRange,
        "new_size 50",
    );
    assert_status(
        r.get_checkpoint(GetCheckpointRequest { epoch: Some(1_000) })
            .await,
        Code::NotFound,
        "epoch 1000",
    );
    assert_status(
        r.get_entries(GetEntriesRequest { start: 3, end: 3 }).await,
        Code::InvalidArgument,
        "empty range",
    );
    assert_status(
        r.get_entries(GetEntriesRequest {
            start: 0,
            end: 20_000,
        })
        .await,
        Code::InvalidArgument,
        "at most",
    );
    assert_status(
        r.get_entries(GetEntriesRequest { start: 0, end: 2 }).await,
        Code::OutOfRange,
        "end 2",
    );
    assert_status(
        r.watch_checkpoints(WatchCheckpointsRequest {
            after_epoch: Some(999),
        })
        .await,
        Code::OutOfRange,
        "after_epoch 999",
    );

    assert_eq!(latest_size(&mut rpc).await, before, "nothing was written");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_http_requests_get_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let base = common::http_url(&server);
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).send().await.unwrap() }
    };
    let checkpoint = get("/checkpoint").await;
    assert_eq!(checkpoint.status(), 200);
    assert!(checkpoint.text().await.unwrap().starts_with(common::ORIGIN));

    for (path, status) in [
        ("/tile/0/000", 404), // not in the tree yet
        ("/tile/entries/000.p/1", 404),
        ("/tile/0/abc", 400),
        ("/tile/0/000.p/0", 400),
        ("/tile/0/000.p/256", 400),
        ("/tile/99/000", 400),
        ("/tile/0/x1/000", 400),
        ("/tile/0/000/extra/segments", 400),
        ("/tile/%00%ff", 400),
        ("/nothing-here", 404),
    ] {
        let resp = get(path).await;
        assert_eq!(resp.status().as_u16(), status, "GET {path}");
        assert!(
            !resp.text().await.unwrap().is_empty(),
            "GET {path} explains itself"
        );
    }
    let long = format!("/tile/0/{}", "x001/".repeat(200));
    assert_eq!(get(&long).await.status().as_u16(), 400);
    let post = http
        .post(format!("{base}/checkpoint"))
        .body("junk")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
    server.shutdown().await;
}
