//! A lying server is caught. A proxy in front of a real `ktd` holds the log's signing key (as a
//! malicious operator would) and rewrites what it serves: a bad signature, a forked root, a
//! broken `prev` link, a rolled-back checkpoint. Tampered storage produces a tile that does not
//! match the root. For each, the test asserts who catches it: the client (`kt-client`, refusing
//! with evidence and keeping its state) and/or the auditor (`kt-audit`, writing an evidence file).

mod common;

use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::{Stream, StreamExt};
use kt_audit::{AuditConfig, Auditor, Outcome};
use kt_client::{ClientError, LogClient, Policy};
use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::cosignature::{Cosigner, WitnessPolicy};
use kt_core::note::{KeyName, NoteSigner};
use kt_core::trust::Violation;
use kt_proto::v1::log_client::LogClient as Upstream;
use kt_proto::v1::log_server::{Log, LogServer};
use kt_proto::v1::*;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lie {
    Honest,
    /// Checkpoints after this epoch carry a corrupted signature.
    BadSignature {
        after: u64,
    },
    /// Checkpoints after this epoch are re-signed with another root.
    ForkedRoot {
        after: u64,
    },
    /// Checkpoints after this epoch are re-signed with a zero `prev` hash.
    BrokenChain {
        after: u64,
    },
    /// The latest checkpoint is replaced by the one of this epoch.
    RollbackTo {
        epoch: u64,
    },
    /// Checkpoints after this epoch are re-signed with a time a year ahead, and cosigned by
    /// [`bribed_witness`] (issue 18, finding 3).
    FutureTime {
        after: u64,
    },
}

/// A witness key the operator controls (or a witness that cosigns anything).
fn bribed_witness() -> Cosigner {
    Cosigner::from_seed(KeyName::new("bribed-witness.test").unwrap(), [7; 32])
}

const YEAR_MS: u64 = 365 * 24 * 3_600_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Clone)]
struct Liar {
    upstream: Upstream<Channel>,
    signer: Arc<NoteSigner>,
    lie: Arc<Mutex<Lie>>,
    /// How many consistency proofs were asked for.
    proofs_asked: Arc<AtomicU64>,
}

impl Liar {
    fn lie(&self) -> Lie {
        *self.lie.lock().unwrap()
    }

    fn rewrite(&self, note: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8(note.clone()).unwrap();
        let body = format!("{}\n", text.split("\n\n").next().unwrap());
        let mut cp = Checkpoint::parse_body(&body).unwrap();
        match self.lie() {
            Lie::BadSignature { after } if cp.epoch > after => {
                let (text, sig_line) = text.rsplit_once("\u{2014} ").unwrap();
                let (name, sig) = sig_line.trim_end().split_once(' ').unwrap();
                let mut raw = B64.decode(sig).unwrap();
                let last = raw.len() - 1;
                raw[last] ^= 1;
                format!("{text}\u{2014} {name} {}\n", B64.encode(raw)).into_bytes()
            }
            Lie::ForkedRoot { after } if cp.epoch > after => {
                cp.root = kt_core::hash::sha256(b"another history");
                self.sign(cp)
            }
            Lie::BrokenChain { after } if cp.epoch > after => {
                cp.prev = [0; 32];
                self.sign(cp)
            }
            Lie::FutureTime { after } if cp.epoch > after => {
                cp.time_ms += YEAR_MS;
                let body = cp.body();
                let signed = String::from_utf8(self.sign(cp)).unwrap();
                let line = bribed_witness()
                    .cosign(&body, now_ms() / 1000)
                    .unwrap()
                    .to_line();
                format!("{signed}{line}\n").into_bytes()
            }
            _ => note,
        }
    }

