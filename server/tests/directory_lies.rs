//! A lying key directory is caught, and each test says by whom: the looking-up client
//! (`kt_client::DirectoryClient`), the key owner's monitor (the `kt monitor` binary, which runs
//! `DirectoryClient::history`, then `foreign_versions` against the device's made-set and
//! `missing_confirmed` against the updates it saw confirmed by a verified receipt), or the
//! auditor (`kt_audit::Auditor`, which replays the directory's rules and recomputes every map
//! root) — and, where one of them cannot see the lie, that it cannot.
//!
//! | lie | looking-up client | owner's monitor | kt-audit |
//! |---|---|---|---|
//! | a key swapped in a lookup answer | `AnswerError::Inclusion` / `ValueMismatch` | – | log is honest: clean |
//! | another user's answer, or its VRF proof, for the identifier asked about | `AnswerError::VrfProof` | – | log is honest: clean |
//! | (a) a rotate the owner did not sign, in the log | `lookup` is fooled; `history` refuses (`Rule{BadSignature(previous-key)}`) | refuses the history (exit 3) | `directory-rule` / `bad-signature` |
//! | (a') a provider-authorized `recover` the owner did not ask for | fooled: identical to a real recovery | ALERT: RECOVER (exit 3) | clean: the rules allow it |
//! | (b) a version hidden from history | `HistoryLength` / `HistoryGap` | refuses the history (exit 3) | log is honest: clean |
//! | (c) a stale map: an old epoch's answer as the latest | `Violation::Rollback` | – | log is honest |
//! | (c) a stale map: the latest checkpoint with an old proof | `AnswerError::MapProof(RootMismatch)` | – | log is honest |
//! | (c') a stale map signed into the checkpoints, after the owner's rotation was receipted | fooled | with the receipt's checkpoint trusted: `fork` against the chain (exit 3); without: ALERT: ROLLED BACK, `rolled-back` (exit 3) | `map-root-mismatch` |
//! | a second signed body for a past epoch, answering a lookup at that epoch | `Violation::Fork` against the chain of `prev` links, with both notes and the chain | – | – |
//! | a forward jump over a broken `prev` link | `ClientError::BadChain` (exit 3); a chain forged down to a second body of the trusted epoch: `Violation::Fork` | – | – |
//! | (d) a lookup at epoch E answered with epoch E' | `ClientError::Unexpected`; or E's checkpoint with E''s proof: `MapProof(RootMismatch)` | – | log is honest |
//! | (e) two users shown different keys (two views of one log) | `Violation::Fork` (equivocation) once a client meets the other view | `Violation::Fork` likewise | each view alone: clean; carried-over state: `fork` |
//! | (f) a key update dated far from its epoch (`time_ms = 0`), in the log | fooled: `history` shows 1970 | – | `directory-rule` / `update-time` |
//! | (g) a message with the author's label and next sequence, signed by Mallory or by nobody (64 zero bytes), in the log | the reader: `AnswerError::ForgedMessage` with the entry, index and key (`kt message read` exit 3) | – | `directory-rule` / `bad-message-signature` |
//! | (h) the author's newest messages left out of a read | `AnswerError::IncompleteRead` against the map's count; with an old map proof, `MapProof(RootMismatch)` | – | log is honest: clean |
//!
//! Mechanics, the simplest that stay realistic:
//!
//! - **A proxy** ([`Liar`]) in front of a real `ktd` serves the `Log` and `Directory` services on
//!   one address (as `ktd` does) and rewrites directory answers. It lies only with what a server
//!   has: real answers of other epochs, other labels' bytes, entries it drops. The log itself
//!   stays honest, so these lies are the answer-verifier's to catch, and kt-audit, which never
//!   reads answers, cannot see them.
//! - **A malicious operator** holds the log's signing key (`<data_dir>/log.key`). Lies that need
//!   the log itself to break the directory's rules are written on a stopped server's storage by
//!   the test-only hook `Sequencer::commit_forged_for_tests` (a rotate with the rules skipped; an
//!   epoch whose map root ignores its entries), then the real `ktd` restarts on that storage: its
//!   full start-up check passes (everything is signed, chained and consistent, and the stored map
//!   gives the signed map root), so what it serves is exactly what such an operator would serve.
//! - **Two views** (e), and (c'): the data directory of a stopped server is copied, and each copy,
//!   signed by the same key, grows differently. Clients that meet both views hold the proof;
//!   clients that never meet are only protected once witnesses cosign checkpoints (a later
//!   issue): a client that requires the cosignatures of witnesses who refuse to sign two
//!   checkpoints for one epoch cannot be shown a second view at all. In (c') the owner's device
//!   meets one view only for its rotation's receipt; the other view is two empty epochs longer.
//!   The device, which trusts the receipt's checkpoint, checks the chain of `prev` links across
//!   the gap and finds the other view's body for that epoch; a device without that state is
//!   caught by what it keeps from the receipt in its key file.

mod common;

use common::{binary, copy_dir};

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use futures::Stream;
use kt_audit::{AuditConfig, Auditor, Finding, Outcome};
use kt_client::keys::{Confirmed, KeyFile};
use kt_client::{ClientError, DirectoryClient};
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::directory::{AnswerError, KeyUpdate, Op, Role, RuleError, UserSigner};
use kt_core::map::MapProofError;
use kt_core::note::NoteVerifier;
use kt_core::trust::Violation;
use kt_proto::v1::directory_client::DirectoryClient as DirectoryUpstream;
use kt_proto::v1::directory_server::{Directory, DirectoryServer};
use kt_proto::v1::log_client::LogClient as LogUpstream;
use kt_proto::v1::log_server::{Log, LogServer};
use kt_proto::v1::messages_client::MessagesClient as MessagesUpstream;
use kt_proto::v1::messages_server::{Messages, MessagesServer};
use kt_proto::v1::{
    AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse,
    GetCheckpointBodiesRequest, GetCheckpointBodiesResponse, GetCheckpointRequest,
    GetCheckpointResponse, GetConsistencyProofRequest, GetConsistencyProofResponse,
    GetEntriesRequest, GetInclusionProofRequest, GetInclusionProofResponse, HistoryRequest,
    HistoryResponse, LogEntry, LookupRequest, LookupResponse, ReadMessagesRequest,
    ReadMessagesResponse, SendMessageRequest, SendMessageResponse, UpdateRequest, UpdateResponse,
    WatchCheckpointsRequest,
};
use ktd::sequencer::{Forgery, Sequencer};
use ktd::startup::StartupCheck;
use ktd::storage::Storage;
use serde_json::Value;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const ALICE: &str = "alice@example.com";
const CAROL: &str = "carol@example.com";
const TOKEN: &str = common::PROVIDER_TOKEN;

/// The attacker's key: whatever the lie installs for Alice.
fn mallory() -> UserSigner {
    UserSigner::ed25519_from_seed([0x66; 32])
}

// ---------------------------------------------------------------------------------------------
// The owner's device: the real `kt` binary with its own trusted state and key file.
// ---------------------------------------------------------------------------------------------

/// A device running `kt`: its trusted-state file and its key file (private keys and made-set).
struct Device {
    log_key: PathBuf,
    vrf_key: PathBuf,
    state: PathBuf,
    keys: PathBuf,
}

impl Device {
    /// `dir` is the test's directory; the log's verifier key is `dir/db/log.pub`.
    fn new(dir: &Path, name: &str) -> Device {
        Device {
            log_key: dir.join("db/log.pub"),
            vrf_key: dir.join("db/vrf.pub"),
            state: dir.join(format!("{name}-state.json")),
            keys: dir.join(name).join("keys.json"),
        }
    }

