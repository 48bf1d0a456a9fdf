//! The parts of the crash-safety harness (`server/tests/crash.rs`): the `ktd` child process, the
//! ledger of everything clients were told, the load (appends, registrations, rotations, a
//! checkpoint watcher) and the checks run after every restart.
//!
//! Only what a client was *told* is held against the server: an acknowledged write (an OK answer
//! with an index) and a served checkpoint. A write whose answer never came (the server was killed
//! with it in flight) may or may not be in the log; nothing is asserted about it, except that no
//! acknowledged entry may be found replaced by it.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kt_audit::{AuditConfig, Auditor, Outcome, Replay};
pub use kt_bench::rng::Rng;
use kt_client::{ClientError, DirectoryClient, LogApi, LogClient, Lookup};
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::directory::{
    verify_label, verify_update_receipt, KeyUpdate, LookupAnswer, Op, Role, UserKey, UserSigner,
};
use kt_core::entry::{Entry, Namespace, Record};
use kt_core::hash::{empty_root, leaf_hash, Hash};
use kt_core::merkle::{verify_consistency, verify_inclusion, Frontier};
use kt_core::note::NoteVerifier;
use kt_core::trust::check_link;
use kt_core::vrf::VrfPublicKey;
use kt_proto::directory::{answer_checkpoint, vrf_proof_from_wire};
use kt_proto::v1::directory_client::DirectoryClient as DirectoryRpc;
use kt_proto::v1::UpdateRequest;
use tonic::transport::Channel;

use crate::common::binary;

/// The origin of the harness's log.
pub const ORIGIN: &str = "crash.keytrail/log";
/// Entries fetched per `GetEntries` call (the server's limit).
const ENTRY_BATCH: u64 = 10_000;