    fn sign(&self, cp: Checkpoint) -> Vec<u8> {
        SignedCheckpoint::sign(cp, &self.signer)
            .unwrap()
            .note()
            .as_bytes()
            .to_vec()
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Log for Liar {
    async fn append(&self, r: Request<AppendRequest>) -> Result<Response<AppendResponse>, Status> {
        let mut resp = self
            .upstream
            .clone()
            .append(r.into_inner())
            .await?
            .into_inner();
        if let Some(cp) = resp.checkpoint.as_mut() {
            cp.note = self.rewrite(std::mem::take(&mut cp.note));
        }
        Ok(Response::new(resp))
    }

    async fn append_batch(
        &self,
        r: Request<AppendBatchRequest>,
    ) -> Result<Response<AppendBatchResponse>, Status> {
        let mut resp = self
            .upstream
            .clone()
            .append_batch(r.into_inner())
            .await?
            .into_inner();
        if let Some(cp) = resp.checkpoint.as_mut() {
            cp.note = self.rewrite(std::mem::take(&mut cp.note));
        }
        Ok(Response::new(resp))
    }

    async fn get_checkpoint(
        &self,
        r: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let mut req = r.into_inner();
        if let (Lie::RollbackTo { epoch }, None) = (self.lie(), req.epoch) {
            req.epoch = Some(epoch);
        }
        let mut resp = self
            .upstream
            .clone()
            .get_checkpoint(req)
            .await?
            .into_inner();
        if let Some(cp) = resp.checkpoint.as_mut() {
            cp.note = self.rewrite(std::mem::take(&mut cp.note));
        }
        Ok(Response::new(resp))
    }

    async fn get_checkpoint_bodies(
        &self,
        r: Request<GetCheckpointBodiesRequest>,
    ) -> Result<Response<GetCheckpointBodiesResponse>, Status> {
        self.upstream
            .clone()
            .get_checkpoint_bodies(r.into_inner())
            .await
    }

    async fn get_inclusion_proof(
        &self,
        r: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        self.upstream
            .clone()
            .get_inclusion_proof(r.into_inner())
            .await
    }

    async fn get_consistency_proof(
        &self,
        r: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        self.proofs_asked.fetch_add(1, Ordering::SeqCst);
        self.upstream
            .clone()
            .get_consistency_proof(r.into_inner())
            .await
    }

    type GetEntriesStream = Boxed<LogEntry>;
    async fn get_entries(
        &self,
        r: Request<GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let s = self
            .upstream
            .clone()
            .get_entries(r.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(s)))
    }

    type WatchCheckpointsStream = Boxed<kt_proto::v1::Checkpoint>;
    async fn watch_checkpoints(
        &self,
        r: Request<WatchCheckpointsRequest>,
    ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
        let s = self
            .upstream
            .clone()
            .watch_checkpoints(r.into_inner())
            .await?
            .into_inner();
        let liar = self.clone();
        Ok(Response::new(Box::pin(s.map(move |item| {
            item.map(|mut cp| {
                cp.note = liar.rewrite(cp.note);
                cp
            })
        }))))
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    server: ktd::RunningServer,
    liar_url: String,
    lie: Arc<Mutex<Lie>>,
    key: String,
    proofs_asked: Arc<AtomicU64>,
    /// The log's signing key, read from `<data_dir>/log.key` as a malicious operator would.
    signer: NoteSigner,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let server = common::start(&dir).await;
    let signer = ktd::keys::load(&dir.join("db/log.key"), common::ORIGIN).unwrap();
    let upstream = Upstream::connect(common::grpc_url(&server)).await.unwrap();
    let lie = Arc::new(Mutex::new(Lie::Honest));
    let proofs_asked = Arc::new(AtomicU64::new(0));
    let liar = Liar {
        upstream,
        signer: Arc::new(signer.clone()),
        lie: lie.clone(),
        proofs_asked: proofs_asked.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogServer::new(liar))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    Setup {
        key: server.verifier_key.clone(),
        _dir: tmp,
        dir,
        server,
        liar_url,
        lie,
        proofs_asked,
        signer,
    }
}

impl Setup {
    async fn client(&self, name: &str) -> LogClient {
        LogClient::connect(&self.liar_url, &self.key, self.dir.join(name))
            .await
            .unwrap()
    }

    fn set(&self, lie: Lie) {
        *self.lie.lock().unwrap() = lie;
    }

    fn audit_config(&self, tiles: bool) -> AuditConfig {
        AuditConfig {
            server: self.liar_url.clone(),
            log_key: self.key.clone(),
            state_dir: self.dir.join("audit"),
            evidence_dir: self.dir.join("evidence"),
            tiles_url: tiles.then(|| common::http_url(&self.server)),
            progress: false,
        }
    }

    /// Appends `n` records honestly (one epoch each, since heartbeats are off).
    async fn grow(&self, client: &mut LogClient, n: usize) -> u64 {
        let mut epoch = 0;
        for i in 0..n {
            let r = client
                .append("lies", format!("record {i}").into_bytes())
                .await
                .unwrap();
            epoch = r.checkpoint.checkpoint().epoch;
        }
        epoch
    }

    /// Appends straight to the real server, bypassing the proxy.
    async fn grow_upstream(&self) {
        let mut c = LogClient::connect(
            &common::grpc_url(&self.server),
            &self.key,
            self.dir.join("direct.json"),
        )
        .await
        .unwrap();
        c.append("lies", b"direct".to_vec()).await.unwrap();
    }
}

fn violation(e: ClientError) -> Box<Violation> {
    match e {
        ClientError::Violation(v) => v,
        other => panic!("expected a violation with evidence, got {other}"),
    }
}

async fn audit_finding(setup: &Setup, tiles: bool) -> kt_audit::Finding {
    let mut auditor = Auditor::new(setup.audit_config(tiles)).await.unwrap();
    match auditor.run_once().await.unwrap() {
        Outcome::Violation {
            finding,
            evidence_file,
        } => {
            let written: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&evidence_file).unwrap()).unwrap();
            assert_eq!(
                written["kind"], finding.kind,
                "evidence file matches the finding"
            );
            assert!(!written["checkpoints"].as_array().unwrap().is_empty());
            *finding
        }
        Outcome::Clean { epoch, .. } => panic!("the auditor passed a lying log (epoch {epoch})"),
    }
}