    fn kt(&self, url: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(binary("kt"));
        cmd.args([
            "--server",
            url,
            "--log-key",
            self.log_key.to_str().unwrap(),
            "--vrf-key",
            self.vrf_key.to_str().unwrap(),
            "--state",
            self.state.to_str().unwrap(),
            "--keys",
            self.keys.to_str().unwrap(),
            "--json",
        ])
        .args(args);
        for var in [
            "KT_PROVIDER_TOKEN",
            "KT_KEYS",
            "KT_STATE",
            "KT_SERVER",
            "KT_LOG_KEY",
            "KT_VRF_KEY",
        ] {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        eprintln!(
            "$ kt {} -> {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a command that must succeed; its JSON output.
    fn ok(&self, url: &str, args: &[&str]) -> Value {
        let out = self.kt(url, args);
        assert!(out.status.success(), "kt {args:?} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `kt key new` then `kt key register` (with the provider's token); the receipt.
    fn register(&self, url: &str, identifier: &str) -> Value {
        self.ok(url, &["key", "new", identifier]);
        self.ok(
            url,
            &["key", "register", identifier, "--provider-token", TOKEN],
        )
    }

    /// `kt monitor <identifier> --once`: the exit code, the JSON on stdout (the monitor's status,
    /// or the evidence of a refused answer), and stderr.
    fn monitor(&self, url: &str, identifier: &str) -> (Option<i32>, Value, String) {
        let out = self.kt(url, &["monitor", identifier, "--once"]);
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), json, stderr)
    }
}

fn epoch_of(receipt: &Value) -> u64 {
    receipt["checkpoint"]["epoch"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The looking-up client and the auditor.
// ---------------------------------------------------------------------------------------------

/// A client with its trusted state in `state`, a file next to the `db/` of the server it talks
/// to (or of the copy that server runs on): the log's VRF key is that `db/vrf.pub`.
async fn client(url: &str, key: &str, state: PathBuf) -> DirectoryClient {
    let vrf_pub = state.parent().unwrap().join("db/vrf.pub");
    let vrf_key = kt_client::directory::read_vrf_key(vrf_pub.to_str().unwrap()).unwrap();
    DirectoryClient::connect(url, key, vrf_key, state)
        .await
        .unwrap()
}

fn answer_error(e: ClientError) -> AnswerError {
    match e {
        ClientError::Answer(bad) => bad.source,
        other => panic!("expected an answer that does not verify, got {other}"),
    }
}

fn violation(e: ClientError) -> Violation {
    match e {
        ClientError::Violation(v) => *v,
        other => panic!("expected a violation with evidence, got {other}"),
    }
}

fn trusted_note(c: &DirectoryClient) -> String {
    c.log().trusted().unwrap().note().to_owned()
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

async fn audit(server: &str, key: &str, state_dir: &Path) -> Outcome {
    Auditor::new(audit_config(server, key, state_dir))
        .await
        .unwrap()
        .run_once()
        .await
        .unwrap()
}

async fn audit_clean(server: &str, key: &str, state_dir: &Path) {
    match audit(server, key, state_dir).await {
        Outcome::Clean { .. } => {}
        Outcome::Violation { finding, .. } => panic!("kt-audit flagged: {finding:?}"),
    }
}

/// The auditor's finding, checked against the evidence file it wrote.
async fn audit_finding(server: &str, key: &str, state_dir: &Path) -> Finding {
    match audit(server, key, state_dir).await {
        Outcome::Violation {
            finding,
            evidence_file,
        } => {
            let written: Value =
                serde_json::from_slice(&std::fs::read(&evidence_file).unwrap()).unwrap();
            assert_eq!(written["kind"], finding.kind, "evidence file matches");
            *finding
        }
        Outcome::Clean { epoch, .. } => panic!("kt-audit passed a lying log (epoch {epoch})"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The malicious operator: the log's signing key and the storage of a stopped server.
// ---------------------------------------------------------------------------------------------

/// Appends `entries` as one epoch to the stopped server's log in `data_dir`, signed with its key,
/// with the directory broken as `forgery` says. Returns the entries' log indexes.
fn forge(data_dir: &Path, entries: Vec<Vec<u8>>, forgery: Forgery) -> Vec<u64> {
    let storage = Arc::new(Storage::open(data_dir).unwrap());
    let signer = ktd::keys::load(&data_dir.join("log.key"), common::ORIGIN).unwrap();
    let recovered = ktd::startup::recover(
        &storage,
        common::ORIGIN,
        &signer.verifier(),
        StartupCheck::Full,
    )
    .unwrap();
    let (mut sequencer, _) =
        Sequencer::new(storage, signer, recovered.frontier, recovered.latest).unwrap();
    sequencer
        .commit_forged_for_tests(entries, forgery)
        .unwrap()
        .into_iter()
        .map(|outcome| outcome.unwrap().index)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The lying proxy.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Lie {
    Honest,
    /// Lookups carry these entry bytes in place of the label's latest update (same index, same
    /// inclusion proof, same map proof).
    SwapEntry(Vec<u8>),
    /// Histories leave this version out.
    HideVersion(u64),
    /// Histories leave this version out and repeat the next one in its place, so that the count
    /// matches the map's version.
    HideVersionKeepCount(u64),
    /// Every lookup is answered, checkpoint and all, as a lookup at this epoch.
    AnswerFrom(u64),
    /// Every lookup is answered with the checkpoint asked for, but the map proof and entry of this
    /// epoch.
    ProofFrom(u64),
    /// Lookups and histories are answered as for this identifier: genuine answers, VRF proof
    /// and all, about another user.
    AnswerFor(String),
    /// Lookups and register receipts carry the VRF proof of this identifier in place of the one
    /// asked about.
    VrfProofOf(String),
    /// Lookups at epoch `at` are answered as lookups at epoch `from` (map proof and entry), under
    /// `note`: a second checkpoint the operator signed for epoch `at`.
    ForgedPast {
        at: u64,
        from: u64,
        note: Vec<u8>,
    },
    /// The log's checkpoints as the operator re-signed them from some epoch on: `GetCheckpoint`
    /// and `GetCheckpointBodies` serve these notes (and their bodies) in place of the stored ones
    /// of their epochs, and the last of them as the latest.
    ForgedChain(std::collections::BTreeMap<u64, Vec<u8>>),
    /// Message reads leave out every message with a sequence above this one.
    HideMessagesAbove(u64),
    /// Message reads leave out every message with a sequence above this one, and carry the
    /// author's map proof of this epoch (whose count stops there) in place of the current one.
    HideMessagesWithProofFrom(u64, u64),
}

/// The body (signed text) of a checkpoint note.
fn note_body(note: &[u8]) -> Vec<u8> {
    kt_core::note::Note::parse(note)
        .unwrap()
        .text()
        .as_bytes()
        .to_vec()
}

#[derive(Clone)]
struct Liar {
    log: LogUpstream<Channel>,
    directory: DirectoryUpstream<Channel>,
    messages: MessagesUpstream<Channel>,
    lie: Arc<Mutex<Lie>>,
}

impl Liar {
    fn lie(&self) -> Lie {
        self.lie.lock().unwrap().clone()
    }
}

/// Starts a proxy for `upstream` on 127.0.0.1; its URL and the switch of its lies.
async fn spawn_liar(upstream: &str) -> (String, Arc<Mutex<Lie>>) {
    let channel = Channel::from_shared(upstream.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let lie = Arc::new(Mutex::new(Lie::Honest));
    let liar = Liar {
        log: LogUpstream::new(channel.clone()),
        directory: DirectoryUpstream::new(channel.clone()),
        messages: MessagesUpstream::new(channel),
        lie: lie.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogServer::new(liar.clone()))
            .add_service(DirectoryServer::new(liar.clone()))
            .add_service(MessagesServer::new(liar))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    (url, lie)
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The log is served honestly.
#[tonic::async_trait]
impl Log for Liar {
    async fn append(&self, r: Request<AppendRequest>) -> Result<Response<AppendResponse>, Status> {
        self.log.clone().append(r.into_inner()).await
    }

    async fn append_batch(
        &self,
        r: Request<AppendBatchRequest>,
    ) -> Result<Response<AppendBatchResponse>, Status> {
        self.log.clone().append_batch(r.into_inner()).await
    }

    async fn get_checkpoint(
        &self,
        r: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let req = r.into_inner();
        if let Lie::ForgedChain(forged) = self.lie() {
            let note = match req.epoch {
                None => forged.values().next_back(),
                Some(epoch) => forged.get(&epoch),
            };
            if let Some(note) = note {
                return Ok(Response::new(GetCheckpointResponse {
                    checkpoint: Some(kt_proto::v1::Checkpoint { note: note.clone() }),
                }));
            }
        }
        self.log.clone().get_checkpoint(req).await
    }

    async fn get_checkpoint_bodies(
        &self,
        r: Request<GetCheckpointBodiesRequest>,
    ) -> Result<Response<GetCheckpointBodiesResponse>, Status> {
        let req = r.into_inner();
        let mut resp = self.log.clone().get_checkpoint_bodies(req).await?;
        if let Lie::ForgedChain(forged) = self.lie() {
            for (i, body) in resp.get_mut().bodies.iter_mut().enumerate() {
                if let Some(note) = forged.get(&(req.from_epoch + i as u64)) {
                    *body = note_body(note);
                }
            }
        }
        Ok(resp)
    }

    async fn get_inclusion_proof(
        &self,
        r: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        self.log.clone().get_inclusion_proof(r.into_inner()).await
    }

    async fn get_consistency_proof(
        &self,
        r: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        self.log.clone().get_consistency_proof(r.into_inner()).await
    }

    type GetEntriesStream = Boxed<LogEntry>;
    async fn get_entries(
        &self,
        r: Request<GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let s = self.log.clone().get_entries(r.into_inner()).await?;
        Ok(Response::new(Box::pin(s.into_inner())))
    }

    type WatchCheckpointsStream = Boxed<kt_proto::v1::Checkpoint>;
    async fn watch_checkpoints(
        &self,
        r: Request<WatchCheckpointsRequest>,
    ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
        let s = self.log.clone().watch_checkpoints(r.into_inner()).await?;
        Ok(Response::new(Box::pin(s.into_inner())))
    }
}

/// An update request passed on with the provider's token, if any.
fn forward(r: Request<UpdateRequest>) -> Request<UpdateRequest> {
    let token = r.metadata().get("authorization").cloned();
    let mut out = Request::new(r.into_inner());
    if let Some(token) = token {
        out.metadata_mut().insert("authorization", token);
    }
    out
}

#[tonic::async_trait]
impl Directory for Liar {
    async fn register(
        &self,
        r: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let mut resp = self.directory.clone().register(forward(r)).await?;
        if let Lie::VrfProofOf(other) = self.lie() {
            resp.get_mut().vrf_proof = self
                .directory
                .clone()
                .lookup(LookupRequest {
                    identifier: other,
                    epoch: None,
                })
                .await?
                .into_inner()
                .vrf_proof;
        }
        Ok(resp)
    }

    async fn rotate(&self, r: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        self.directory.clone().rotate(forward(r)).await
    }

    async fn revoke(&self, r: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        self.directory.clone().revoke(forward(r)).await
    }

    async fn recover(&self, r: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        self.directory.clone().recover(forward(r)).await
    }

    async fn lookup(&self, r: Request<LookupRequest>) -> Result<Response<LookupResponse>, Status> {
        let req = r.into_inner();
        let mut up = self.directory.clone();
        let resp = match self.lie() {
            Lie::AnswerFrom(epoch) => up
                .lookup(LookupRequest {
                    epoch: Some(epoch),
                    ..req
                })
                .await?
                .into_inner(),
            Lie::ProofFrom(epoch) => {
                let mut resp = up.lookup(req.clone()).await?.into_inner();
                let other = up
                    .lookup(LookupRequest {
                        epoch: Some(epoch),
                        ..req
                    })
                    .await?
                    .into_inner();
                resp.map_proof = other.map_proof;
                resp.entry = other.entry;
                resp
            }
            Lie::AnswerFor(other) => up
                .lookup(LookupRequest {
                    identifier: other,
                    ..req
                })
                .await?
                .into_inner(),
            Lie::VrfProofOf(other) => {
                let mut resp = up.lookup(req.clone()).await?.into_inner();
                resp.vrf_proof = up
                    .lookup(LookupRequest {
                        identifier: other,
                        ..req
                    })
                    .await?
                    .into_inner()
                    .vrf_proof;
                resp
            }
            Lie::ForgedPast { at, from, note } if req.epoch == Some(at) => {
                let mut resp = up
                    .lookup(LookupRequest {
                        epoch: Some(from),
                        ..req
                    })
                    .await?
                    .into_inner();
                // The entry's inclusion proof against the forged checkpoint's tree (the log is
                // the same; only the map line is not).
                let size = kt_core::checkpoint::Checkpoint::parse_body(
                    &String::from_utf8(note_body(&note)).unwrap(),
                )
                .unwrap()
                .size;
                if let Some(entry) = resp.entry.as_mut() {
                    entry.inclusion_proof = self
                        .log
                        .clone()
                        .get_inclusion_proof(GetInclusionProofRequest {
                            index: entry.index,
                            tree_size: size,
                        })
                        .await?
                        .into_inner()
                        .hashes;
                }
                resp.checkpoint = Some(kt_proto::v1::Checkpoint { note });
                resp
            }
            Lie::SwapEntry(bytes) => {
                let mut resp = up.lookup(req).await?.into_inner();
                resp.entry.as_mut().expect("the label is present").entry = bytes;
                resp
            }
            _ => up.lookup(req).await?.into_inner(),
        };
        Ok(Response::new(resp))
    }

    async fn history(
        &self,
        r: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let mut req = r.into_inner();
        if let Lie::AnswerFor(other) = self.lie() {
            req.identifier = other;
        }
        let mut resp = self.directory.clone().history(req).await?.into_inner();
        match self.lie() {
            Lie::HideVersion(v) => {
                resp.versions.remove(v as usize - 1);
            }
            Lie::HideVersionKeepCount(v) => {
                let i = v as usize - 1;
                resp.versions[i] = resp.versions[i + 1].clone();
            }
            _ => {}
        }
        Ok(Response::new(resp))
    }
}

#[tonic::async_trait]
impl Messages for Liar {
    async fn send(
        &self,
        r: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        self.messages.clone().send(r.into_inner()).await
    }

    async fn read(
        &self,
        r: Request<ReadMessagesRequest>,
    ) -> Result<Response<ReadMessagesResponse>, Status> {
        let req = r.into_inner();
        let author = req.author.clone();
        let mut resp = self.messages.clone().read(req).await?.into_inner();
        let hide_above = |resp: &mut ReadMessagesResponse, last: u64| {
            resp.messages.retain(|m| {
                kt_core::directory::Message::decode(&m.entry)
                    .unwrap()
                    .sequence()
                    <= last
            });
        };
        match self.lie() {
            Lie::HideMessagesAbove(last) => hide_above(&mut resp, last),
            Lie::HideMessagesWithProofFrom(last, epoch) => {
                hide_above(&mut resp, last);
                resp.map_proof = self
                    .directory
                    .clone()
                    .lookup(LookupRequest {
                        identifier: author,
                        epoch: Some(epoch),
                    })
                    .await?
                    .into_inner()
                    .map_proof;
            }
            _ => {}
        }
        Ok(Response::new(resp))
    }
}

/// A server with a proxy in front, and Alice's key at version 3 (register, rotate, rotate), each
/// version in its own epoch.
struct Scene {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: ktd::RunningServer,
    key: String,
    liar: String,
    lie: Arc<Mutex<Lie>>,
    alice: Device,
    /// `epochs[v - 1]`: the epoch whose checkpoint first holds Alice's version `v`.
    epochs: Vec<u64>,
}

impl Scene {
    async fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let server = common::start(&dir).await;
        let url = common::grpc_url(&server);
        let (liar, lie) = spawn_liar(&url).await;
        let alice = Device::new(&dir, "alice");
        let mut epochs = vec![epoch_of(&alice.register(&url, ALICE))];
        for _ in 0..2 {
            epochs.push(epoch_of(&alice.ok(&url, &["key", "rotate", ALICE])));
        }
        assert!(epochs[0] < epochs[1] && epochs[1] < epochs[2]);
        Scene {
            key: server.verifier_key.clone(),
            _tmp: tmp,
            dir,
            server,
            liar,
            lie,
            alice,
            epochs,
        }
    }

    fn set(&self, lie: Lie) {
        *self.lie.lock().unwrap() = lie;
    }

    /// Bob, who looks Alice up through the proxy.
    async fn bob(&self) -> DirectoryClient {
        client(&self.liar, &self.key, self.dir.join("bob-state.json")).await
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// The plain key swap: a lookup answer whose entry is an attacker's KeyUpdate. The map proof
/// names Alice's real entry (its index, version and leaf hash), so the swapped bytes fail either
/// the map's value or the inclusion proof. The log is honest: kt-audit sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_swapped_in_a_lookup_answer_is_refused_by_the_client() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    let honest = bob.lookup(ALICE, None).await.unwrap();
    let current = honest.current.clone().unwrap();
    assert_eq!(current.update.version(), 3);
    let before = trusted_note(&bob);
    let label = honest.label;
    let m = mallory();

    // Same label, same version, same prev as Alice's version 3, Mallory's key: only the bytes
    // differ from what the log holds at that index.
    let same_version = KeyUpdate::new(
        label,
        3,
        *current.update.prev(),
        Op::Rotate,
        Some(m.public()),
        current.update.time_ms(),
    )
    .unwrap()
    .sign(Role::PreviousKey, &m)
    .unwrap()
    .sign(Role::NewKey, &m)
    .unwrap();
    s.set(Lie::SwapEntry(same_version.encode()));
    let err = answer_error(bob.lookup(ALICE, None).await.unwrap_err());
    assert!(
        matches!(err, AnswerError::Inclusion { index, .. } if index == current.index),
        "got {err}"
    );
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // A version 4 that follows Alice's chain but was never logged: the map names version 3.
    let state = honest.state().unwrap();
    let next = common::directory::next_update(&label, Some(&state), Op::Rotate, Some(&m), Some(&m));
    s.set(Lie::SwapEntry(next.encode()));
    let err = answer_error(bob.lookup(ALICE, None).await.unwrap_err());
    assert_eq!(
        err,
        AnswerError::ValueMismatch {
            want_version: 3,
            want_index: current.index,
            got_version: 4,
            got_index: current.index,
        }
    );
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // Answers are not the log: the auditor, reading the same proxy, finds the log clean.
    audit_clean(&s.liar, &s.key, &s.dir.join("audit")).await;
    s.server.shutdown().await;
}

/// Labels are VRF outputs only the server can compute, so a lying server could try to pass off
/// one user's (genuine, fully proven) answer as another's. The VRF proof in every answer is
/// checked against the identifier asked about: Carol's answer, or Alice's answer with Carol's
/// proof, is refused by the looking-up client (`AnswerError::VrfProof`) and by `kt` (exit 3).
/// The log is honest: kt-audit sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_another_identifiers_vrf_proof_is_refused_by_the_client() {
    let s = Scene::new().await;
    Device::new(&s.dir, "carol").register(&common::grpc_url(&s.server), CAROL);
    let mut bob = s.bob().await;
    let alice = bob.lookup(ALICE, None).await.unwrap();
    let carol = bob.lookup(CAROL, None).await.unwrap();
    assert_ne!(alice.label, carol.label);
    let before = trusted_note(&bob);
    let invalid = AnswerError::VrfProof(kt_core::vrf::VrfError::InvalidProof);

    // Carol's whole answer for Alice: everything verifies, but for Carol's label.
    s.set(Lie::AnswerFor(CAROL.into()));
    assert_eq!(
        answer_error(bob.lookup(ALICE, None).await.unwrap_err()),
        invalid
    );
    assert_eq!(answer_error(bob.history(ALICE).await.unwrap_err()), invalid);
    // Alice's answer with Carol's proof.
    s.set(Lie::VrfProofOf(CAROL.into()));
    assert_eq!(
        answer_error(bob.lookup(ALICE, None).await.unwrap_err()),
        invalid
    );
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // `kt lookup` through the proxy: refused, exit 3, with the reason.
    let dave = Device::new(&s.dir, "dave");
    for lie in [Lie::AnswerFor(CAROL.into()), Lie::VrfProofOf(CAROL.into())] {
        s.set(lie);
        let out = dave.kt(&s.liar, &["lookup", ALICE]);
        assert_eq!(out.status.code(), Some(3));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["kind"], "bad-answer");
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .contains("VRF proof does not verify"),
            "{json}"
        );
    }

    // A register receipt with Carol's proof: the entry is in the log, but the receipt does not
    // prove it is Dan's label, so the client does not accept it (the lookup it was built from was
    // honest).
    s.set(Lie::Honest);
    let dan = UserSigner::ed25519_from_seed([0x0d; 32]);
    let prepared = bob.prepare_register("dan@example.com", &dan).await.unwrap();
    s.set(Lie::VrfProofOf(CAROL.into()));
    let err = bob.submit(&prepared, Some(TOKEN)).await.unwrap_err();
    assert_eq!(answer_error(err), invalid);

    // Honest again: Alice's own answer, Alice's label.
    s.set(Lie::Honest);
    assert_eq!(bob.lookup(ALICE, None).await.unwrap().label, alice.label);
    audit_clean(&s.liar, &s.key, &s.dir.join("audit")).await;
    s.server.shutdown().await;
}

/// (a) A rotate the owner did not sign, put in the log by an operator holding the signing key,
/// with the directory's rules skipped. A lookup cannot tell: it proves what the map names, and
/// the map names the forged update. Every party that checks the label's history against the
/// rules refuses it: the looking-up client's `history`, the owner's monitor, and kt-audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_without_the_owners_signature_is_caught_by_history_monitor_and_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let alice = Device::new(dir, "alice");
    let registered = alice.register(&url, ALICE);
    let register_index = registered["update"]["index"].as_u64().unwrap();
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let v1 = bob.lookup(ALICE, None).await.unwrap();
    let honest_key = v1.key().cloned().unwrap();

    // The operator stops the server and appends a rotate to Mallory's key, signed by Mallory in
    // both roles: the previous-key signature is not Alice's.
    server.shutdown().await;
    let m = mallory();
    let forged = common::directory::next_update(
        &v1.label,
        Some(&v1.state().unwrap()),
        Op::Rotate,
        Some(&m),
        Some(&m),
    );
    let forged_index = forge(&dir.join("db"), vec![forged.encode()], Forgery::SkipRules)[0];
    // The real server starts on it: the full start-up check (entries, tiles, chain, map root)
    // passes, since everything is signed and consistent.
    let server = common::start(dir).await;
    let url = common::grpc_url(&server);

    // The looking-up client is fooled: the lookup verifies and shows Mallory's key.
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let lookup = bob.lookup(ALICE, None).await.unwrap();
    assert_eq!(lookup.key(), Some(&m.public()));
    assert_ne!(lookup.key(), Some(&honest_key));
    assert_eq!(lookup.current.as_ref().unwrap().index, forged_index);

    // Its history applies the rules and refuses version 2.
    let before = trusted_note(&bob);
    let err = answer_error(bob.history(ALICE).await.unwrap_err());
    assert_eq!(
        err,
        AnswerError::Rule {
            version: 2,
            source: RuleError::BadSignature {
                role: Role::PreviousKey
            },
        }
    );
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // The owner's monitor refuses the history (before any made-set comparison), exit 3.
    let (code, out, stderr) = alice.monitor(&url, ALICE);
    assert_eq!(code, Some(3));
    assert_eq!(out["kind"], "bad-answer");
    assert!(
        out["detail"].as_str().unwrap().contains(
            "version 2 breaks the directory's rules: previous-key signature does not verify"
        ),
        "{out}"
    );
    assert!(stderr.contains("REFUSED"), "{stderr}");

    // kt-audit replays the rules and names the entry and the one it had to follow.
    let finding = audit_finding(&url, &key, &dir.join("audit")).await;
    assert_eq!(finding.kind, "directory-rule");
    assert_eq!(finding.entry.as_ref().unwrap().0, forged_index);
    let replay = finding.replay.as_ref().unwrap();
    assert_eq!(replay.rule, "bad-signature");
    let entry = replay.entry.as_ref().unwrap();
    assert_eq!(entry.index, forged_index);
    assert_eq!(entry.hex, hex(&forged.encode()));
    assert!(
        entry.inclusion_proof.is_some(),
        "the entry is proven in the log"
    );
    assert_eq!(replay.prior_entry.as_ref().unwrap().index, register_index);
    server.shutdown().await;
}

/// (a') A `recover` the owner did not ask for. The provider (or whoever holds its token, e.g. the
/// operator) may recover any label: the rules allow it, so no client and no auditor can tell it
/// from a real recovery, which this test shows side by side with Carol's own recovery. Only the
/// owner's monitor, which knows which updates its device made, raises it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_by_the_provider_is_raised_only_by_the_owners_monitor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let (alice, carol) = (Device::new(dir, "alice"), Device::new(dir, "carol"));
    alice.register(&url, ALICE);
    carol.register(&url, CAROL);
    let (code, out, _) = alice.monitor(&url, ALICE);
    assert_eq!((code, &out["status"]), (Some(0), &Value::from("ok")));

    // Carol lost her keys and recovers with the provider; Alice's label is "recovered" by the
    // provider to Mallory's key without her.
    let carols = carol.ok(&url, &["key", "recover", CAROL, "--provider-token", TOKEN]);
    let m = mallory();
    let mut operator = client(&url, &key, dir.join("operator-state.json")).await;
    operator.recover(ALICE, &m, Some(TOKEN)).await.unwrap();

    // The looking-up client verifies both and sees the same shape: register, then recover.
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    for (id, new_key) in [
        (ALICE, hex(m.public().public_bytes())),
        (
            CAROL,
            carols["update"]["key"]["public"]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
    ] {
        let lookup = bob.lookup(id, None).await.unwrap();
        assert_eq!(hex(lookup.key().unwrap().public_bytes()), new_key);
        let history = bob.history(id).await.unwrap();
        let ops: Vec<Op> = history.versions.iter().map(|v| v.update.op()).collect();
        assert_eq!(ops, vec![Op::Register, Op::Recover], "{id}");
        assert!(history.state.as_ref().unwrap().recovered);
    }

    // The auditor: every entry follows the rules.
    audit_clean(&url, &key, &dir.join("audit")).await;

    // The owners' monitors: Carol's recover is hers; Alice's is not, and is raised as a RECOVER.
    let (code, out, _) = carol.monitor(&url, CAROL);
    assert_eq!((code, &out["status"]), (Some(0), &Value::from("ok")));
    let (code, out, stderr) = alice.monitor(&url, ALICE);
    assert_eq!(code, Some(3));
    assert_eq!(out["status"], "alert");
    let alerts = out["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["kind"], "foreign-version");
    assert_eq!(alerts[0]["version"], 2);
    assert_eq!(alerts[0]["op"], "recover");
    assert_eq!(alerts[0]["recover"], true);
    assert_eq!(
        alerts[0]["key"]["public"],
        hex(m.public().public_bytes()).as_str()
    );
    assert!(
        stderr.contains("ALERT: alice@example.com version 2 is a RECOVER"),
        "{stderr}"
    );
    server.shutdown().await;
}

/// (b) A version hidden from a history: dropped (the count no longer matches the map's version)
/// or replaced by its successor (the versions no longer count up). The looking-up client's
/// history and the owner's monitor refuse it; the log is honest, so kt-audit cannot see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_hidden_from_history_is_refused_by_client_and_monitor() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    assert_eq!(bob.history(ALICE).await.unwrap().versions.len(), 3);
    let before = trusted_note(&bob);

    s.set(Lie::HideVersion(2));
    let err = answer_error(bob.history(ALICE).await.unwrap_err());
    assert_eq!(err, AnswerError::HistoryLength { want: 3, got: 2 });
    let (code, out, _) = s.alice.monitor(&s.liar, ALICE);
    assert_eq!(code, Some(3));
    assert_eq!(out["kind"], "bad-answer");
    assert!(
        out["detail"]
            .as_str()
            .unwrap()
            .contains("history holds 2 versions, but the map's value is version 3"),
        "{out}"
    );

    s.set(Lie::HideVersionKeepCount(2));
    let err = answer_error(bob.history(ALICE).await.unwrap_err());
    assert_eq!(
        err,
        AnswerError::HistoryGap {
            position: 1,
            want: 2,
            got: 3
        }
    );
    let (code, out, _) = s.alice.monitor(&s.liar, ALICE);
    assert_eq!(code, Some(3));
    assert_eq!(out["kind"], "bad-answer");
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // The auditor reads the log through the same proxy while it lies: nothing to see there.
    audit_clean(&s.liar, &s.key, &s.dir.join("audit")).await;
    s.server.shutdown().await;
}

/// (c) A stale map served by a proxy, after the client already trusts a newer checkpoint: the
/// old epoch's whole answer is a rollback; the new checkpoint with the old epoch's proof does not
/// lead to the new map root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_map_answer_is_refused_by_the_client() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    let latest = bob.lookup(ALICE, None).await.unwrap();
    assert_eq!(latest.checkpoint.checkpoint().epoch, s.epochs[2]);
    let before = trusted_note(&bob);

    s.set(Lie::AnswerFrom(s.epochs[0]));
    let v = violation(bob.lookup(ALICE, None).await.unwrap_err());
    assert!(matches!(v, Violation::Rollback(_)), "got {v}");
    assert_eq!(v.evidence().trusted_note, before);
    let stale = v.evidence().new_note.clone();
    assert_ne!(stale, before);
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    s.set(Lie::ProofFrom(s.epochs[0]));
    let err = answer_error(bob.lookup(ALICE, None).await.unwrap_err());
    assert_eq!(err, AnswerError::MapProof(MapProofError::RootMismatch));
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    s.set(Lie::Honest);
    assert_eq!(
        bob.lookup(ALICE, None)
            .await
            .unwrap()
            .current
            .unwrap()
            .update
            .version(),
        3
    );
    s.server.shutdown().await;
}

/// (d) A lookup at epoch E answered for epoch E': with E''s checkpoint (refused: not the epoch
/// asked), or with E's checkpoint and E''s map proof and entry (refused: not E's map root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answered_for_another_epoch_is_refused_by_the_client() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    bob.lookup(ALICE, None).await.unwrap();
    let at_v2 = bob.lookup(ALICE, Some(s.epochs[1])).await.unwrap();
    assert_eq!(at_v2.current.unwrap().update.version(), 2);
    let before = trusted_note(&bob);

    s.set(Lie::AnswerFrom(s.epochs[0]));
    match bob.lookup(ALICE, Some(s.epochs[1])).await.unwrap_err() {
        ClientError::Unexpected(why) => assert_eq!(
            why,
            format!(
                "asked for a lookup at epoch {}, got the checkpoint of epoch {}",
                s.epochs[1], s.epochs[0]
            )
        ),
        other => panic!("expected a refusal of the other epoch, got {other}"),
    }

    s.set(Lie::ProofFrom(s.epochs[0]));
    let err = answer_error(bob.lookup(ALICE, Some(s.epochs[1])).await.unwrap_err());
    assert_eq!(err, AnswerError::MapProof(MapProofError::RootMismatch));
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");
    s.server.shutdown().await;
}

/// (c') A stale map the operator signs into its checkpoints, after Alice's rotation was accepted
/// and receipted. The operator answers her `kt key rotate` from a copy of its storage, where the
/// rotation is sequenced honestly: the receipt verifies, and her key file records the rotation as
/// confirmed (epoch and index). It keeps serving everyone else, and later Alice's monitor, from
/// the original storage, where it logs the same rotation at the same index (so the log still
/// extends what her device trusts) but keeps it out of the map (the checkpoint repeats the
/// previous map root), two heartbeat epochs later. Every answer verifies against these
/// checkpoints, so the looking-up client is fooled. Alice's device, still trusting the receipt's
/// checkpoint, is not: the chain of `prev` links down from the view's latest checkpoint names
/// another body for the receipt's epoch, a fork (exit 3). Nor is a device of hers that lost its
/// trusted state: the history it is proven ends at version 1, and version 2 was confirmed to this
/// device; its monitor raises a ROLLED BACK alert (exit 3), and again on the next run, since the
/// evidence is in the key file. kt-audit, which recomputes the map from the log, catches it as a
/// map-root mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_map_in_signed_checkpoints_is_caught_by_the_owners_monitor_and_the_auditor() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp_shown = tempfile::tempdir().unwrap();
    let (dir, shown) = (tmp.path(), tmp_shown.path());
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let alice = Device::new(dir, "alice");
    alice.register(&url, ALICE);
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let v1 = bob.lookup(ALICE, None).await.unwrap();
    let old_key = v1.key().cloned().unwrap();
    let stale_root = v1.checkpoint.checkpoint().map_root;

    // The copy the operator answers Alice's rotation from: accepted, receipted, confirmed.
    server.shutdown().await;
    copy_dir(&dir.join("db"), &shown.join("db"));
    let shown_server = common::start(shown).await;
    let shown_url = common::grpc_url(&shown_server);
    let rotated = alice.ok(&shown_url, &["key", "rotate", ALICE]);
    let confirmed_epoch = epoch_of(&rotated);
    let index = rotated["update"]["index"].as_u64().unwrap();
    let made = KeyFile::open(&alice.keys).unwrap().made(ALICE).to_vec();
    assert_eq!(made.len(), 2);
    assert_eq!(
        made[1].confirmed,
        Some(Confirmed {
            epoch: confirmed_epoch,
            index
        }),
        "kt records the verified receipt"
    );
    let rotation = client(&shown_url, &key, shown.join("operator-state.json"))
        .await
        .history(ALICE)
        .await
        .unwrap()
        .versions[1]
        .update
        .clone();
    assert_eq!(
        rotated["update"]["leaf_hash"],
        hex(&rotation.leaf_hash()).as_str()
    );
    shown_server.shutdown().await;

    // The original storage: two empty epochs (what heartbeats produce), then the rotation in the
    // log but not in the map.
    let db = dir.join("db");
    for _ in 0..2 {
        assert!(forge(&db, Vec::new(), Forgery::StaleMap).is_empty());
    }
    let forged_index = forge(&db, vec![rotation.encode()], Forgery::StaleMap)[0];
    assert_eq!(forged_index, index, "the same entry at the same index");
    let server = common::start(dir).await;
    let url = common::grpc_url(&server);

    // The looking-up client: a verified answer under the newer checkpoint, with the old key.
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let lookup = bob.lookup(ALICE, None).await.unwrap();
    let cp = lookup.checkpoint.checkpoint().clone();
    assert!(cp.size > index, "the checkpoint's log holds the rotation");
    assert!(cp.epoch > confirmed_epoch + 1);
    assert_eq!(cp.map_root, stale_root);
    assert_eq!(lookup.key(), Some(&old_key));
    assert_eq!(bob.history(ALICE).await.unwrap().versions.len(), 1);

    // The owner's device still trusts the receipt's checkpoint: the jump from it to this view's
    // latest fetches the chain in between, whose body for the receipt's epoch is another one
    // (a heartbeat here). A fork, refused with the chain as evidence (exit 3).
    let (code, out, _) = alice.monitor(&url, ALICE);
    assert_eq!(code, Some(3));
    assert_eq!(out["kind"], "fork", "{out}");
    assert_eq!(
        out["chain"].as_array().unwrap().len() as u64,
        cp.epoch - confirmed_epoch
    );

    // A device that lost its trusted state (the key file restored from a backup) takes this view
    // on first use. The owner's monitor: the history verifies, every version in it was made by
    // this device, but the rotation it saw confirmed is gone.
    std::fs::remove_file(&alice.state).unwrap();
    for run in ["first", "second"] {
        let (code, out, stderr) = alice.monitor(&url, ALICE);
        assert_eq!(code, Some(3), "{run} run");
        assert_eq!(out["status"], "alert");
        assert_eq!(out["versions"], 1);
        assert_eq!(out["checkpoint"]["epoch"], cp.epoch);
        let alerts = out["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 1, "{out}");
        assert_eq!(alerts[0]["kind"], "rolled-back");
        assert_eq!(alerts[0]["version"], 2);
        assert_eq!(alerts[0]["op"], "rotate");
        assert_eq!(alerts[0]["leaf_hash"], hex(&rotation.leaf_hash()).as_str());
        assert_eq!(alerts[0]["confirmed"]["epoch"], confirmed_epoch);
        assert_eq!(alerts[0]["confirmed"]["index"], index);
        assert_eq!(alerts[0]["instead"], Value::Null);
        assert!(
            stderr.contains(
                "ALERT: alice@example.com was ROLLED BACK: version 2 (a rotate this device made"
            ),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "confirmed in epoch {confirmed_epoch} at log index {index} by a verified receipt, \
                 is not in the history the server now proves (it ends at version 1)"
            )),
            "{stderr}"
        );
    }

    // kt-audit: the epoch's entries do not give its map root.
    let finding = audit_finding(&url, &key, &dir.join("audit")).await;
    assert_eq!(finding.kind, "map-root-mismatch");
    assert_eq!(finding.epoch, cp.epoch);
    let replay = finding.replay.as_ref().unwrap();
    assert_eq!(replay.rule, "map-root");
    assert_eq!(
        replay.signed_map_root.as_deref(),
        Some(hex(&stale_root).as_str())
    );
    let label = lookup.label;
    let change = replay
        .changed
        .iter()
        .find(|c| c.label == hex(label.as_bytes()))
        .expect("the evidence names Alice's label");
    assert_eq!((change.version, change.index), (2, index));
    assert_eq!(change.entry_hash, hex(&rotation.leaf_hash()));
    server.shutdown().await;
}

/// (e) Two users shown different keys for Alice at the same epoch: the operator copies the data
/// directory and grows the copies apart under the same signing key. Alice rotates on view A; on
/// view B the provider "recovers" her to Mallory's key. Bob (view A) and Carol (view B) each get
/// verified lookups, and an auditor of either view alone finds nothing wrong. The lie is exposed
/// as soon as anyone who saw one view meets the other: two signed checkpoints for one epoch.
/// Clients that never meet are protected only by witnesses (a later issue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_of_the_directory_are_a_fork_once_they_meet() {
    let tmp_a = tempfile::tempdir().unwrap();
    let tmp_b = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp_a.path(), tmp_b.path());
    let server = common::start(dir_a).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let alice = Device::new(dir_a, "alice");
    alice.register(&url, ALICE);
    let (bob_state, carol_state) = (dir_a.join("bob-state.json"), dir_a.join("carol-state.json"));
    let split = {
        let mut bob = client(&url, &key, bob_state.clone()).await;
        let mut carol = client(&url, &key, carol_state.clone()).await;
        let b = bob.lookup(ALICE, None).await.unwrap();
        let c = carol.lookup(ALICE, None).await.unwrap();
        assert_eq!(b.checkpoint.note(), c.checkpoint.note());
        b.checkpoint.checkpoint().epoch
    };
    server.shutdown().await;
    copy_dir(&dir_a.join("db"), &dir_b.join("db"));
    let server_a = common::start(dir_a).await;
    let server_b = common::start(dir_b).await;
    let (url_a, url_b) = (common::grpc_url(&server_a), common::grpc_url(&server_b));

    // View A: Alice's own rotation. View B: a provider recover to Mallory's key.
    let rotated = alice.ok(&url_a, &["key", "rotate", ALICE]);
    let m = mallory();
    let mut operator = client(&url_b, &key, dir_b.join("operator-state.json")).await;
    operator.recover(ALICE, &m, Some(TOKEN)).await.unwrap();

    let mut bob = client(&url_a, &key, bob_state.clone()).await;
    let mut carol = client(&url_b, &key, carol_state.clone()).await;
    let seen_by_bob = bob.lookup(ALICE, None).await.unwrap();
    let seen_by_carol = carol.lookup(ALICE, None).await.unwrap();
    let (a, b) = (
        seen_by_bob.checkpoint.checkpoint(),
        seen_by_carol.checkpoint.checkpoint(),
    );
    assert_eq!(a.epoch, split + 1);
    assert_eq!(b.epoch, split + 1, "one epoch, two checkpoints");
    assert_ne!(a, b);
    assert_eq!(
        hex(seen_by_bob.key().unwrap().public_bytes()),
        rotated["update"]["key"]["public"].as_str().unwrap()
    );
    assert_eq!(seen_by_carol.key(), Some(&m.public()));

    // Each view alone passes an audit: every entry of each follows the rules.
    let audit_a = dir_a.join("audit");
    audit_clean(&url_a, &key, &audit_a).await;
    audit_clean(&url_b, &key, &dir_b.join("audit")).await;
    // The owner, talking only to view A, sees only her own rotation.
    let (code, out, _) = alice.monitor(&url_a, ALICE);
    assert_eq!((code, &out["status"]), (Some(0), &Value::from("ok")));

    // Bob meets view B: two signed checkpoints for one epoch, refused with the evidence.
    let bob_before = std::fs::read(&bob_state).unwrap();
    let mut bob_on_b = client(&url_b, &key, bob_state.clone()).await;
    let v = violation(bob_on_b.lookup(ALICE, None).await.unwrap_err());
    assert!(matches!(v, Violation::Fork(_)), "got {v}");
    let evidence = v.evidence();
    assert_eq!(evidence.kind, "fork");
    assert_eq!(evidence.trusted_note, seen_by_bob.checkpoint.note());
    assert_eq!(evidence.new_note, seen_by_carol.checkpoint.note());
    assert_eq!(
        std::fs::read(&bob_state).unwrap(),
        bob_before,
        "state unchanged"
    );
    // The evidence is conclusive for anyone with the log's key: both notes verify, one epoch,
    // different bodies.
    let verifier = NoteVerifier::parse(&key).unwrap();
    let open = |note: &str| {
        SignedCheckpoint::open(note.as_bytes(), common::ORIGIN, &verifier)
            .unwrap()
            .checkpoint()
            .clone()
    };
    let (t, n) = (open(&evidence.trusted_note), open(&evidence.new_note));
    assert_eq!(t.epoch, n.epoch);
    assert_ne!(t.body(), n.body());

    // Carol meets view A: the same.
    let mut carol_on_a = client(&url_a, &key, carol_state).await;
    let v = violation(carol_on_a.lookup(ALICE, None).await.unwrap_err());
    assert!(matches!(v, Violation::Fork(_)), "got {v}");

    // Alice's monitor, pointed at view B, refuses it the same way (exit 3, fork evidence).
    let (code, out, _) = alice.monitor(&url_b, ALICE);
    assert_eq!(code, Some(3));
    assert_eq!(out["kind"], "fork");

    // kt-audit with the state it kept from view A, run against view B: a fork.
    let finding = audit_finding(&url_b, &key, &audit_a).await;
    assert_eq!(finding.kind, "fork");
    assert_eq!(finding.epoch, split + 1);
    assert_eq!(
        finding.checkpoints,
        vec![
            seen_by_bob.checkpoint.note().to_owned(),
            seen_by_carol.checkpoint.note().to_owned()
        ]
    );

    server_a.shutdown().await;
    server_b.shutdown().await;
}

/// The control for the proxy tests: with no lie, every answer through the proxy verifies and the
/// owner's monitor passes, so what the other tests see refused is the lie and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_proxy_passes_everything() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    let history = bob.history(ALICE).await.unwrap();
    assert_eq!(history.versions.len(), 3);
    assert_eq!(
        history.state.as_ref().unwrap().leaf_hash,
        history.versions[2].leaf_hash
    );
    for (v, epoch) in s.epochs.iter().enumerate() {
        let at = bob.lookup(ALICE, Some(*epoch)).await.unwrap();
        assert_eq!(at.current.unwrap().update.version(), v as u64 + 1);
    }
    let (code, out, _) = s.alice.monitor(&s.liar, ALICE);
    assert_eq!((code, &out["status"]), (Some(0), &Value::from("ok")));
    s.server.shutdown().await;
}

/// (f) A key update dated far from its epoch (`docs/protocol.md` §9.3): the server refuses it,
/// so an operator holding the log key writes one with the rules skipped — a register signed by
/// the user's own key, valid in every other way, with `time_ms = 0`. Clients cannot tell
/// (`kt history` would show 1970); kt-audit holds the update to the `time` line of the
/// checkpoint that first includes it and reports it, with the entry proven in that checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_dated_far_from_its_checkpoint_is_caught_by_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let label = bob.lookup("dave@example.com", None).await.unwrap().label;
    server.shutdown().await;