/// A fresh user key of one of the three algorithms.
fn random_signer(rng: &mut Rng) -> UserSigner {
    let mut secret = [0u8; 32];
    secret[..31].copy_from_slice(&rng.bytes(31));
    // Never zero; with a zero top byte it is far below the secp256k1 group order.
    secret[0] = 0;
    secret[31] = 1;
    match rng.below(3) {
        0 => UserSigner::ed25519_from_seed(secret),
        1 => UserSigner::secp256k1_ecdsa_from_secret(secret).expect("valid scalar"),
        _ => UserSigner::bip340_from_secret(secret).expect("valid scalar"),
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A port that was free a moment ago (ktd is restarted on the same ports, so that the auditor's
/// connection and its in-memory replay carry over; see [`Checker`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How one `ktd` process is started.
#[derive(Debug, Clone)]
pub struct KtdOptions {
    pub data_dir: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    pub epoch_ms: u64,
    pub heartbeat_ms: u64,
    pub max_batch: usize,
    /// `--startup-check full` (re-hash everything) rather than `quick`.
    pub full_startup_check: bool,
    /// ktd's output (stdout and stderr), kept across restarts (shown when something fails).
    pub output: Output,
}

/// The last lines ktd printed, kept in memory: a log file on the same disk would lose them
/// exactly when the disk is full (and ktd's `eprintln!` panics when stderr cannot be written).
#[derive(Debug, Clone, Default)]
pub struct Output(Arc<Mutex<std::collections::VecDeque<String>>>);

impl Output {
    const KEEP: usize = 200;

    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap();
        if lines.len() == Self::KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.0.lock().unwrap();
        let skip = lines.len().saturating_sub(n);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What ktd prints once storage is verified and it serves.
#[derive(Debug, Clone)]
pub struct Ready {
    pub grpc_url: String,
    pub http_url: String,
    pub log_key: String,
    pub vrf_key: String,
}

/// A running `ktd` child process. Dropping it kills it.
#[derive(Debug)]
pub struct Ktd {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The threads draining stdout and stderr: joined once ktd has exited, so that its last
    /// words are in the [`Output`] before anyone reads them.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Ktd {
    pub fn spawn(opts: &KtdOptions) -> Ktd {
        // KT_CRASH_KTD: a copy of ktd for long runs, so that a rebuild of the shared target
        // directory meanwhile does not swap the binary under test.
        let exe = std::env::var_os("KT_CRASH_KTD").map_or_else(|| binary("ktd"), PathBuf::from);
        let mut child = Command::new(exe)
            // No KTD_* variable of the caller's environment may change the server under test.
            .env_clear()
            .env("RUST_LOG", "warn")
            .arg("--data-dir")
            .arg(&opts.data_dir)
            .args(["--grpc-addr", &format!("127.0.0.1:{}", opts.grpc_port)])
            .args(["--http-addr", &format!("127.0.0.1:{}", opts.http_port)])
            .args(["--origin", ORIGIN])
            .args(["--epoch-interval-ms", &opts.epoch_ms.to_string()])
            .args(["--heartbeat-ms", &opts.heartbeat_ms.to_string()])
            .args(["--max-batch", &opts.max_batch.to_string()])
            .args([
                "--startup-check",
                if opts.full_startup_check {
                    "full"
                } else {
                    "quick"
                },
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Both pipes are drained until ktd dies, so it never blocks on a full pipe (nor fails a
        // write to a closed one); lines that are not UTF-8 are kept lossily.
        let output = opts.output.clone();
        let mut readers = Vec::new();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                output.push(format!("[stdout] {line}"));
                let _ = tx.send(line);
            }
        }));
        let output = opts.output.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                output.push(format!("[stderr] {}", String::from_utf8_lossy(&line)));
            }
        }));
        Ktd {
            child,
            lines,
            readers,
        }
    }

    /// Waits for ktd to exit and for its output to be read to the end.
    fn exited(&mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Waits until ktd prints its addresses and keys (after start-up verification), or exits.
    /// No deadline: ktd either serves or exits, and its stdout closes when it exits.
    pub fn wait_ready(&mut self) -> Result<Ready, ExitStatus> {
        let mut grpc = None;
        let mut http = None;
        let mut log_key = None;
        let mut vrf_key = None;
        loop {
            let line = match tokio::task::block_in_place(|| self.lines.recv()) {
                Ok(line) => line,
                Err(_) => return Err(tokio::task::block_in_place(|| self.exited())),
            };
            let line = line.trim();
            // The first word after the label (more may follow, e.g. "(plaintext)").
            let word = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_owned();
            if let Some(rest) = line.strip_prefix("gRPC") {
                grpc = Some(format!("http://{}", word(rest)));
            } else if let Some(rest) = line.strip_prefix("HTTP tiles") {
                http = Some(word(rest).trim_end_matches("/checkpoint").to_owned());
            } else if let Some(rest) = line.strip_prefix("log key") {
                log_key = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("VRF key") {
                vrf_key = Some(rest.trim().to_owned());
            }
            if let (Some(g), Some(h), Some(l), Some(v)) = (&grpc, &http, &log_key, &vrf_key) {
                return Ok(Ready {
                    grpc_url: g.clone(),
                    http_url: h.clone(),
                    log_key: l.clone(),
                    vrf_key: v.clone(),
                });
            }
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix). Returns the exit status if ktd had already
    /// exited on its own, which it never should.
    pub fn kill(mut self) -> Result<(), ExitStatus> {
        let _ = self.child.kill();
        let status = tokio::task::block_in_place(|| self.exited());
        if status.signal() == Some(9) {
            Ok(())
        } else {
            Err(status)
        }
    }
}

impl Drop for Ktd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A write the server acknowledged: its entry bytes must stay at its index forever.
#[derive(Debug)]
pub struct Acked {
    pub bytes: Vec<u8>,
    pub what: String,
}

/// A checkpoint the server served to some client.
#[derive(Debug)]
pub struct Served {
    pub cp: SignedCheckpoint,
    pub by: &'static str,
    /// Compared with the checkpoint stored for its epoch after a restart.
    pub compared: bool,
    /// A consistency proof from it to a later checkpoint verified.
    pub proven: bool,
}

/// Counters for the report.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub records: u64,
    pub registers: u64,
    pub rotations: u64,
    /// Writes sent whose answer never came (or was an error).
    pub unanswered: u64,
    /// Directory writes whose answer never came but which were found in the log after the
    /// restart (killed between the commit point and the reply).
    pub landed_unanswered: u64,
    /// Answers that were RESOURCE_EXHAUSTED (back-pressure, not a failure).
    pub exhausted: u64,
    /// Unanswered writes by gRPC code and message (transport errors, mostly).
    pub errors: BTreeMap<String, u64>,
}

/// Everything the clients were told, and what went wrong.
#[derive(Debug, Default)]
pub struct Ledger {
    pub acked: BTreeMap<u64, Acked>,
    pub served: BTreeMap<u64, Served>,
    /// Leaf hashes of unanswered writes (they may or may not be in the log).
    pub unanswered: HashSet<Hash>,
    pub failures: Vec<String>,
    pub counts: Counts,
}

impl Ledger {
    pub fn ack(&mut self, index: u64, bytes: Vec<u8>, what: String) {
        if let Some(earlier) = self.acked.get(&index) {
            if earlier.bytes != bytes {
                self.failures.push(format!(
                    "index {index} was acknowledged twice: for {} and now for {what}",
                    earlier.what
                ));
            }
            return;
        }
        self.acked.insert(index, Acked { bytes, what });
    }

    pub fn serve(&mut self, cp: &SignedCheckpoint, by: &'static str) {
        let epoch = cp.checkpoint().epoch;
        match self.served.get(&epoch) {
            Some(earlier) if earlier.cp.note() != cp.note() => self.failures.push(format!(
                "epoch {epoch} was served with two different checkpoints (first by {}, then by {by}):\n{}\n---\n{}",
                earlier.by,
                earlier.cp.note(),
                cp.note()
            )),
            Some(_) => {}
            None => {
                self.served.insert(
                    epoch,
                    Served {
                        cp: cp.clone(),
                        by,
                        compared: false,
                        proven: false,
                    },
                );
            }
        }
    }
}

/// State shared by the workers of one run.
#[derive(Debug, Default)]
pub struct Shared {
    pub ledger: Mutex<Ledger>,
    /// Writes sent and not yet answered: non-zero at the kill means an epoch was being gathered
    /// or committed.
    pub in_flight: AtomicUsize,
    /// Writes acknowledged since the start of the run.
    pub acks: AtomicU64,
    pub ack_notify: tokio::sync::Notify,
    pub stop: AtomicBool,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }

    fn fail(&self, msg: String) {
        self.ledger().failures.push(msg);
    }

    fn stopped(&self) -> bool {
        self.stop.load(SeqCst)
    }

    fn acknowledged(&self) {
        self.acks.fetch_add(1, SeqCst);
        self.ack_notify.notify_waiters();
    }

    /// A write that got no OK answer. Refusals of well-formed writes are failures; transport
    /// errors (the server died) and back-pressure are not.
    fn unanswered(&self, hash: Hash, status: &tonic::Status, what: &str) {
        use tonic::Code::*;
        let mut ledger = self.ledger();
        ledger.unanswered.insert(hash);
        ledger.counts.unanswered += 1;
        let mut message = status.message().to_owned();
        message.truncate(60);
        *ledger
            .counts
            .errors
            .entry(format!("{:?}: {message}", status.code()))
            .or_default() += 1;
        match status.code() {
            ResourceExhausted => ledger.counts.exhausted += 1,
            InvalidArgument | FailedPrecondition | AlreadyExists | PermissionDenied
            | Unauthenticated | NotFound | OutOfRange => ledger.failures.push(format!(
                "the server refused a valid {what}: {} {}",
                status.code(),
                status.message()
            )),
            _ => {}
        }
    }
}