async fn audit_clean(setup: &Setup) {
    let mut auditor = Auditor::new(setup.audit_config(true)).await.unwrap();
    match auditor.run_once().await.unwrap() {
        Outcome::Clean { .. } => {}
        Outcome::Violation { finding, .. } => panic!("honest log flagged: {finding:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_root_is_caught_by_client_and_auditor() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 5).await;
    audit_clean(&s).await;
    let trusted = client.trusted().unwrap().clone();

    s.set(Lie::ForkedRoot { after: epoch });
    let err = client
        .append("lies", b"after the fork".to_vec())
        .await
        .unwrap_err();
    let v = violation(err);
    assert!(matches!(*v, Violation::Fork { .. }), "got {v}");
    assert_eq!(v.evidence().trusted_note, trusted.note());
    assert_eq!(
        client.trusted().unwrap().note(),
        trusted.note(),
        "state unchanged"
    );

    let finding = audit_finding(&s, false).await;
    assert_eq!(finding.kind, "root-mismatch");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_caught_by_client_and_auditor() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 4).await;
    audit_clean(&s).await;

    s.set(Lie::RollbackTo { epoch: epoch - 2 });
    let v = violation(client.refresh().await.unwrap_err());
    assert!(matches!(*v, Violation::Rollback { .. }), "got {v}");
    assert_eq!(
        client.trusted().unwrap().checkpoint().epoch,
        epoch,
        "state unchanged"
    );

    let finding = audit_finding(&s, false).await;
    assert_eq!(finding.kind, "rollback");
    assert_eq!(finding.checkpoints.len(), 2);
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chain_is_caught_by_client_and_auditor() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 3).await;
    audit_clean(&s).await;

    s.set(Lie::BrokenChain { after: epoch });
    let v = violation(client.append("lies", b"x".to_vec()).await.unwrap_err());
    assert!(matches!(*v, Violation::BrokenChain { .. }), "got {v}");

    let finding = audit_finding(&s, false).await;
    assert_eq!(finding.kind, "broken-chain");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_refused_by_client_and_auditor() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 2).await;
    s.set(Lie::BadSignature { after: epoch });
    s.grow_upstream().await;
    let err = client.refresh().await.unwrap_err();
    assert!(matches!(err, ClientError::Checkpoint(_)), "got {err}");
    assert_eq!(
        client.trusted().unwrap().checkpoint().epoch,
        epoch,
        "state unchanged"
    );

    // A bad signature is not the log's signature, so it proves nothing against the log; the
    // auditor refuses to go on and says why.
    let err = Auditor::new(s.audit_config(false))
        .await
        .unwrap_err_or_run()
        .await
        .to_string();
    assert!(
        err.contains("signature"),
        "auditor error names the signature: {err}"
    );
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_tile_is_caught_by_the_auditor() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    s.grow(&mut client, 300).await;
    // Flip a byte of the last hash of the first full level-0 tile in the live database. (The
    // last one, so that the consistency proofs of the earlier, smaller checkpoints, which the
    // auditor also checks, do not touch it and the tile comparison is what catches it.)
    let storage = s.server.storage();
    let mut tile = storage.tile(0, 0).unwrap().unwrap();
    tile[255 * 32 + 5] ^= 0x40;
    storage
        .raw_put("tiles", &[0, 0, 0, 0, 0, 0, 0, 0, 0], &tile)
        .unwrap();

    let finding = audit_finding(&s, true).await;
    assert_eq!(finding.kind, "tile-mismatch");
    assert!(finding
        .tile
        .as_ref()
        .unwrap()
        .path
        .starts_with("tile/0/000"));
    s.server.shutdown().await;
}

