//! Witness cosigning (issue 4, items 1–3): the server's `Witnessing` service, cosigned
//! checkpoints in every answer, `kt-audit` as a witness, and clients with a k-of-n witness
//! policy. The split view is built as in `directory_lies.rs`: the operator copies the data
//! directory and grows the copies apart under the same signing key.

mod common;

use common::{binary, copy_dir};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::StreamExt;
use kt_audit::{AuditConfig, Auditor, Outcome};
use kt_client::{ClientError, DirectoryClient, LogApi, LogClient, Policy};
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::cosignature::{Cosigner, WitnessPolicy};
use kt_core::note::{KeyName, Note, NoteSigner};
use kt_core::trust::Violation;
use tonic::Code;

fn witnesses() -> Vec<Cosigner> {
    (1..=3u8)
        .map(|i| Cosigner::from_seed(KeyName::new(format!("witness{i}.test")).unwrap(), [i; 32]))
        .collect()
}

fn with_witnesses(dir: &Path, ws: &[Cosigner]) -> ktd::config::RawConfig {
    let mut raw = common::raw_config(dir);
    raw.witnesses = Some(ws.iter().map(|w| w.verifier().to_string()).collect());
    raw
}

fn policy(ws: &[Cosigner], k: usize, wait: Duration) -> Policy {
    Policy {
        witnesses: Some(WitnessPolicy::new(ws.iter().map(|w| w.verifier()).collect(), k).unwrap()),
        max_age: Some(Duration::from_secs(600)),
        quorum_wait: wait,
        ..Policy::default()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rpc_code(r: Result<(), ClientError>) -> Code {
    match r {
        Err(ClientError::Rpc(status)) => status.code(),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

/// How many of `ws` validly cosigned `cp`.
fn cosigners(cp: &SignedCheckpoint, ws: &[Cosigner]) -> Vec<String> {
    let note = Note::parse(cp.note().as_bytes()).unwrap();
    ws.iter()
        .filter(|w| w.verifier().verify_note(&note).is_ok())
        .map(|w| w.name().to_string())
        .collect()
}

fn audit_config(server: &str, key: &str, state_dir: &Path) -> AuditConfig {
    AuditConfig {
        server: server.to_owned(),
        log_key: key.to_owned(),
        state_dir: state_dir.to_owned(),
        evidence_dir: state_dir.join("evidence"),
        tiles_url: None,
        progress: false,
    }
}

/// One `kt-audit --once --witness-key` run, in process.
async fn witness_once(server: &str, key: &str, state_dir: &Path, w: &Cosigner) -> Outcome {
    let mut auditor = Auditor::new(audit_config(server, key, state_dir))
        .await
        .unwrap();
    auditor.set_witness(w.clone()).unwrap();
    auditor.run_once().await.unwrap()
}

async fn witness_clean(server: &str, key: &str, state_dir: &Path, w: &Cosigner) -> u64 {
    match witness_once(server, key, state_dir, w).await {
        Outcome::Clean { epoch, .. } => epoch,
        Outcome::Violation { finding, .. } => panic!("witness flagged: {finding:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_takes_cosignatures_only_from_its_witnesses_over_its_own_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ws = witnesses();
    // witness1 and witness2 are configured; witness3 is not.
    let server = common::start_with(with_witnesses(dir.path(), &ws[..2])).await;
    let (url, key) = (common::grpc_url(&server), server.verifier_key.clone());
    let api = LogApi::connect(&url, &key).await.unwrap();
    let mut client = LogClient::connect(&url, &key, dir.path().join("c.json"))
        .await
        .unwrap();
    let receipt = client.append("w/test", b"one".to_vec()).await.unwrap();
    let epoch = receipt.checkpoint.checkpoint().epoch;
    let body = receipt.checkpoint.checkpoint().body();
    let t = now_secs();

    // Keys other than the configured witnesses: PERMISSION_DENIED.
    let outsider = Cosigner::from_seed(KeyName::new("witness9.test").unwrap(), [9; 32]);
    for w in [&outsider, &ws[2]] {
        let line = w.cosign(&body, t).unwrap().to_line();
        assert_eq!(
            rpc_code(api.add_cosignature(epoch, line).await),
            Code::PermissionDenied
        );
    }
    // A configured witness's valid signature over another body, or over this body but sent for
    // another epoch: INVALID_ARGUMENT.
    let mut other = receipt.checkpoint.checkpoint().clone();
    other.size += 1;
    let line = ws[0].cosign(&other.body(), t).unwrap().to_line();
    assert_eq!(
        rpc_code(api.add_cosignature(epoch, line).await),
        Code::InvalidArgument
    );
    let line = ws[0].cosign(&body, t).unwrap().to_line();
    assert_eq!(
        rpc_code(api.add_cosignature(epoch - 1, line.clone()).await),
        Code::InvalidArgument
    );
    // An epoch the log has not signed: NOT_FOUND.
    assert_eq!(
        rpc_code(api.add_cosignature(epoch + 100, line.clone()).await),
        Code::NotFound
    );
    // Malformed lines: INVALID_ARGUMENT, whatever is wrong with them.
    let good_b64 = line.rsplit(' ').next().unwrap().to_owned();
    let raw = B64.decode(&good_b64).unwrap();
    let note_sig = {
        // The witness key used as a note signer: a 68-byte note signature line.
        let signer = NoteSigner::from_seed(KeyName::new("witness1.test").unwrap(), [1; 32]);
        let note = kt_core::note::sign_note(&body, &[&signer]).unwrap();
        note.lines().last().unwrap().to_owned()
    };
    let malformed = [
        String::new(),
        "witness1.test ".to_owned() + &good_b64,
        format!("- witness1.test {good_b64}"),
        "\u{2014} witness1.test".to_owned(),
        format!("\u{2014} witness1.test {good_b64}!"),
        format!("\u{2014} witness1.test {}", B64.encode(&raw[..75])),
        format!(
            "\u{2014} witness1.test {}",
            B64.encode([raw.clone(), vec![0]].concat())
        ),
        format!("\u{2014} witness+1.test {good_b64}"),
        format!("\u{2014} witness1.test {good_b64}\n\u{2014} x y"),
        note_sig,
    ];
    for m in &malformed {
        assert_eq!(
            rpc_code(api.add_cosignature(epoch, m.clone()).await),
            Code::InvalidArgument,
            "{m:?}"
        );
    }
    assert!(cosigners(&api.checkpoint(Some(epoch)).await.unwrap(), &ws).is_empty());

    // Watch the latest checkpoint, then cosign it: it is delivered again with the line.
    let mut watch = Box::pin(api.watch(None).await.unwrap());
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.checkpoint().epoch, epoch);
    api.add_cosignature(epoch, line.clone()).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(again.checkpoint(), first.checkpoint());
    assert_eq!(cosigners(&again, &ws), ["witness1.test"]);

    // Every answer carries it: by epoch, latest, and the HTTP checkpoint; the log's signature
    // stays the first signature line.
    let by_epoch = api.checkpoint(Some(epoch)).await.unwrap();
    let latest = api.checkpoint(None).await.unwrap();
    let http = reqwest::get(format!("{}/checkpoint", common::http_url(&server)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for note in [by_epoch.note(), latest.note(), http.as_str()] {
        assert!(note.ends_with(&format!("{line}\n")), "{note}");
        let sigs = note.split("\n\n").nth(1).unwrap();
        assert!(sigs.starts_with(&format!("\u{2014} {} ", common::ORIGIN)));
    }
    assert_eq!(by_epoch.note(), http);

    // A second witness, and a resubmission (new timestamp) that replaces the first line.
    api.add_cosignature(epoch, ws[1].cosign(&body, t).unwrap().to_line())
        .await
        .unwrap();
    api.add_cosignature(epoch, ws[0].cosign(&body, t + 1).unwrap().to_line())
        .await
        .unwrap();
    let both = api.checkpoint(Some(epoch)).await.unwrap();
    assert_eq!(cosigners(&both, &ws), ["witness1.test", "witness2.test"]);
    assert_eq!(
        both.note().matches('\u{2014}').count(),
        3,
        "{}",
        both.note()
    );

    // Durable: after a restart the latest checkpoint is served with both cosignatures.
    drop(watch);
    server.shutdown().await;
    let server = common::start_with(with_witnesses(dir.path(), &ws[..2])).await;
    let api = LogApi::connect(&common::grpc_url(&server), &key)
        .await
        .unwrap();
    let latest = api.checkpoint(None).await.unwrap();
    assert_eq!(latest.checkpoint().epoch, epoch);
    assert_eq!(cosigners(&latest, &ws).len(), 2);
    server.shutdown().await;
}

/// A client with a 2-of-3 witness policy waits for the quorum, and gives up with a clear error
/// (not a violation) when the witnesses do not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_accepts_only_checkpoints_with_a_quorum_and_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let ws = witnesses();
    let server = common::start_with(with_witnesses(dir.path(), &ws)).await;
    let (url, key) = (common::grpc_url(&server), server.verifier_key.clone());
    let state = dir.path().join("client.json");

    // No witness has cosigned anything: refused after the wait, state untouched.
    let mut client = LogClient::connect(&url, &key, &state)
        .await
        .unwrap()
        .with_policy(policy(&ws, 2, Duration::from_millis(300)));
    let err = client.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::NoQuorum {
                found: 0,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_violation());
    assert!(!state.exists());

    // One witness is not enough; two are.
    let w1 = dir.path().join("w1");
    witness_clean(&url, &key, &w1, &ws[0]).await;
    let err = client.refresh().await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoQuorum { found: 1, .. }),
        "{err}"
    );
    witness_clean(&url, &key, &dir.path().join("w2"), &ws[1]).await;
    let cp = client.refresh().await.unwrap().checkpoint().clone();
    assert_eq!(cosigners(&cp, &ws).len(), 2);
    assert_eq!(client.trusted().unwrap().note(), cp.note());

    // A receipt's checkpoint is new: the client asks for it again until the witnesses cosigned
    // it (a witness following the log in the background).
    let follower = {
        let (url, key, w) = (url.clone(), key.clone(), ws[2].clone());
        let state_dir = dir.path().join("w3");
        tokio::spawn(async move {
            let mut auditor = Auditor::new(audit_config(&url, &key, &state_dir))
                .await
                .unwrap();
            auditor.set_witness(w).unwrap();
            auditor.follow().await
        })
    };
    let w1_follower = {
        let (url, key, w) = (url.clone(), key.clone(), ws[0].clone());
        tokio::spawn(async move {
            let mut auditor = Auditor::new(audit_config(&url, &key, &w1)).await.unwrap();
            auditor.set_witness(w).unwrap();
            auditor.follow().await
        })
    };
    let mut client = LogClient::connect(&url, &key, &state)
        .await
        .unwrap()
        .with_policy(policy(&ws, 2, Duration::from_secs(20)));
    let r = client.append("w/test", b"cosigned".to_vec()).await.unwrap();
    assert!(cosigners(&r.checkpoint, &ws).len() >= 2);
    assert_eq!(
        client.trusted().unwrap().checkpoint(),
        r.checkpoint.checkpoint()
    );
    let proven = client.prove(r.index).await.unwrap();
    assert!(cosigners(&proven.checkpoint, &ws).len() >= 2);
    // Directory answers take the same step: a lookup is accepted once the quorum is there.
    let mut directory = DirectoryClient::new(client, common::directory::vrf_key_of(&server));
    let absent = directory.lookup("nobody@example.org", None).await.unwrap();
    assert!(absent.key().is_none());
    let trusted = directory.log().trusted().unwrap().clone();
    assert!(cosigners(&trusted, &ws).len() >= 2, "{}", trusted.note());
    follower.abort();
    w1_follower.abort();

    // Freshness: a bound shorter than the checkpoint's age is refused.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut strict = LogClient::connect(&url, &key, dir.path().join("strict.json"))
        .await
        .unwrap()
        .with_policy(Policy {
            max_age: Some(Duration::from_millis(1)),
            ..Policy::default()
        });
    let err = strict.refresh().await.unwrap_err();
    assert!(matches!(err, ClientError::Stale { .. }), "{err}");
    assert!(!err.is_violation());
    server.shutdown().await;
}

/// The split view: the operator signs two checkpoints for one epoch and shows each to a
/// different client. Witnesses 1 and 2 follow view A; witness 3 is shown only view B. With a
/// 2-of-3 policy, Bob (view A) accepts A; Carol (view B) never accepts B, which has one
/// cosignature. Witness 1, then asked about view B, refuses with evidence of both checkpoints;
/// and a client without a policy on view B catches the fork through witness 1's gossip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_view_is_refused_under_a_two_of_three_witness_policy() {
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (dir_a, dir_b) = (tmp_a.path(), tmp_b.path());
    let ws = witnesses();
    let server = common::start_with(with_witnesses(dir_a, &ws)).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let mut setup = LogClient::connect(&url, &key, dir_a.join("setup.json"))
        .await
        .unwrap();
    setup
        .append("w/test", b"before the split".to_vec())
        .await
        .unwrap();
    let wdir = |i: usize| dir_a.join(format!("witness{}", i + 1));
    for (i, w) in ws.iter().enumerate() {
        witness_clean(&url, &key, &wdir(i), w).await;
    }
    let (bob_state, carol_state) = (dir_a.join("bob.json"), dir_a.join("carol.json"));
    let wait = Duration::from_millis(500);
    let split = {
        let mut bob = LogClient::connect(&url, &key, &bob_state)
            .await
            .unwrap()
            .with_policy(policy(&ws, 2, wait));
        let mut carol = LogClient::connect(&url, &key, &carol_state)
            .await
            .unwrap()
            .with_policy(policy(&ws, 2, wait));
        let b = bob.refresh().await.unwrap().checkpoint().clone();
        let c = carol.refresh().await.unwrap().checkpoint().clone();
        assert_eq!(b.checkpoint(), c.checkpoint());
        b.checkpoint().epoch
    };
    server.shutdown().await;
    copy_dir(&dir_a.join("db"), &dir_b.join("db"));
    let server_a = common::start_with(with_witnesses(dir_a, &ws)).await;
    let server_b = common::start_with(with_witnesses(dir_b, &ws)).await;
    let (url_a, url_b) = (common::grpc_url(&server_a), common::grpc_url(&server_b));
    LogClient::connect(&url_a, &key, dir_a.join("writer-a.json"))
        .await
        .unwrap()
        .append("w/test", b"view A".to_vec())
        .await
        .unwrap();
    LogClient::connect(&url_b, &key, dir_b.join("writer-b.json"))
        .await
        .unwrap()
        .append("w/test", b"view B".to_vec())
        .await
        .unwrap();
    let api_a = LogApi::connect(&url_a, &key).await.unwrap();
    let api_b = LogApi::connect(&url_b, &key).await.unwrap();
    let (a, b) = (
        api_a.checkpoint(None).await.unwrap(),
        api_b.checkpoint(None).await.unwrap(),
    );
    assert_eq!(a.checkpoint().epoch, split + 1);
    assert_eq!(
        b.checkpoint().epoch,
        split + 1,
        "one epoch, two signed checkpoints"
    );
    assert_ne!(a.checkpoint(), b.checkpoint());

    // The honest witnesses 1 and 2 follow view A; witness 3 is shown view B only.
    witness_clean(&url_a, &key, &wdir(0), &ws[0]).await;
    witness_clean(&url_a, &key, &wdir(1), &ws[1]).await;
    witness_clean(&url_b, &key, &wdir(2), &ws[2]).await;

    // Bob, on view A: accepted with two cosignatures.
    let mut bob = LogClient::connect(&url_a, &key, &bob_state)
        .await
        .unwrap()
        .with_policy(policy(&ws, 2, wait));
    let seen_by_bob = bob.refresh().await.unwrap().checkpoint().clone();
    assert_eq!(seen_by_bob.checkpoint(), a.checkpoint());
    assert_eq!(
        cosigners(&seen_by_bob, &ws),
        ["witness1.test", "witness2.test"]
    );

    // Carol, on view B: one cosignature, refused; her state still names the split epoch.
    let carol_before = std::fs::read(&carol_state).unwrap();
    let mut carol = LogClient::connect(&url_b, &key, &carol_state)
        .await
        .unwrap()
        .with_policy(policy(&ws, 2, wait));
    let err = carol.refresh().await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoQuorum { found: 1, .. }),
        "{err}"
    );
    // A directory answer from view B is refused the same way.
    let mut carol_dir = DirectoryClient::new(
        LogClient::connect(&url_b, &key, &carol_state)
            .await
            .unwrap()
            .with_policy(policy(&ws, 2, wait)),
        common::directory::vrf_key_of(&server_b),
    );
    let err = carol_dir
        .lookup("nobody@example.org", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::NoQuorum {
                found: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&carol_state).unwrap(), carol_before);
    // Bob shown view B refuses it too (and it is a fork for him).
    let mut bob_on_b = LogClient::connect(&url_b, &key, &bob_state)
        .await
        .unwrap()
        .with_policy(policy(&ws, 2, wait));
    assert!(bob_on_b.refresh().await.is_err());

    // Witness 1, asked about view B: a finding with both checkpoints, and no cosignature.
    let outcome = witness_once(&url_b, &key, &wdir(0), &ws[0]).await;
    let Outcome::Violation {
        finding,
        evidence_file,
    } = outcome
    else {
        panic!("witness 1 cosigned view B");
    };
    assert_eq!(finding.kind, "fork");
    assert_eq!(finding.epoch, split + 1);
    let open =
        |n: &str| SignedCheckpoint::open(n.as_bytes(), common::ORIGIN, api_a.verifier()).unwrap();
    let epochs: Vec<_> = finding
        .checkpoints
        .iter()
        .map(|n| open(n).checkpoint().clone())
        .collect();
    assert_eq!(epochs, vec![a.checkpoint().clone(), b.checkpoint().clone()]);
    assert!(evidence_file.exists());
    let b_now = api_b.checkpoint(Some(split + 1)).await.unwrap();
    assert_eq!(cosigners(&b_now, &ws), ["witness3.test"]);

    // Gossip: witness 1 serves its latest cosigned checkpoint (`kt-audit --serve-latest`). Dave
    // has no witness policy and accepted view B; what witness 1 cosigned (view A) conflicts with
    // it: `kt check-witness` exits 3 with the evidence.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gossip_url = format!("http://{}/checkpoint", listener.local_addr().unwrap());
    let endpoint = tokio::spawn(kt_audit::witness::serve_latest(listener, wdir(0)));
    let gossip = reqwest::get(&gossip_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(open(&gossip).checkpoint(), a.checkpoint());
    assert_eq!(cosigners(&open(&gossip), &ws), ["witness1.test"]);
    let mut dave = LogClient::connect(&url_b, &key, dir_b.join("dave.json"))
        .await
        .unwrap();
    dave.refresh().await.unwrap();
    let err = dave
        .check_witness(&ws[0].verifier(), gossip.as_bytes())
        .await
        .unwrap_err();
    match err {
        ClientError::Violation(v) => assert!(matches!(*v, Violation::Fork(_)), "{v}"),
        other => panic!("expected a fork, got {other}"),
    }
    let kt = |url: &str, state: &Path| {
        let out = Command::new(binary("kt"))
            .args([
                "--server",
                url,
                "--log-key",
                &key,
                "--json",
                "check-witness",
            ])
            .arg(ws[0].verifier().to_string())
            .arg(&gossip_url)
            .arg("--state")
            .arg(state)
            .env_remove("KT_STATE")
            .env_remove("KT_WITNESSES")
            .output()
            .unwrap();
        eprintln!(
            "$ kt check-witness -> {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = kt(&url_b, &dir_b.join("dave.json"));
    assert_eq!(out.status.code(), Some(3));
    let evidence: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["kind"], "fork");
    // Bob's view agrees with the same gossip.
    bob.check_witness(&ws[0].verifier(), gossip.as_bytes())
        .await
        .unwrap();
    assert!(kt(&url_a, &bob_state).status.success());
    endpoint.abort();
    server_a.shutdown().await;
    server_b.shutdown().await;
}

/// A witness restarted mid-run, even with its audit state lost, refuses to cosign a checkpoint
/// that conflicts with what it cosigned before the restart: its witness state was written before
/// the cosignature left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_witness_refuses_a_checkpoint_inconsistent_with_what_it_cosigned() {
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (dir_a, dir_b) = (tmp_a.path(), tmp_b.path());
    let ws = witnesses();
    let server = common::start_with(with_witnesses(dir_a, &ws)).await;
    let key = server.verifier_key.clone();
    LogClient::connect(&common::grpc_url(&server), &key, dir_a.join("w.json"))
        .await
        .unwrap()
        .append("w/test", b"shared".to_vec())
        .await
        .unwrap();
    server.shutdown().await;
    copy_dir(&dir_a.join("db"), &dir_b.join("db"));
    let server_a = common::start_with(with_witnesses(dir_a, &ws)).await;
    let server_b = common::start_with(with_witnesses(dir_b, &ws)).await;
    let (url_a, url_b) = (common::grpc_url(&server_a), common::grpc_url(&server_b));
    for (url, dir, n) in [(&url_a, dir_a, 1), (&url_b, dir_b, 3)] {
        let mut c = LogClient::connect(url, &key, dir.join("w.json"))
            .await
            .unwrap();
        for i in 0..n {
            c.append("w/test", format!("after {i}").into_bytes())
                .await
                .unwrap();
        }
    }

    // The witness cosigns view A, then stops.
    let state = dir_a.join("witness");
    let cosigned_epoch = witness_clean(&url_a, &key, &state, &ws[0]).await;
    let api_a = LogApi::connect(&url_a, &key).await.unwrap();
    let cosigned = api_a.checkpoint(Some(cosigned_epoch)).await.unwrap();
    assert_eq!(cosigners(&cosigned, &ws), ["witness1.test"]);

    // Restarted against view B with its audit state gone: the audit of B alone passes every
    // step, but B's checkpoint of the cosigned epoch is another body.
    std::fs::remove_file(state.join("audit-state.json")).unwrap();
    let outcome = witness_once(&url_b, &key, &state, &ws[0]).await;
    let Outcome::Violation { finding, .. } = outcome else {
        panic!("the restarted witness cosigned a conflicting checkpoint");
    };
    assert_eq!(finding.kind, "fork");
    assert_eq!(finding.epoch, cosigned_epoch);
    assert!(
        finding.detail.contains("this witness cosigned"),
        "{}",
        finding.detail
    );
    let api_b = LogApi::connect(&url_b, &key).await.unwrap();
    for epoch in cosigned_epoch..=api_b.checkpoint(None).await.unwrap().checkpoint().epoch {
        let cp = api_b.checkpoint(Some(epoch)).await.unwrap();
        assert!(
            cosigners(&cp, &ws).is_empty(),
            "epoch {epoch} of view B cosigned"
        );
    }
    server_a.shutdown().await;
    server_b.shutdown().await;
}

struct Witnesses(Vec<Child>);

impl Drop for Witnesses {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// End to end: a real ktd, three `kt-audit --follow --witness-key` processes, and clients with a
/// 2-of-3 policy (the library and the `kt` binary) accepting appends and checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kt_audit_witnesses_and_kt_with_a_two_of_three_policy() {
    let dir = tempfile::tempdir().unwrap();
    let ws = witnesses();
    let mut raw = with_witnesses(dir.path(), &ws);
    raw.heartbeat_ms = Some(1_000);
    let server = common::start_with(raw).await;
    let (url, key) = (common::grpc_url(&server), server.verifier_key.clone());
    let mut children = Witnesses(Vec::new());
    for (i, w) in ws.iter().enumerate() {
        let key_file = dir.path().join(format!("w{i}.key"));
        kt_client::write_private_atomically(&key_file, w.to_private_string().as_bytes()).unwrap();
        let child = Command::new(binary("kt-audit"))
            .args(["--server", &url, "--log-key", &key, "--quiet", "--follow"])
            .arg("--state-dir")
            .arg(dir.path().join(format!("w{i}")))
            .arg("--witness-key")
            .arg(&key_file)
            .env_remove("KT_AUDIT_WITNESS_KEY")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    let mut client = LogClient::connect(&url, &key, dir.path().join("client.json"))
        .await
        .unwrap()
        .with_policy(policy(&ws, 2, Duration::from_secs(30)));
    let r = client
        .append("w/e2e", b"cosigned by witnesses".to_vec())
        .await
        .unwrap();
    assert!(cosigners(&r.checkpoint, &ws).len() >= 2);
    assert!(client.refresh().await.is_ok());

    // The `kt` binary with the same policy.
    let log_pub = dir.path().join("db/log.pub");
    let kt = |args: &[&str]| {
        let mut cmd = Command::new(binary("kt"));
        cmd.args(["--server", &url, "--log-key", log_pub.to_str().unwrap()])
            .arg("--state")
            .arg(dir.path().join("kt.json"));
        for w in &ws {
            cmd.args(["--witness", &w.verifier().to_string()]);
        }
        cmd.args([
            "--witness-threshold",
            "2",
            "--max-age",
            "60",
            "--quorum-wait",
            "30",
        ]);
        for var in [
            "KT_STATE",
            "KT_SERVER",
            "KT_LOG_KEY",
            "KT_WITNESSES",
            "KT_KEYS",
        ] {
            cmd.env_remove(var);
        }
        // The log's VRF key, for the directory's commands where labels are VRF outputs.
        cmd.env("KT_VRF_KEY", dir.path().join("db/vrf.pub"));
        let out = cmd.args(args).output().unwrap();
        eprintln!(
            "$ kt {args:?} -> {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    assert!(kt(&["append", "-n", "w/e2e", "from kt"]).status.success());
    assert!(kt(&["verify"]).status.success());
    // A directory answer takes the same trusted-state step, quorum included.
    assert!(kt(&["lookup", "nobody@example.org"]).status.success());
    assert!(kt(&["checkpoint"]).status.success());
    // Every witness is still running: none found anything to refuse.
    for child in &mut children.0 {
        assert!(child.try_wait().unwrap().is_none(), "a witness exited");
    }
    drop(children);
    server.shutdown().await;
}

/// A port where a log could have been: it counts connections and closes each at once (so a kt
/// that does connect fails fast instead of waiting for an answer).
fn counting_port() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (url, count)
}

/// One witness key under two names, at k = 2, would let one cosignature count twice (a copy of
/// the line under the second name verifies: the name is not signed). `kt` refuses such
/// `--witness` flags with a usage error naming both entries, before connecting to anything.
#[test]
fn kt_refuses_a_witness_policy_listing_one_key_twice() {
    let (url, connections) = counting_port();
    let seed = [0x5a; 32];
    let w = Cosigner::from_seed(KeyName::new("witness.example/a").unwrap(), seed).verifier();
    let alias = Cosigner::from_seed(KeyName::new("witness.example/b").unwrap(), seed).verifier();
    let log_key = NoteSigner::from_seed(KeyName::new(common::ORIGIN).unwrap(), [1; 32])
        .verifier()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary("kt"))
        .args(["--server", &url, "--log-key", &log_key])
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .args(["--witness", &w.to_string(), "--witness", &alias.to_string()])
        .args(["--witness-threshold", "2", "checkpoint"])
        .env_remove("KT_WITNESSES")
        .env_remove("KT_WITNESS_THRESHOLD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(1), "a usage error, not a violation");
    assert!(stderr.contains("same public key"), "{stderr}");
    assert!(
        stderr.contains(&w.to_string()) && stderr.contains(&alias.to_string()),
        "names both entries: {stderr}"
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!dir.path().join("state.json").exists());
}