/// Where the load goes, as ktd printed it.
#[derive(Debug, Clone)]
pub struct Target {
    pub grpc_url: String,
    pub log_key: String,
    pub verifier: NoteVerifier,
    pub vrf_key: VrfPublicKey,
    pub token: String,
}

impl Target {
    pub fn new(ready: &Ready, token: String) -> Target {
        Target {
            grpc_url: ready.grpc_url.clone(),
            log_key: ready.log_key.clone(),
            verifier: NoteVerifier::parse(&ready.log_key).unwrap(),
            vrf_key: kt_client::directory::read_vrf_key(&ready.vrf_key).unwrap(),
            token,
        }
    }

    fn open(&self, note: &[u8]) -> Result<SignedCheckpoint, String> {
        SignedCheckpoint::open(note, ORIGIN, &self.verifier).map_err(|e| e.to_string())
    }
}

/// A short pause after a failed call, so a dead server is not hammered.
async fn back_off() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// A client with a trusted state that persists across restarts: after a restart its first
/// refresh is the check every real client makes (the new state must extend what it trusted).
async fn connect_log(t: &Target, state: &Path, shared: &Shared) -> Option<LogClient> {
    while !shared.stopped() {
        match LogClient::connect(&t.grpc_url, &t.log_key, state).await {
            Ok(client) => return Some(client),
            Err(_) => back_off().await,
        }
    }
    None
}

/// Refreshes a client's trusted state; a violation (rollback, fork) is a failure.
async fn refresh(client: &mut LogClient, shared: &Shared, who: &str) {
    match client.refresh().await {
        Ok(r) => shared.ledger().serve(r.checkpoint(), "refresh"),
        Err(e) if e.is_violation() => shared.fail(format!("{who}'s refresh: {e}")),
        Err(_) => {}
    }
}

/// Appends message-log records of random sizes.
#[derive(Debug)]
pub struct Appender {
    pub id: usize,
    pub rng: Rng,
    pub state: PathBuf,
    pub sent: u64,
}

impl Appender {
    pub fn new(id: usize, rng: Rng, work: &Path) -> Appender {
        Appender {
            id,
            rng,
            state: work.join(format!("appender-{id}.json")),
            sent: 0,
        }
    }