/// Runs an audit that is expected to fail with an error (not a finding).
trait UnwrapErrOrRun {
    async fn unwrap_err_or_run(self) -> anyhow::Error;
}

impl UnwrapErrOrRun for anyhow::Result<Auditor> {
    async fn unwrap_err_or_run(self) -> anyhow::Error {
        match self {
            Err(e) => e,
            Ok(mut auditor) => match auditor.run_once().await {
                Err(e) => e,
                Ok(outcome) => panic!("expected the audit to fail, got {outcome:?}"),
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_auditor_catches_a_broken_chain_as_it_is_published() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 2).await;
    let mut auditor = Auditor::new(s.audit_config(false)).await.unwrap();
    let follow = tokio::spawn(async move { auditor.follow().await });
    // Honest growth is followed without complaint...
    s.grow_upstream().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !follow.is_finished(),
        "the auditor keeps following an honest log"
    );
    // ...until the log publishes a checkpoint that does not name its predecessor.
    s.set(Lie::BrokenChain { after: epoch + 1 });
    s.grow_upstream().await;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(20), follow)
        .await
        .expect("the auditor reports promptly")
        .unwrap()
        .unwrap();
    match outcome {
        Outcome::Violation { finding, .. } => {
            assert_eq!(finding.kind, "broken-chain");
            assert_eq!(finding.epoch, epoch + 2);
        }
        Outcome::Clean { .. } => panic!("follow returned clean"),
    }
    s.server.shutdown().await;
}

// --- issue 18: future-dated checkpoints, gossip forks from notes alone, bounded HTTP reads ----