    let dave = UserSigner::ed25519_from_seed([0x0d; 32]);
    let dated = KeyUpdate::new(label, 1, [0; 32], Op::Register, Some(dave.public()), 0)
        .unwrap()
        .sign(Role::NewKey, &dave)
        .unwrap();
    let forged_index = forge(&dir.join("db"), vec![dated.encode()], Forgery::SkipRules)[0];
    let server = common::start(dir).await;
    let url = common::grpc_url(&server);
    // The looking-up client sees a verified version 1 dated 1970.
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let history = bob.history("dave@example.com").await.unwrap();
    assert_eq!(history.versions.last().unwrap().update.time_ms(), 0);

    let finding = audit_finding(&url, &key, &dir.join("audit")).await;
    assert_eq!(finding.kind, "directory-rule");
    assert!(
        finding
            .detail
            .contains("update time_ms 0 is more than 300000 ms"),
        "{}",
        finding.detail
    );
    let replay = finding.replay.as_ref().unwrap();
    assert_eq!(replay.rule, "update-time");
    let entry = replay.entry.as_ref().unwrap();
    assert_eq!(entry.index, forged_index);
    assert_eq!(entry.hex, hex(&dated.encode()));
    assert!(entry.inclusion_proof.is_some(), "proven in the checkpoint");
    // The checkpoint that first includes it, whose time the update is held to, is evidence.
    let including = finding.checkpoints.last().unwrap();
    let opened = SignedCheckpoint::open(
        including.as_bytes(),
        common::ORIGIN,
        &NoteVerifier::parse(&key).unwrap(),
    )
    .unwrap();
    assert_eq!(opened.checkpoint().size, forged_index + 1);
    assert!(opened.checkpoint().time_ms > kt_core::directory::MAX_UPDATE_SKEW_MS);
    server.shutdown().await;
}