    pub async fn run(mut self, t: Target, shared: Arc<Shared>, cycle: u64) -> Appender {
        let who = format!("appender {}", self.id);
        let Some(mut client) = connect_log(&t, &self.state, &shared).await else {
            return self;
        };
        refresh(&mut client, &shared, &who).await;
        let namespace = Namespace::new(format!("crash/a{}", self.id)).unwrap();
        while !shared.stopped() {
            self.sent += 1;
            if self.sent.is_multiple_of(16) {
                refresh(&mut client, &shared, &who).await;
            }
            // Mostly small records, a few up to 4 KiB.
            let len = if self.rng.below(10) == 0 {
                1 + self.rng.below(4096)
            } else {
                1 + self.rng.below(200)
            } as usize;
            let mut payload = format!("{who} #{} cycle {cycle} ", self.sent).into_bytes();
            payload.extend(self.rng.bytes(len));
            let record = Record::new(namespace.clone(), payload).unwrap();
            let entry = Entry::Record(record.clone()).encode();
            let what = format!("record {} of {who} (cycle {cycle})", self.sent);
            if shared.stopped() {
                break;
            }
            shared.in_flight.fetch_add(1, SeqCst);
            let answer = client.api().append(&record).await;
            shared.in_flight.fetch_sub(1, SeqCst);
            match answer {
                Ok(receipt) => {
                    // The OK answer is the acknowledgement, whatever else is wrong with it.
                    let index = receipt.index;
                    let checked = check_append(&t, &entry, &receipt);
                    let mut ledger = shared.ledger();
                    match checked {
                        Ok(cp) => ledger.serve(&cp, "append receipt"),
                        Err(e) => ledger
                            .failures
                            .push(format!("receipt of {what} at {index}: {e}")),
                    }
                    ledger.ack(index, entry, what);
                    ledger.counts.records += 1;
                    drop(ledger);
                    shared.acknowledged();
                }
                Err(ClientError::Rpc(status)) => {
                    shared.unanswered(leaf_hash(&entry), &status, &what);
                    back_off().await;
                }
                Err(e @ ClientError::Wire(_)) => shared.fail(format!("{what}: {e}")),
                Err(_) => {
                    shared.unanswered(leaf_hash(&entry), &tonic::Status::unknown(""), &what);
                    back_off().await;
                }
            }
        }
        self
    }
}

/// One identity a directory worker owns: it is the only writer of its label, so the directory
/// must show exactly what it was told, or the one write it sent without an answer.
#[derive(Debug)]
struct Identity {
    name: String,
    /// Every key made for it; the version's key is an index into this.
    keys: Vec<UserSigner>,
    /// The acknowledged version (0: not registered) and its key.
    version: u64,
    key: Option<usize>,
    /// A write sent without an answer: its version and key.
    tried: Option<(u64, usize)>,
}

/// Registers identities and rotates their keys, with real signatures.
#[derive(Debug)]
pub struct DirectoryWorker {
    pub id: usize,
    pub rng: Rng,
    pub state: PathBuf,
    identities: Vec<Identity>,
    tag: u64,
}

impl DirectoryWorker {
    pub fn new(id: usize, mut rng: Rng, work: &Path) -> DirectoryWorker {
        DirectoryWorker {
            id,
            tag: rng.below(1 << 32),
            rng,
            state: work.join(format!("directory-{id}.json")),
            identities: Vec::new(),
        }
    }

    pub async fn run(mut self, t: Target, shared: Arc<Shared>, cycle: u64) -> DirectoryWorker {
        let who = format!("directory worker {}", self.id);
        let Some(log) = connect_log(&t, &self.state, &shared).await else {
            return self;
        };
        let mut dir = DirectoryClient::new(log, t.vrf_key.clone());
        refresh(dir.log_mut(), &shared, &who).await;
        let mut rpc = loop {
            if shared.stopped() {
                return self;
            }
            match DirectoryRpc::connect(t.grpc_url.clone()).await {
                Ok(rpc) => break rpc,
                Err(_) => back_off().await,
            }
        };
        while !shared.stopped() {
            let i = if self.identities.len() < 2 || self.rng.below(3) == 0 {
                let name = format!(
                    "crash-{:08x}-d{}-{}@example.org",
                    self.tag,
                    self.id,
                    self.identities.len()
                );
                self.identities.push(Identity {
                    name,
                    keys: Vec::new(),
                    version: 0,
                    key: None,
                    tried: None,
                });
                self.identities.len() - 1
            } else {
                self.rng.below(self.identities.len() as u64) as usize
            };
            self.step(i, &t, &shared, &mut dir, &mut rpc, cycle).await;
        }
        self
    }