/// Runs a built workspace binary (`kt`, `kt-audit`) with no KT_* environment.
fn run(name: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(common::binary(name));
    cmd.args(args);
    for (var, _) in std::env::vars() {
        if var.starts_with("KT_") {
            cmd.env_remove(var);
        }
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "$ {name} {args:?} -> {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Finding 3: the operator signs a checkpoint dated a year ahead and has a witness cosign it.
/// Every client would take it (or any older checkpoint with that time) as fresh under --max-age
/// for a year. Refused by the client (even with the witness policy met), by `kt` (exit 3), by
/// a real `kt-audit` witness (no cosignature, exit 2), and reported by the auditor with the note
/// and its clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_dated_checkpoint_is_refused_by_client_witness_and_auditor() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 2).await;
    s.set(Lie::FutureTime { after: epoch });
    s.grow_upstream().await;
    let future_epoch = epoch + 1;
    let w = bribed_witness();
    let policy = Policy {
        witnesses: Some(WitnessPolicy::new(vec![w.verifier()], 1).unwrap()),
        max_age: Some(Duration::from_secs(600)),
        ..Policy::default()
    };

    // The client: refused before the freshness and witness checks could pass it.
    let before = std::fs::read(s.dir.join("client.json")).unwrap();
    let mut client = s.client("client.json").await.with_policy(policy.clone());
    let err = client.refresh().await.unwrap_err();
    assert!(err.is_violation(), "{err}");
    let ClientError::FromTheFuture { future, note } = err else {
        panic!("expected a checkpoint from the future, got {err}");
    };
    assert_eq!(future.epoch, future_epoch);
    assert!(future.ahead_ms > YEAR_MS - 60_000, "{future}");
    assert_eq!(
        future.max_ms,
        kt_client::DEFAULT_MAX_AHEAD.as_millis() as u64
    );
    assert!(note.contains("bribed-witness.test"), "{note}");
    assert_eq!(std::fs::read(s.dir.join("client.json")).unwrap(), before);
    // The same note offered as gossip: refused too.
    let err = client
        .check_witness(&w.verifier(), note.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::FromTheFuture { .. }), "{err}");
    // The bound is configurable: a client that allows two years takes it.
    let mut lenient = s.client("lenient.json").await.with_policy(Policy {
        max_ahead: Duration::from_millis(2 * YEAR_MS),
        ..policy.clone()
    });
    assert_eq!(
        lenient
            .refresh()
            .await
            .unwrap()
            .checkpoint()
            .checkpoint()
            .epoch,
        future_epoch
    );

    // `kt`: exit 3, with the signed note and the local clock.
    let state = s.dir.join("kt.json");
    let out = run(
        "kt",
        &[
            "--server",
            &s.liar_url,
            "--log-key",
            &s.key,
            "--state",
            path(&state),
            "--witness",
            &w.verifier().to_string(),
            "--max-age",
            "600",
            "checkpoint",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let evidence: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["kind"], "future-checkpoint");
    // The proxy cosigns afresh on every answer: the body is the same, the timestamp may not be.
    let body = |note: &str| note.split("\n\n").next().unwrap().to_owned();
    assert_eq!(
        body(evidence["checkpoint_note"].as_str().unwrap()),
        body(&note)
    );
    let local = evidence["local_time_ms"].as_u64().unwrap();
    assert!(future.now_ms <= local && local <= now_ms());
    assert!(!state.exists(), "nothing trusted");

    // A real `kt-audit` witness: cosigns the honest epochs, refuses the future one (exit 2).
    let key_file = s.dir.join("w.key");
    let honest_w = Cosigner::from_seed(KeyName::new("honest-witness.test").unwrap(), [8; 32]);
    kt_client::write_private_atomically(&key_file, honest_w.to_private_string().as_bytes())
        .unwrap();
    let wdir = s.dir.join("witness");
    let out = run(
        "kt-audit",
        &[
            "--server",
            &s.liar_url,
            "--log-key",
            &s.key,
            "--quiet",
            "--once",
            "--state-dir",
            path(&wdir),
            "--witness-key",
            path(&key_file),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "VIOLATION (future-checkpoint) at epoch {future_epoch}"
        )) && stderr.contains("not cosigned"),
        "{stderr}"
    );
    let cosigned = kt_audit::witness::read_latest(&wdir).unwrap().unwrap();
    let cosigned =
        Checkpoint::parse_body(&format!("{}\n", cosigned.split("\n\n").next().unwrap())).unwrap();
    assert_eq!(
        cosigned.epoch, epoch,
        "the witness cosigned up to the honest epoch only"
    );

    // The auditor: a finding with the signed note and its clock.
    let finding = audit_finding(&s, false).await;
    assert_eq!(finding.kind, "future-checkpoint");
    assert_eq!(finding.epoch, future_epoch);
    assert_eq!(finding.checkpoints.len(), 1);
    assert_eq!(body(&finding.checkpoints[0]), body(&note));
    let clock = finding.clock.as_ref().unwrap();
    assert!(clock.checkpoint_time_ms > clock.auditor_time_ms + YEAR_MS - 60_000);
    assert_eq!(clock.max_ahead_ms, 300_000);
    // An auditor that allows two years passes the same log: only "ahead now" is a finding.
    let mut config = s.audit_config(false);
    config.state_dir = s.dir.join("lenient-audit");
    let mut auditor = Auditor::new(config).await.unwrap();
    auditor.set_max_ahead(Duration::from_millis(2 * YEAR_MS));
    assert!(matches!(
        auditor.run_once().await.unwrap(),
        Outcome::Clean { .. }
    ));
    s.server.shutdown().await;
}