/// Opens a checkpoint note of the test log (signature checked).
fn open_note(key: &str, note: &str) -> kt_core::checkpoint::Checkpoint {
    let verifier = NoteVerifier::parse(key).unwrap();
    SignedCheckpoint::open(note.as_bytes(), common::ORIGIN, &verifier)
        .unwrap()
        .checkpoint()
        .clone()
}

/// What a third party does with chain evidence: both notes verify under the log's key, and the
/// chain is the one the newer note names, link by link down to the older note's epoch. Returns
/// the body the newer note commits to for that epoch.
fn recheck_chain_evidence(
    key: &str,
    e: &kt_core::trust::Evidence,
) -> kt_core::checkpoint::Checkpoint {
    let (a, b) = (open_note(key, &e.trusted_note), open_note(key, &e.new_note));
    let (older, newer) = if a.epoch < b.epoch { (a, b) } else { (b, a) };
    assert_eq!(e.chain.len() as u64, newer.epoch - older.epoch);
    let mut named = newer.prev;
    for body in e.chain.iter().rev() {
        assert_eq!(kt_core::hash::sha256(body.as_bytes()), named);
        named = kt_core::checkpoint::Checkpoint::parse_body(body)
            .unwrap()
            .prev;
    }
    let committed = kt_core::checkpoint::Checkpoint::parse_body(&e.chain[0]).unwrap();
    assert_eq!(committed.epoch, older.epoch);
    assert_ne!(
        committed, older,
        "the older note is not what the newer one commits to"
    );
    committed
}