    /// Looks the identity up (checking it against what we were told), then registers or
    /// rotates it.
    async fn step(
        &mut self,
        i: usize,
        t: &Target,
        shared: &Shared,
        dir: &mut DirectoryClient,
        rpc: &mut DirectoryRpc<Channel>,
        cycle: u64,
    ) {
        let name = self.identities[i].name.clone();
        let lookup = match dir.lookup(&name, None).await {
            Ok(lookup) => lookup,
            Err(e) => {
                if e.is_violation() {
                    shared.fail(format!("lookup of {name}: {e}"));
                }
                back_off().await;
                return;
            }
        };
        shared.ledger().serve(&lookup.checkpoint, "lookup");
        if let Err(e) = reconcile(&mut self.identities[i], &lookup, shared) {
            shared.fail(format!(
                "{name} at epoch {}: {e}",
                lookup.checkpoint.checkpoint().epoch
            ));
            return;
        }
        let id = &mut self.identities[i];
        let new = random_signer(&mut self.rng);
        let (update, op) = match (&lookup.current, id.key) {
            (None, _) => {
                let update = KeyUpdate::new(
                    lookup.label,
                    1,
                    [0; 32],
                    Op::Register,
                    Some(new.public()),
                    now_ms(),
                )
                .unwrap()
                .sign(Role::NewKey, &new)
                .unwrap();
                (update, Op::Register)
            }
            (Some(current), Some(old)) => {
                let update = KeyUpdate::new(
                    lookup.label,
                    current.update.version() + 1,
                    current.leaf_hash,
                    Op::Rotate,
                    Some(new.public()),
                    now_ms(),
                )
                .unwrap()
                .sign(Role::PreviousKey, &id.keys[old])
                .unwrap()
                .sign(Role::NewKey, &new)
                .unwrap();
                (update, Op::Rotate)
            }
            (Some(_), None) => unreachable!("reconcile leaves a registered identity with a key"),
        };
        let version = update.version();
        if shared.stopped() {
            return;
        }
        id.keys.push(new);
        id.tried = Some((version, id.keys.len() - 1));
        let what = format!("{op} of {name} version {version} (cycle {cycle})");
        let register = op == Op::Register;
        let mut request = tonic::Request::new(UpdateRequest {
            entry: update.encode(),
            identifier: if register {
                name.clone()
            } else {
                String::new()
            },
        });
        if register {
            let token = format!("Bearer {}", t.token).parse().unwrap();
            request.metadata_mut().insert("authorization", token);
        }
        shared.in_flight.fetch_add(1, SeqCst);
        let answer = if register {
            rpc.register(request).await
        } else {
            rpc.rotate(request).await
        };
        shared.in_flight.fetch_sub(1, SeqCst);
        let resp = match answer {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                shared.unanswered(update.leaf_hash(), &status, &what);
                back_off().await;
                return;
            }
        };
        let checked = check_update(
            t,
            &update,
            &resp,
            register.then_some((&name, &lookup.label)),
        );
        let mut ledger = shared.ledger();
        match checked {
            Ok((index, cp)) => {
                ledger.serve(&cp, "update receipt");
                ledger.ack(index, update.encode(), what);
                if register {
                    ledger.counts.registers += 1;
                } else {
                    ledger.counts.rotations += 1;
                }
                id.version = version;
                id.key = Some(id.keys.len() - 1);
                id.tried = None;
            }
            Err(e) => ledger.failures.push(format!("{what}: {e}")),
        }
        drop(ledger);
        shared.acknowledged();
    }
}

/// Checks an append receipt: the bytes sent, an inclusion proof in a checkpoint the log signed.
fn check_append(
    t: &Target,
    entry: &[u8],
    receipt: &kt_proto::AppendReceipt,
) -> Result<SignedCheckpoint, String> {
    if receipt.entry != entry {
        return Err("the receipt carries other entry bytes".to_owned());
    }
    let cp = t.open(&receipt.checkpoint_note)?;
    let c = cp.checkpoint();
    verify_inclusion(
        &leaf_hash(entry),
        receipt.index,
        c.size,
        &receipt.inclusion_proof,
        &c.root,
    )
    .map_err(|e| format!("inclusion proof: {e}"))?;
    Ok(cp)
}

/// Checks a directory receipt with the core verification functions (independently of
/// kt-client): the update is in the log and the map names it; a register's VRF proof gives the
/// label. Returns the update's index and the receipt's checkpoint.
fn check_update(
    t: &Target,
    update: &KeyUpdate,
    resp: &kt_proto::v1::UpdateResponse,
    register: Option<(&String, &kt_core::directory::Label)>,
) -> Result<(u64, SignedCheckpoint), String> {
    let note = answer_checkpoint(resp.checkpoint.as_ref()).map_err(|e| e.to_string())?;
    let cp = t.open(&note)?;
    let answer = LookupAnswer::try_from(resp).map_err(|e| e.to_string())?;
    let verified = verify_update_receipt(cp.checkpoint(), update, &answer)
        .map_err(|e| format!("receipt: {e}"))?;
    if let Some((name, label)) = register {
        let proof = vrf_proof_from_wire(&resp.vrf_proof).map_err(|e| e.to_string())?;
        if verify_label(&t.vrf_key, name, &proof).map_err(|e| e.to_string())? != *label {
            return Err("the receipt's VRF proof gives another label".to_owned());
        }
    }
    Ok((verified.index, cp))
}