/// Signs `cp` with the log's key and adds `w`'s cosignature: what a witness serves as gossip.
fn witness_note(s: &Setup, cp: Checkpoint, w: &Cosigner) -> String {
    let body = cp.body();
    let signed = SignedCheckpoint::sign(cp, &s.signer).unwrap();
    let line = w.cosign(&body, now_ms() / 1000).unwrap().to_line();
    format!("{}{line}\n", signed.note())
}

/// Finding 4: a witness's checkpoint that, with the client's own, proves a rollback or a fork
/// from the two signed notes alone. The client refuses with both notes as evidence and `kt
/// check-witness` exits 3, without asking the server for anything (the proxy counts the
/// consistency proofs asked; a lying server would simply refuse them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_witness_proves_a_fork_from_the_two_notes_alone() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    let epoch = s.grow(&mut client, 4).await;
    let ours = client.trusted().unwrap().clone();
    let w = bribed_witness();
    let api = kt_client::LogApi::connect(&s.liar_url, &s.key)
        .await
        .unwrap();
    let older = api.checkpoint(Some(epoch - 1)).await.unwrap();
    let asked = || s.proofs_asked.load(Ordering::SeqCst);
    let start = asked();

    // The witness cosigned the older epoch with a larger tree than ours: a rollback.
    let mut big = older.checkpoint().clone();
    big.size = ours.checkpoint().size + 3;
    big.root = kt_core::hash::sha256(b"the witness's view");
    let note = witness_note(&s, big, &w);
    let v = violation(
        client
            .check_witness(&w.verifier(), note.as_bytes())
            .await
            .unwrap_err(),
    );
    assert!(matches!(*v, Violation::Rollback(_)), "{v}");
    assert_eq!(v.evidence().trusted_note, note);
    assert_eq!(v.evidence().new_note, ours.note());
    assert_eq!(asked(), start, "the server was asked for a proof");

    // `kt check-witness` on the same note: exit 3 with the evidence, server not asked.
    let file = s.dir.join("gossip.note");
    std::fs::write(&file, &note).unwrap();
    let kt = |file: &Path| {
        run(
            "kt",
            &[
                "--server",
                &s.liar_url,
                "--log-key",
                &s.key,
                "--state",
                path(&s.dir.join("client.json")),
                "check-witness",
                &w.verifier().to_string(),
                path(file),
            ],
        )
    };
    let out = kt(&file);
    assert_eq!(out.status.code(), Some(3));
    let evidence: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["kind"], "rollback");
    assert_eq!(evidence["trusted_note"], note);
    assert_eq!(asked(), start);

    // The reverse (a newer epoch with a smaller tree), and one epoch with another body.
    let mut small = ours.checkpoint().clone();
    small.epoch += 1;
    small.prev = ours.checkpoint().body_hash();
    small.size -= 1;
    let mut other = ours.checkpoint().clone();
    other.map_root = [9; 32];
    for (cp, kind) in [(small, "rollback"), (other, "fork")] {
        let note = witness_note(&s, cp, &w);
        let v = violation(
            client
                .check_witness(&w.verifier(), note.as_bytes())
                .await
                .unwrap_err(),
        );
        assert_eq!(v.evidence().kind, kind, "{v}");
        std::fs::write(&file, &note).unwrap();
        assert_eq!(kt(&file).status.code(), Some(3));
    }
    assert_eq!(asked(), start);

    // An honest, newer checkpoint the witness cosigned: a proof is needed, asked, and verified.
    s.grow_upstream().await;
    let newer = api.checkpoint(None).await.unwrap();
    let note = witness_note(&s, newer.checkpoint().clone(), &w);
    client
        .check_witness(&w.verifier(), note.as_bytes())
        .await
        .unwrap();
    assert_eq!(asked(), start + 1);
    s.server.shutdown().await;
}