/// Issue 18, finding 1 (past epochs). Bob trusts a checkpoint a few epochs after the one that
/// holds Alice's version 2. The operator, holding the log's key, signs a second body for that
/// epoch: the same size, root, prev and time, but the map root of the epoch before (Alice at
/// version 1), and answers a lookup at that epoch under it. The consistency proof passes (the
/// log is the same); the `prev` links from Bob's trusted checkpoint down to that epoch name the
/// real body, so the client refuses: a fork, with both signed notes and the chain as evidence
/// that a third party re-checks. `kt lookup --epoch` exits 3 with it. Honest past lookups pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_body_for_a_past_epoch_is_a_fork_against_the_chain() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    // Two more epochs: the trusted checkpoint is then at least three past version 2's.
    for i in 0..2u8 {
        bob.log_mut().append("chain", vec![i]).await.unwrap();
    }
    let at = s.epochs[1];
    let trusted = bob.log_mut().refresh().await.unwrap().checkpoint().clone();
    assert!(trusted.checkpoint().epoch >= at + 3);

    // Honest past lookups verify their chain and pass.
    for (v, epoch) in s.epochs.iter().enumerate() {
        let lookup = bob.lookup(ALICE, Some(*epoch)).await.unwrap();
        assert_eq!(lookup.current.unwrap().update.version(), v as u64 + 1);
    }
    let dave = Device::new(&s.dir, "dave");
    dave.ok(&s.liar, &["lookup", ALICE]);
    let honest = dave.ok(&s.liar, &["lookup", ALICE, "--epoch", &at.to_string()]);
    assert_eq!(honest["current"]["version"], 2, "{honest}");

    // The operator's second body for epoch `at`.
    let signer = ktd::keys::load(&s.dir.join("db/log.key"), common::ORIGIN).unwrap();
    let real = bob.log().api().checkpoint(Some(at)).await.unwrap();
    let older = bob.log().api().checkpoint(Some(s.epochs[0])).await.unwrap();
    let mut body = real.checkpoint().clone();
    body.map_root = older.checkpoint().map_root;
    let forged = SignedCheckpoint::sign(body, &signer).unwrap();
    s.set(Lie::ForgedPast {
        at,
        from: s.epochs[0],
        note: forged.note().as_bytes().to_vec(),
    });

    let before = trusted_note(&bob);
    let v = violation(bob.lookup(ALICE, Some(at)).await.unwrap_err());
    assert!(matches!(v, Violation::Fork(_)), "got {v}");
    let evidence = v.evidence();
    assert_eq!(evidence.kind, "fork");
    assert_eq!(evidence.trusted_note, before);
    assert_eq!(evidence.new_note, forged.note());
    let committed = recheck_chain_evidence(&s.key, evidence);
    assert_eq!(
        &committed,
        real.checkpoint(),
        "the chain names the real body"
    );
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // `kt lookup --epoch`: refused, exit 3, the same evidence on stdout, state unchanged.
    let dave_before = std::fs::read(&dave.state).unwrap();
    let out = dave.kt(&s.liar, &["lookup", ALICE, "--epoch", &at.to_string()]);
    assert_eq!(out.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "fork");
    assert_eq!(json["new_note"], forged.note());
    let chain = json["chain"].as_array().unwrap();
    assert_eq!(chain[0], real.checkpoint().body().as_str());
    assert_eq!(std::fs::read(&dave.state).unwrap(), dave_before);
    s.server.shutdown().await;
}