/// Checks a verified lookup against what the identity's owner was told, and takes an unanswered
/// write that landed as the new state.
fn reconcile(id: &mut Identity, lookup: &Lookup, shared: &Shared) -> Result<(), String> {
    let key_of = |k: Option<usize>| k.map(|k| id.keys[k].public());
    let found: Option<(u64, Option<UserKey>)> = lookup
        .current
        .as_ref()
        .map(|c| (c.update.version(), c.update.key().cloned()));
    let Some((version, key)) = found else {
        if id.version > 0 {
            return Err(format!(
                "acknowledged version {} is gone: the label is not registered",
                id.version
            ));
        }
        id.tried = None;
        return Ok(());
    };
    if version == id.version && key == key_of(id.key) {
        id.tried = None;
        return Ok(());
    }
    if let Some((tried_version, tried_key)) = id.tried {
        if version == tried_version && key == key_of(Some(tried_key)) {
            // Killed between the commit point and the answer: in the log, never acknowledged.
            id.version = version;
            id.key = Some(tried_key);
            id.tried = None;
            shared.ledger().counts.landed_unanswered += 1;
            return Ok(());
        }
    }
    if version < id.version {
        return Err(format!(
            "acknowledged version {} is gone: the directory shows version {version}",
            id.version
        ));
    }
    Err(format!(
        "the directory shows version {version} with a key this owner never sent (acknowledged: version {})",
        id.version
    ))
}

/// Records every checkpoint the server publishes (the stream every monitor follows).
pub async fn watcher(t: Target, shared: Arc<Shared>) {
    let Ok(api) = LogApi::connect(&t.grpc_url, &t.log_key).await else {
        return;
    };
    let Ok(stream) = api.watch(None).await else {
        return;
    };
    let mut stream = Box::pin(stream);
    while let Some(Ok(cp)) = stream.next().await {
        shared.ledger().serve(&cp, "watch");
    }
}

/// What one check after a restart saw.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    pub epoch: u64,
    pub size: u64,
    pub new_entries: u64,
    pub consistency_proofs: u64,
    pub stored_compared: u64,
}

/// The checks after a restart. It keeps a verified copy of the log (each new entry is
/// downloaded once and the whole copy must give the new checkpoint's root, so an old entry that
/// changed fails the root; a full check also compares every byte again), the root of every
/// prefix (to check any served checkpoint against the new state locally), the directory replayed
/// from the log, the last stored checkpoint whose chain was checked, and a kt-audit auditor whose
/// state and in-memory replay carry over while ktd keeps its port.
#[derive(Debug)]
pub struct Checker {
    mirror: Vec<Vec<u8>>,
    roots: Vec<Hash>,
    frontier: Frontier,
    replay: Replay,
    chain: Option<SignedCheckpoint>,
    auditor: Option<(String, Auditor)>,
    work: PathBuf,
    pub proofs: u64,
    pub auditor_restarts: u64,
}

impl Checker {
    pub fn new(work: &Path) -> Checker {
        Checker {
            mirror: Vec::new(),
            roots: vec![empty_root()],
            frontier: Frontier::new(),
            replay: Replay::new(),
            chain: None,
            auditor: None,
            work: work.to_owned(),
            proofs: 0,
            auditor_restarts: 0,
        }
    }

    pub fn entries(&self) -> &[Vec<u8>] {
        &self.mirror
    }