/// A hostile HTTP server on 127.0.0.1: an endless body without Content-Length (`/endless`),
/// a huge Content-Length (`/declared`), or nothing at all (`/silent`). Returns its base URL
/// and the body bytes it managed to send.
async fn hostile_http() -> (String, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = sock.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).to_string();
                let head: &[u8] = if request.contains("/silent") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                } else if request.contains("/declared") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                };
                if sock.write_all(head).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 16 * 1024];
                // `/declared` sends raw bytes under its Content-Length; the rest chunks.
                let raw = request.contains("/declared");
                let chunk = [
                    format!("{:x}\r\n", block.len()).into_bytes(),
                    block.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat();
                loop {
                    let out = if raw { &block } else { &chunk };
                    if sock.write_all(out).await.is_err() {
                        return;
                    }
                    counter.fetch_add(block.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (url, sent)
}

/// Finding 5: `kt check-witness <url>` and `kt-audit --tiles-url` against a hostile HTTP server.
/// An endless body is refused at the limit (the server cannot push much more than the limit
/// plus the sockets' buffers), a huge Content-Length before any body, and a server that never
/// answers after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_of_kt_and_kt_audit_are_bounded() {
    let s = setup().await;
    let mut client = s.client("client.json").await;
    s.grow(&mut client, 2).await;
    let (base, sent) = hostile_http().await;
    let w = bribed_witness().verifier().to_string();
    let started = std::time::Instant::now();
    for (what, expect) in [
        ("endless", "passed the limit of 65536 bytes"),
        ("declared", "declares 1073741824 bytes"),
        ("silent", "no complete answer within 1000 ms"),
    ] {
        let url = format!("{base}/{what}/checkpoint");
        let out = run(
            "kt",
            &[
                "--server",
                &s.liar_url,
                "--log-key",
                &s.key,
                "--state",
                path(&s.dir.join("client.json")),
                "--http-timeout",
                "1",
                "check-witness",
                &w,
                &url,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{what}: {stderr}");
    }
    assert!(sent.load(Ordering::Relaxed) < 16 * 1024 * 1024);

    // The auditor's tiles: the first full tile read is refused the same way.
    s.grow(&mut client, 256).await;
    for (what, expect) in [
        ("endless", "passed the limit of 8192 bytes"),
        ("silent", "no complete answer within 1000 ms"),
    ] {
        let mut config = s.audit_config(false);
        config.tiles_url = Some(format!("{base}/{what}"));
        config.state_dir = s.dir.join(format!("audit-{what}"));
        let mut auditor = Auditor::new(config).await.unwrap();
        auditor.set_http_timeout(Duration::from_secs(1));
        let err = auditor.run_once().await.unwrap_err();
        assert!(format!("{err:#}").contains(expect), "{what}: {err:#}");
    }
    assert!(sent.load(Ordering::Relaxed) < 32 * 1024 * 1024);
    // Generous: only "it did not hang".
    assert!(started.elapsed() < Duration::from_secs(120));
    s.server.shutdown().await;
}

/// `GetCheckpointBodies`, the chain a client checks across a gap of epochs: bounded pages, the
/// right status for a bad range, bodies that link. With heartbeats every millisecond the log
/// signs empty epochs as fast as it can commit them; once it has 1,000, the test fetches the
/// chain over real gRPC with `kt-client` and prints its size and time (a debug build:
/// docs/performance.md, "Epoch gaps").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_bodies_are_served_in_bounded_pages_and_link() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = common::raw_config(tmp.path());
    raw.epoch_interval_ms = Some(1);
    raw.heartbeat_ms = Some(1);
    let server = common::start_with(raw).await;
    let api = kt_client::LogApi::connect(&common::grpc_url(&server), &server.verifier_key)
        .await
        .unwrap();
    const N: u64 = 1_000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let latest = loop {
        let latest = api.checkpoint(None).await.unwrap();
        if latest.checkpoint().epoch > N + 1 {
            break latest;
        }
        assert!(std::time::Instant::now() < deadline, "the log is too slow");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let latest_epoch = latest.checkpoint().epoch;

    // Bad ranges.
    let mut rpc = Upstream::connect(common::grpc_url(&server)).await.unwrap();
    let ask = |from_epoch, to_epoch| GetCheckpointBodiesRequest {
        from_epoch,
        to_epoch,
    };
    let status = rpc.get_checkpoint_bodies(ask(5, 4)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status
        .message()
        .contains("from_epoch 5 is after to_epoch 4"));
    let beyond = latest_epoch + 1_000_000;
    let status = rpc.get_checkpoint_bodies(ask(0, beyond)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("beyond the latest epoch"));
    // A long range is answered with its first 1,000 bodies; a short one whole.
    let page = rpc.get_checkpoint_bodies(ask(0, N + 1)).await.unwrap();
    assert_eq!(page.into_inner().bodies.len(), 1_000);
    let page = rpc.get_checkpoint_bodies(ask(7, 9)).await.unwrap();
    assert_eq!(page.into_inner().bodies.len(), 3);

    // The chain from epoch 1 to epoch N + 1 (two pages) links, and its size and time.
    let first = api.checkpoint(Some(1)).await.unwrap();
    let last = api.checkpoint(Some(N + 1)).await.unwrap();
    for n in [10, N] {
        let top = if n == N {
            last.clone()
        } else {
            api.checkpoint(Some(n + 1)).await.unwrap()
        };
        let started = std::time::Instant::now();
        let chain = api.checkpoint_bodies(1, n).await.unwrap();
        let fetched = started.elapsed();
        kt_core::trust::verify_chain(&first, &top, &chain).unwrap();
        let verified = started.elapsed() - fetched;
        let body_bytes: usize = chain.iter().map(String::len).sum();
        // Each body a length-delimited field: one tag byte, a varint length (two bytes here).
        let wire: usize = chain.iter().map(|b| 1 + 2 + b.len()).sum();
        eprintln!(
            "chain of {n} bodies over gRPC (debug build): {body_bytes} bytes of bodies \
             ({} per body), {wire} bytes of protobuf, fetched in {fetched:?}, verified in \
             {verified:?}",
            body_bytes / chain.len()
        );
    }
    server.shutdown().await;
}