/// Issue 18, finding 1 (forward jumps). Bob trusts epoch t; the log grows four epochs he does not
/// see. The operator re-signs the newest epochs so that the one at t + 2 no longer names t + 1
/// (and each later one names the forged one before it): the jump from t to the latest has a
/// consistent log and a good signature, but the chain in between is broken. Refused (the bodies
/// served are not the ones the signed checkpoint names), trusted state unchanged, `kt checkpoint`
/// exits 3. A forged chain that reaches all the way down to a second body of epoch t is a fork
/// with evidence. The honest chain passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_jump_over_a_broken_link_is_refused() {
    let s = Scene::new().await;
    let mut bob = s.bob().await;
    let t = bob.log_mut().refresh().await.unwrap().checkpoint().clone();
    let t_epoch = t.checkpoint().epoch;
    let dave = Device::new(&s.dir, "dave");
    assert_eq!(
        dave.ok(&s.liar, &["checkpoint"])["checkpoint"]["epoch"],
        t_epoch
    );
    let mut grower = client(
        &common::grpc_url(&s.server),
        &s.key,
        s.dir.join("grower-state.json"),
    )
    .await;
    for i in 0..4u8 {
        grower.log_mut().append("chain", vec![i]).await.unwrap();
    }
    let n = grower.log().trusted().unwrap().checkpoint().epoch;
    assert_eq!(n, t_epoch + 4);

    // Re-signs epochs `from..=n` from the stored ones, the first with `prev` set by `first_prev`
    // and `map` by `first_map`, each later one naming the forged one before it.
    let signer = ktd::keys::load(&s.dir.join("db/log.key"), common::ORIGIN).unwrap();
    let api = grower.log().api().clone();
    let forge_from = |from: u64, first: fn(&mut kt_core::checkpoint::Checkpoint)| {
        let (api, signer) = (api.clone(), &signer);
        async move {
            let mut forged = std::collections::BTreeMap::new();
            let mut prev = None;
            for e in from..=n {
                let mut cp = api.checkpoint(Some(e)).await.unwrap().checkpoint().clone();
                match prev {
                    None => first(&mut cp),
                    Some(h) => cp.prev = h,
                }
                prev = Some(cp.body_hash());
                let note = SignedCheckpoint::sign(cp, signer).unwrap();
                forged.insert(e, note.note().as_bytes().to_vec());
            }
            forged
        }
    };

    // A middle link broken: epoch t + 2 names a body that is nowhere.
    let broken = forge_from(t_epoch + 2, |cp| cp.prev = [0x42; 32]).await;
    s.set(Lie::ForgedChain(broken.clone()));
    let before = trusted_note(&bob);
    match bob.log_mut().refresh().await.unwrap_err() {
        ClientError::BadChain {
            from,
            to,
            notes,
            source,
        } => {
            assert_eq!((from, to), (t_epoch, n));
            assert_eq!(
                source,
                kt_core::trust::BadChain::NotNamed { epoch: t_epoch + 1 }
            );
            assert_eq!(notes[0], before);
            assert_eq!(notes[1].as_bytes(), &broken[&n][..]);
        }
        other => panic!("expected a refused chain, got {other}"),
    }
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");
    let dave_before = std::fs::read(&dave.state).unwrap();
    let out = dave.kt(&s.liar, &["checkpoint"]);
    assert_eq!(out.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "bad-chain");
    assert_eq!(std::fs::read(&dave.state).unwrap(), dave_before);

    // A chain forged down to epoch t itself (another map root there): every body is the one the
    // forged latest names, and the first is not the checkpoint Bob trusts. A fork, provable.
    let fork = forge_from(t_epoch, |cp| cp.map_root = [0x66; 32]).await;
    s.set(Lie::ForgedChain(fork.clone()));
    let v = violation(bob.log_mut().refresh().await.unwrap_err());
    assert!(matches!(v, Violation::Fork(_)), "got {v}");
    assert_eq!(v.evidence().trusted_note, before);
    assert_eq!(v.evidence().new_note.as_bytes(), &fork[&n][..]);
    let committed = recheck_chain_evidence(&s.key, v.evidence());
    assert_eq!(committed.map_root, [0x66; 32]);
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    // The honest chain: the same jump passes, for the library and for `kt`.
    s.set(Lie::Honest);
    match bob.log_mut().refresh().await.unwrap() {
        kt_client::Refresh::Advanced { from, to } => {
            assert_eq!(from.checkpoint().epoch, t_epoch);
            assert_eq!(to.checkpoint().epoch, n);
        }
        other => panic!("expected the jump, got {other:?}"),
    }
    assert_eq!(dave.ok(&s.liar, &["checkpoint"])["checkpoint"]["epoch"], n);
    s.server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The message log: signatures and completeness (issue 18, finding 2).