    /// Checks the restarted server against everything clients were told. `full` re-downloads
    /// every entry and stored checkpoint and proves consistency from every served checkpoint;
    /// otherwise only what is new since the last check is fetched (plus `sample` older served
    /// checkpoints proven again), and everything else is checked locally against the verified
    /// copy. Returns the failures.
    pub async fn check(
        &mut self,
        t: &Target,
        http_url: &str,
        shared: &Shared,
        full: bool,
        sample: usize,
        rng: &mut Rng,
    ) -> Result<CheckReport, Vec<String>> {
        let mut failures = Vec::new();
        let api = LogApi::connect(&t.grpc_url, &t.log_key)
            .await
            .map_err(|e| vec![format!("connect: {e}")])?;
        let latest = api
            .checkpoint(None)
            .await
            .map_err(|e| vec![format!("latest checkpoint: {e}")])?;
        shared.ledger().serve(&latest, "check");
        let n = latest.checkpoint().clone();
        let mut report = CheckReport {
            epoch: n.epoch,
            size: n.size,
            ..CheckReport::default()
        };

        // 1. The entries: the verified copy must be a prefix of the new tree.
        let known = self.mirror.len() as u64;
        if n.size < known {
            return Err(vec![format!(
                "the restarted log has {} entries, fewer than the {known} verified before (epoch {})",
                n.size, n.epoch
            )]);
        }
        let mut start = known;
        while start < n.size {
            let end = (start + ENTRY_BATCH).min(n.size);
            let batch = api
                .entries(start, end)
                .await
                .map_err(|e| vec![format!("entries [{start}, {end}): {e}")])?;
            for entry in batch {
                self.frontier.append(leaf_hash(&entry));
                self.roots.push(self.frontier.root());
                self.mirror.push(entry);
            }
            start = end;
        }
        report.new_entries = n.size - known;
        if self.frontier.root() != n.root {
            return Err(vec![format!(
                "the entries do not give the root of epoch {} (size {}): an entry before index {known} changed, or a new one is corrupt",
                n.epoch, n.size
            )]);
        }
        if full {
            let mut start = 0;
            while start < n.size {
                let end = (start + ENTRY_BATCH).min(n.size);
                let batch = api
                    .entries(start, end)
                    .await
                    .map_err(|e| vec![format!("entries [{start}, {end}): {e}")])?;
                for (i, entry) in batch.iter().enumerate() {
                    let index = start + i as u64;
                    if *entry != self.mirror[index as usize] {
                        failures.push(format!("entry {index} changed since it was first read"));
                    }
                }
                start = end;
            }
        }

        // 2. The stored checkpoints: a chain from the last one checked (from genesis when full).
        let mut stored: BTreeMap<u64, SignedCheckpoint> = BTreeMap::new();
        let head = match (&self.chain, full) {
            (Some(head), false) => head.clone(),
            _ => api
                .checkpoint(Some(0))
                .await
                .map_err(|e| vec![format!("checkpoint of epoch 0: {e}")])?,
        };
        if n.epoch < head.checkpoint().epoch {
            return Err(vec![format!(
                "the restarted log is at epoch {}, before epoch {} stored earlier",
                n.epoch,
                head.checkpoint().epoch
            )]);
        }
        stored.insert(head.checkpoint().epoch, head.clone());
        let mut prev = head.clone();
        if n.epoch > prev.checkpoint().epoch {
            let stream = api
                .watch(Some(prev.checkpoint().epoch))
                .await
                .map_err(|e| vec![format!("watch: {e}")])?;
            let mut stream = Box::pin(stream);
            while prev.checkpoint().epoch < n.epoch {
                let cp = match stream.next().await {
                    Some(Ok(cp)) => cp,
                    Some(Err(e)) => return Err(vec![format!("watch: {e}")]),
                    None => return Err(vec!["the checkpoint stream ended early".to_owned()]),
                };
                if let Err(v) = check_link(&prev, &cp) {
                    failures.push(format!("stored chain: {v}"));
                }
                stored.insert(cp.checkpoint().epoch, cp.clone());
                prev = cp;
            }
        }
        if prev.checkpoint() != &n {
            failures.push(format!(
                "the stored checkpoint of epoch {} differs from the latest served",
                n.epoch
            ));
        }
        self.chain = Some(prev);

        // 3. Local checks against the ledger: acknowledged entries, served checkpoints.
        let mut refetch = Vec::new();
        let mut prove = Vec::new();
        {
            let mut ledger = shared.ledger();
            for (index, acked) in &ledger.acked {
                match self.mirror.get(*index as usize) {
                    None => failures.push(format!(
                        "acknowledged entry {index} ({}) is gone: the log has {} entries",
                        acked.what, n.size
                    )),
                    Some(bytes) if *bytes != acked.bytes => failures.push(format!(
                        "acknowledged entry {index} ({}) was replaced by other bytes",
                        acked.what
                    )),
                    Some(_) => {}
                }
            }
            let mut proven = Vec::new();
            for (epoch, served) in ledger.served.iter_mut() {
                let c = served.cp.checkpoint();
                if *epoch > n.epoch || c.size > n.size {
                    failures.push(format!(
                        "served checkpoint of epoch {epoch} (size {}) is beyond the restarted log (epoch {}, size {})",
                        c.size, n.epoch, n.size
                    ));
                    continue;
                }
                if self.roots[c.size as usize] != c.root {
                    failures.push(format!(
                        "served checkpoint of epoch {epoch} (size {}) is not a prefix of the restarted log",
                        c.size
                    ));
                }
                match stored.get(epoch) {
                    Some(s) => {
                        if s.note() != served.cp.note() {
                            failures.push(format!(
                                "epoch {epoch} is stored with other contents than were served (by {}):\nserved:\n{}stored:\n{}",
                                served.by,
                                served.cp.note(),
                                s.note()
                            ));
                        }
                        if !served.compared {
                            report.stored_compared += 1;
                        }
                        served.compared = true;
                    }
                    None if !served.compared => refetch.push(*epoch),
                    None => {}
                }
                if c.size > 0 && c.size < n.size {
                    if !served.proven {
                        prove.push((*epoch, c.size, c.root));
                    } else {
                        proven.push((*epoch, c.size, c.root));
                    }
                }
            }
            if full {
                prove.append(&mut proven);
            } else {
                for _ in 0..sample.min(proven.len()) {
                    let i = rng.below(proven.len() as u64) as usize;
                    prove.push(proven.swap_remove(i));
                }
            }
        }

        // 4. Served checkpoints the chain walk did not cover, and consistency proofs.
        for epoch in refetch {
            match api.checkpoint(Some(epoch)).await {
                Ok(s) => {
                    let mut ledger = shared.ledger();
                    let served = ledger.served.get_mut(&epoch).expect("listed above");
                    if s.note() != served.cp.note() {
                        failures.push(format!(
                            "epoch {epoch} is stored with other contents than were served:\nserved:\n{}stored:\n{}",
                            served.cp.note(),
                            s.note()
                        ));
                    }
                    served.compared = true;
                    report.stored_compared += 1;
                }
                Err(e) => failures.push(format!("checkpoint of served epoch {epoch}: {e}")),
            }
        }
        for (epoch, size, root) in prove {
            match api.consistency_proof(size, n.size).await {
                Ok(proof) => {
                    if let Err(e) = verify_consistency(size, n.size, &proof, &root, &n.root) {
                        failures.push(format!(
                            "no consistency from served epoch {epoch} (size {size}) to epoch {} (size {}): {e}",
                            n.epoch, n.size
                        ));
                    } else if let Some(s) = shared.ledger().served.get_mut(&epoch) {
                        s.proven = true;
                    }
                    report.consistency_proofs += 1;
                    self.proofs += 1;
                }
                Err(e) => failures.push(format!("consistency proof {size} → {}: {e}", n.size)),
            }
        }

        // 5. The directory: a replay of the log gives the latest map root.
        for index in self.replay.next_index()..n.size {
            if let Err(v) = self.replay.apply_entry(index, &self.mirror[index as usize]) {
                failures.push(format!("replay: {v}"));
                break;
            }
        }
        if self.replay.next_index() == n.size {
            if let Err(v) = self.replay.finish_epoch(&n) {
                failures.push(format!("replay: {v}"));
            }
        }

        // 6. kt-audit: every checkpoint since the last audit (chain, roots, consistency proofs,
        // per-epoch map roots from its own replay) and the HTTP tiles.
        match self.audit(t, http_url).await {
            Ok(Outcome::Clean { .. }) => {}
            Ok(Outcome::Violation {
                finding,
                evidence_file,
            }) => failures.push(format!(
                "kt-audit: {} at epoch {}: {} (evidence in {})",
                finding.kind,
                finding.epoch,
                finding.detail,
                evidence_file.display()
            )),
            Err(e) => failures.push(format!("kt-audit: {e:#}")),
        }

        if failures.is_empty() {
            Ok(report)
        } else {
            Err(failures)
        }
    }