// ---------------------------------------------------------------------------------------------

/// `kt message send <identifier> -n chat <text>` on `device`; the receipt's log index.
fn send(device: &Device, url: &str, identifier: &str, text: &str) -> u64 {
    let out = device.ok(url, &["message", "send", identifier, "-n", "chat", text]);
    out["message"]["index"].as_u64().unwrap()
}

/// (g) Messages with Alice's label and her next sequence numbers, put in the log by an operator
/// holding the signing key, with the rules skipped: one signed by Mallory, one whose signature
/// is 64 zero bytes. The map's count follows them (the operator's sequencer records them as
/// Alice's latest), so only the signature gives them away: the reader checks each message under
/// Alice's key at its log index and refuses, with the entry, its index and that key as evidence;
/// `kt message read` exits 3; kt-audit replays the rules and names the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_are_refused_by_the_reader_and_caught_by_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let alice = Device::new(dir, "alice");
    alice.register(&url, ALICE);
    send(&alice, &url, ALICE, "hello");
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let lookup = bob.lookup(ALICE, None).await.unwrap();
    assert_eq!(lookup.message_count, 1);
    let alice_key = lookup.key().cloned().unwrap();
    assert_eq!(bob.read_messages(ALICE, 1, 0).await.unwrap().count, 1);

    server.shutdown().await;
    let chat = kt_core::entry::Namespace::new("chat").unwrap();
    let by_mallory = kt_core::directory::Message::sign(
        chat.clone(),
        lookup.label,
        2,
        b"pay mallory".to_vec(),
        &mallory(),
    )
    .unwrap();
    let unsigned = kt_core::directory::Message::new(
        chat,
        lookup.label,
        3,
        b"pay mallory".to_vec(),
        vec![0; 64],
    )
    .unwrap();
    let forged = forge(
        &dir.join("db"),
        vec![by_mallory.encode(), unsigned.encode()],
        Forgery::SkipRules,
    );
    let server = common::start(dir).await;
    let url = common::grpc_url(&server);

    // The map counts them: a lookup shows three messages, so the next send would be number 4.
    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    assert_eq!(bob.lookup(ALICE, None).await.unwrap().message_count, 3);
    let before = trusted_note(&bob);
    for (from, message, index) in [(1, &by_mallory, forged[0]), (3, &unsigned, forged[1])] {
        let err = answer_error(bob.read_messages(ALICE, from, 0).await.unwrap_err());
        let AnswerError::ForgedMessage(evidence) = err else {
            panic!("expected a forged message, got {err}");
        };
        assert_eq!(evidence.index, index);
        assert_eq!(evidence.entry, message.encode());
        assert_eq!(evidence.key.as_ref(), Some(&alice_key));
        assert_eq!(evidence.key_version, 1);
        assert_eq!(evidence.rule, RuleError::BadMessageSignature);
        // The evidence proves the entry is at its index in the refused answer's checkpoint.
        assert!(!evidence.inclusion.is_empty());
        assert_eq!(trusted_note(&bob), before, "trusted state unchanged");
    }

    // `kt message read` refuses with the evidence, exit 3.
    let out = alice.kt(&url, &["message", "read", ALICE]);
    assert_eq!(out.status.code(), Some(3));
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["kind"], "forged-message", "{evidence}");
    let f = &evidence["forged_message"];
    assert_eq!(f["index"], forged[0]);
    assert_eq!(
        f["key"]["public_key"],
        hex(alice_key.public_bytes()),
        "{evidence}"
    );
    assert!(f["rule"].as_str().unwrap().contains("does not verify"));
    assert!(evidence["checkpoint_note"].as_str().unwrap().contains('—'));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REFUSED"));

    // kt-audit replays the rules: the first forged message breaks them.
    let finding = audit_finding(&url, &key, &dir.join("audit")).await;
    assert_eq!(finding.kind, "directory-rule");
    assert_eq!(finding.entry.as_ref().unwrap().0, forged[0]);
    assert_eq!(
        finding.replay.as_ref().unwrap().rule,
        "bad-message-signature"
    );
    server.shutdown().await;
}

/// (h) A server that hides Alice's newest messages from a read. The read carries the map proof
/// of Alice's label, whose value counts her messages: an answer that stops before the count is
/// read on, and one that then has nothing is refused; an old epoch's map proof (whose count
/// agrees with the hidden read) does not lead to the answer's map root. Reading a range that
/// stops early is fine and says how many exist. The log is honest: kt-audit sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_messages_hidden_from_a_read_are_refused_by_the_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let (liar, lie) = spawn_liar(&url).await;
    let alice = Device::new(dir, "alice");
    alice.register(&url, ALICE);
    send(&alice, &url, ALICE, "one");
    let after_one = alice.ok(&url, &["message", "read", ALICE]);
    let epoch_one = after_one["checkpoint"]["epoch"].as_u64().unwrap();
    send(&alice, &url, ALICE, "two");
    send(&alice, &url, ALICE, "three");
    let mut bob = client(&liar, &key, dir.join("bob-state.json")).await;

    // Honest: everything, and a range that stops early says how many there are.
    let all = bob.read_messages(ALICE, 1, 0).await.unwrap();
    assert_eq!((all.messages.len(), all.count), (3, 3));
    let some = bob.read_messages(ALICE, 1, 2).await.unwrap();
    assert_eq!((some.messages.len(), some.count), (2, 3));

    *lie.lock().unwrap() = Lie::HideMessagesAbove(1);
    let before = trusted_note(&bob);
    assert_eq!(
        answer_error(bob.read_messages(ALICE, 1, 0).await.unwrap_err()),
        AnswerError::IncompleteRead { from: 2, count: 3 }
    );
    assert_eq!(
        answer_error(bob.read_messages(ALICE, 3, 0).await.unwrap_err()),
        AnswerError::IncompleteRead { from: 3, count: 3 }
    );
    let out = alice.kt(&liar, &["message", "read", ALICE]);
    assert_eq!(out.status.code(), Some(3));
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["kind"], "bad-answer");
    assert!(
        evidence["detail"]
            .as_str()
            .unwrap()
            .contains("the map says the author has 3 messages"),
        "{evidence}"
    );

    *lie.lock().unwrap() = Lie::HideMessagesWithProofFrom(1, epoch_one);
    assert_eq!(
        answer_error(bob.read_messages(ALICE, 1, 0).await.unwrap_err()),
        AnswerError::MapProof(MapProofError::RootMismatch)
    );
    assert_eq!(trusted_note(&bob), before, "trusted state unchanged");

    audit_clean(&url, &key, &dir.join("audit")).await;
    server.shutdown().await;
}

/// Honest reads across a rotation, a revoke and a recovery: each message is checked under the key
/// of Alice's latest update before it (version 1, 2, then 4), both by the library and by `kt`,
/// and the next sequence comes from the map's count. kt-audit passes the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_across_rotation_and_recovery_verify_each_under_its_own_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let key = server.verifier_key.clone();
    let url = common::grpc_url(&server);
    let alice = Device::new(dir, "alice");
    alice.register(&url, ALICE);
    send(&alice, &url, ALICE, "under version 1");
    alice.ok(&url, &["key", "rotate", ALICE]);
    send(&alice, &url, ALICE, "under version 2");
    send(&alice, &url, ALICE, "also under version 2");
    alice.ok(&url, &["key", "revoke", ALICE]);
    alice.ok(&url, &["key", "recover", ALICE, "--provider-token", TOKEN]);
    send(&alice, &url, ALICE, "under version 4");

    let mut bob = client(&url, &key, dir.join("bob-state.json")).await;
    let read = bob.read_messages(ALICE, 1, 0).await.unwrap();
    assert_eq!(read.count, 4);
    let history = bob.history(ALICE).await.unwrap();
    let key_of = |version: usize| history.versions[version - 1].update.key().cloned().unwrap();
    let signed_by = [1, 2, 2, 4];
    for (m, version) in read.messages.iter().zip(signed_by) {
        let key = key_of(version);
        assert!(key
            .verify(&m.message.signed_bytes(), m.message.signature())
            .is_ok());
        assert!(m.index > history.versions[version - 1].index);
    }
    assert_ne!(key_of(1), key_of(2));
    assert_ne!(key_of(2), key_of(4));
    assert_eq!(bob.last_sequence(ALICE).await.unwrap(), 4);
    let out = alice.ok(&url, &["message", "read", ALICE, "--from", "2"]);
    assert_eq!(out["count"], 4);
    assert_eq!(out["messages"].as_array().unwrap().len(), 3);

    audit_clean(&url, &key, &dir.join("audit")).await;
    server.shutdown().await;
}