    /// Runs the auditor once, keeping it (and its in-memory replay) while the address is the
    /// same; a new one (which replays from entry 0 with the state on disk) otherwise, or when the
    /// old one's connection does not come back.
    async fn audit(&mut self, t: &Target, http_url: &str) -> anyhow::Result<Outcome> {
        if let Some((url, auditor)) = &mut self.auditor {
            if *url == t.grpc_url {
                if let Ok(outcome) = auditor.run_once().await {
                    return Ok(outcome);
                }
            }
        }
        self.auditor_restarts += 1;
        let mut auditor = Auditor::new(AuditConfig {
            server: t.grpc_url.clone(),
            log_key: t.log_key.clone(),
            state_dir: self.work.join("audit"),
            evidence_dir: self.work.join("evidence"),
            tiles_url: Some(http_url.to_owned()),
            progress: false,
        })
        .await?;
        let outcome = auditor.run_once().await?;
        self.auditor = Some((t.grpc_url.clone(), auditor));
        Ok(outcome)
    }

    /// How many unanswered writes are in the log (killed after the commit point, before the
    /// answer reached the client).
    pub fn landed(&self, unanswered: &HashSet<Hash>) -> usize {
        self.mirror
            .iter()
            .filter(|e| unanswered.contains(&leaf_hash(e)))
            .count()
    }

    /// Epochs linked in the stored chain so far.
    pub fn chain_epoch(&self) -> Option<u64> {
        self.chain.as_ref().map(|c| c.checkpoint().epoch)
    }
}
