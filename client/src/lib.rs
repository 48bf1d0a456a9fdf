//! `kt-client`: a KeyTrail client that verifies every answer before returning it.
//!
//! Two layers:
//! - [`LogApi`]: the transport. It checks what can be checked without history: checkpoint
//!   signatures and origin, hash sizes, that a proof answers the question asked.
//! - [`LogClient`]: adds the trusted state (the last verified checkpoint, kept in a file). Every
//!   checkpoint it sees must be consistent with that state; a rollback or fork is refused with
//!   the evidence ([`ClientError::Violation`]) and the state is left as it was.
//! - [`DirectoryClient`]: the key directory and the message log on top of a [`LogClient`] (one
//!   trusted state for everything). Every answer's checkpoint takes the same step as a refresh,
//!   then the answer is verified by `kt_core::directory::verify`; a lie is
//!   [`ClientError::Answer`].
//!
//! [`keys`] holds this device's private keys and the updates it made, for `kt` and the owner's
//! monitor.

mod api;
pub mod directory;
pub mod http;
pub mod keys;
mod state;

pub use api::{LogApi, TlsOptions, DEFAULT_SERVER};
pub use directory::{
    DirectoryClient, Lookup, MessageReceipt, Messages, UpdateReceipt, VerifiedHistory,
};
pub use state::{write_atomically, write_private_atomically, StateError, TrustedStateFile};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kt_core::checkpoint::{CheckpointError, SignedCheckpoint};
use kt_core::cosignature::{CosignatureError, WitnessPolicy};
use kt_core::directory::{AnswerError, DirectoryError, KeyError, RuleError};
use kt_core::entry::{Entry, EntryError, Namespace, Record};
use kt_core::hash::{leaf_hash, Hash};
use kt_core::merkle::{verify_inclusion, VerifyError};
use kt_core::note::{Note, NoteError};
use kt_core::trust::{self, ChainRefusal, Step, Violation};
use kt_proto::WireError;
use thiserror::Error;

/// A `--log-key` value: the verifier key string itself, or the path of a file holding it (ktd
/// writes one next to its signing key). Returns the verifier key string.
pub fn read_log_key(value: &str) -> Result<String, String> {
    if kt_core::note::NoteVerifier::parse(value.trim()).is_ok() {
        return Ok(value.trim().to_owned());
    }
    std::fs::read_to_string(value)
        .map(|text| text.trim().to_owned())
        .map_err(|e| {
            format!("--log-key {value:?} is neither a verifier key nor a readable file: {e}")
        })
}

/// Why a client call failed. A failed call never changes the trusted state.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    /// Not a `#[source]`: the message already says all a `tonic::Status` would, so an error
    /// chain prints it once.
    #[error("server answered {} ({}): {}", code_name(.0.code()), .0.code(), .0.message())]
    Rpc(tonic::Status),
    #[error("malformed answer: {0}")]
    Wire(#[from] WireError),
    #[error("bad log key: {0}")]
    LogKey(#[from] NoteError),
    #[error("checkpoint rejected: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the log misbehaved: {0}")]
    Violation(Box<Violation>),
    #[error("{what} does not verify: {source}")]
    Proof {
        what: String,
        #[source]
        source: VerifyError,
    },
    #[error("invalid entry: {0}")]
    Entry(#[from] EntryError),
    #[error("the server answered with different entry bytes than were appended")]
    EntryMismatch,
    #[error("entry {index} is not in the log yet (tree size {size})")]
    IndexBeyondTree { index: u64, size: u64 },
    #[error("the server answered something other than what was asked: {0}")]
    Unexpected(String),
    #[error("server sent {got} entries, want {want}")]
    WrongEntryCount { got: usize, want: usize },
    #[error(transparent)]
    State(#[from] StateError),
    /// The checkpoint bodies served for a gap of epochs are not the ones the newer checkpoint's
    /// `prev` links name (`kt_core::trust::verify_chain`): the server lied or broke, though
    /// nothing is proven against the log. Like [`ClientError::Answer`], an honest server never
    /// causes it; `kt` exits 3.
    #[error(
        "the server's checkpoint chain from epoch {from} to epoch {to} does not verify: {source}"
    )]
    BadChain {
        from: u64,
        to: u64,
        /// The two signed checkpoint notes the chain was to link, older first.
        notes: [String; 2],
        #[source]
        source: kt_core::trust::BadChain,
    },
    /// A directory or message answer that does not verify against its (signed, trusted)
    /// checkpoint: the server lied or broke. Like a [`ClientError::Violation`], an honest server
    /// never causes it; `kt` exits 3.
    #[error("{0}")]
    Answer(Box<BadAnswer>),
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    #[error("bad key: {0}")]
    Key(#[from] KeyError),
    /// Checked locally before sending: the directory (as verified just now) would refuse it.
    #[error("{op} of {identifier} refused before sending: {reason}")]
    Refused {
        op: String,
        identifier: String,
        reason: RuleError,
    },
    #[error("the key given is not the current key of {identifier} (version {version})")]
    NotCurrentKey { identifier: String, version: u64 },
    #[error("the provider token cannot be sent as gRPC metadata (it must be visible ASCII)")]
    BadToken,
    /// The checkpoint did not collect enough witness cosignatures in time. Not a violation:
    /// the witnesses may be slow, down, or refusing a checkpoint they could not verify.
    #[error("the checkpoint of epoch {epoch} carries {found} valid cosignatures from the witness policy, {threshold} required (waited {waited_ms} ms)")]
    NoQuorum {
        epoch: u64,
        found: usize,
        threshold: usize,
        waited_ms: u64,
    },
    /// The checkpoint is older than the freshness bound allows (a stalled or withholding log,
    /// or a wrong local clock).
    #[error(
        "the checkpoint of epoch {epoch} is {age_ms} ms old, more than the allowed {max_ms} ms"
    )]
    Stale {
        epoch: u64,
        age_ms: u64,
        max_ms: u64,
    },
    /// The log signed a checkpoint dated more than [`Policy::max_ahead`] after the local clock.
    /// An honest log never does (it stamps checkpoints with its clock when it signs them), so
    /// this is treated like a violation (`kt` exits 3, with the signed note and the local clock
    /// as evidence); the one innocent cause is a local clock that is behind by more than the
    /// bound, which the message says.
    #[error("{future}")]
    FromTheFuture {
        future: trust::FromTheFuture,
        /// The signed checkpoint note, as received.
        note: String,
    },
    /// A witness's checkpoint (gossip) that does not open or is not from the policy's witness.
    #[error("witness checkpoint rejected: {0}")]
    Gossip(String),
    /// TLS options that cannot be used (see [`TlsOptions`]).
    #[error("TLS: {0}")]
    Tls(String),
}

/// An answer that does not verify (see [`ClientError::Answer`]).
#[derive(Debug, Error)]
#[error("the server's {what} does not verify: {source}")]
pub struct BadAnswer {
    /// What was asked, e.g. `lookup of alice@example.com`.
    pub what: String,
    /// The signed checkpoint note the answer carried (already verified and consistent with the
    /// trusted state), to keep next to the refusal.
    pub checkpoint_note: String,
    #[source]
    pub source: AnswerError,
}

impl ClientError {
    /// Whether the error proves (or, for [`ClientError::Answer`], shows) that the log or the
    /// server misbehaved, as opposed to a failure to ask or a refusal.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            ClientError::Violation(_)
                | ClientError::Answer(_)
                | ClientError::FromTheFuture { .. }
                | ClientError::BadChain { .. }
        )
    }

    /// The server's back-off hint: it refused the call with `RESOURCE_EXHAUSTED` (a full append
    /// queue, or this client's rate limit) and says, as `retry-after-ms` metadata, how long to
    /// wait. The call was not carried out, so it may be sent again after that long; this library
    /// does not retry by itself.
    pub fn retry_after(&self) -> Option<Duration> {
        let ClientError::Rpc(status) = self else {
            return None;
        };
        if status.code() != tonic::Code::ResourceExhausted {
            return None;
        }
        let ms = status.metadata().get(RETRY_AFTER_KEY)?.to_str().ok()?;
        Some(Duration::from_millis(ms.trim().parse().ok()?))
    }
}

/// The metadata key of the server's back-off hint ([`ClientError::retry_after`]).
pub const RETRY_AFTER_KEY: &str = "retry-after-ms";

/// The canonical name of a gRPC status code (`UNAUTHENTICATED`), as servers and tools print it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Rpc(status)
    }
}

impl From<Violation> for ClientError {
    fn from(v: Violation) -> Self {
        ClientError::Violation(Box::new(v))
    }
}

/// A verified append receipt.
#[derive(Debug, Clone)]
pub struct VerifiedAppend {
    pub index: u64,
    pub entry: Vec<u8>,
    pub checkpoint: SignedCheckpoint,
    pub inclusion_proof: Vec<Hash>,
}

/// A verified inclusion of an entry in a trusted checkpoint.
#[derive(Debug, Clone)]
pub struct VerifiedInclusion {
    pub index: u64,
    pub entry: Vec<u8>,
    pub checkpoint: SignedCheckpoint,
    pub inclusion_proof: Vec<Hash>,
}

/// What a refresh did to the trusted state.
#[derive(Debug, Clone)]
pub enum Refresh {
    /// No state yet: the first checkpoint seen is trusted on first use.
    FirstUse(SignedCheckpoint),
    /// The server's checkpoint is the trusted one.
    Unchanged(SignedCheckpoint),
    /// The trusted state moved to a newer, consistent checkpoint.
    Advanced {
        from: SignedCheckpoint,
        to: SignedCheckpoint,
    },
}

impl Refresh {
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        match self {
            Refresh::FirstUse(c) | Refresh::Unchanged(c) | Refresh::Advanced { to: c, .. } => c,
        }
    }
}

/// Where a checkpoint came from, which decides whether an older one is a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Offered as the server's latest.
    Latest,
    /// Carried by a receipt, naming the epoch an entry was sequenced in.
    Receipt,
    /// Asked for by epoch (a lookup at an older epoch, a watched checkpoint another call has
    /// already overtaken): an older one is checked for consistency and does not replace the
    /// trusted state.
    Past,
}
use Seen::{Latest, Receipt};

/// A verified step that has not been written to the state file yet: directory calls verify the
/// whole answer before [`LogClient::commit`].
#[derive(Debug)]
struct Pending {
    refresh: Refresh,
    store: bool,
    /// The checkpoint as checked: the one offered, or the same checkpoint asked for again with
    /// the cosignatures the policy required.
    checked: SignedCheckpoint,
}

/// What a client requires of every checkpoint beyond the log's signature (`docs/protocol.md`
/// §13.3): witness cosignatures and freshness. The default requires no witnesses and no
/// maximum age, and refuses a checkpoint dated more than [`DEFAULT_MAX_AHEAD`] in the future.
#[derive(Debug, Clone)]
pub struct Policy {
    /// At least k of these n witnesses must have cosigned the checkpoint.
    pub witnesses: Option<WitnessPolicy>,
    /// Largest age of a checkpoint's `time` against the local clock. Applies to the server's
    /// latest checkpoint and to receipts, not to a checkpoint asked for by epoch.
    pub max_age: Option<Duration>,
    /// How far a checkpoint's `time` may be ahead of the local clock. Applies to every
    /// checkpoint, asked for by epoch or not: a checkpoint from the future is never valid (it
    /// would pass `max_age` for as long as its date is ahead).
    pub max_ahead: Duration,
    /// How long to keep asking for the checkpoint of the same epoch while its cosignatures
    /// arrive (witnesses cosign only after verifying it) before giving up.
    pub quorum_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            witnesses: None,
            max_age: None,
            max_ahead: DEFAULT_MAX_AHEAD,
            quorum_wait: Duration::ZERO,
        }
    }
}

/// The default of [`Policy::max_ahead`] (and of `kt --max-ahead`, of the witness and of the
/// auditor): [`kt_core::trust::DEFAULT_MAX_AHEAD_MS`], 5 minutes.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_millis(trust::DEFAULT_MAX_AHEAD_MS);

/// The default time to wait for a quorum.
pub const DEFAULT_QUORUM_WAIT: Duration = Duration::from_secs(10);

/// How often a checkpoint is asked for again while its cosignatures arrive.
const QUORUM_POLL: Duration = Duration::from_millis(50);

/// Milliseconds since the Unix epoch by the local clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A client with a trusted state on disk.
#[derive(Debug)]
pub struct LogClient {
    api: LogApi,
    state: TrustedStateFile,
    policy: Policy,
}

impl LogClient {
    /// Connects to `server` and loads (or starts) the trusted state in `state_path` for the log
    /// whose verifier key is `log_key`.
    pub async fn connect(
        server: &str,
        log_key: &str,
        state_path: impl Into<std::path::PathBuf>,
    ) -> Result<Self, ClientError> {
        Self::connect_tls(server, log_key, state_path, &TlsOptions::default()).await
    }

    /// [`LogClient::connect`] with TLS options for an `https://` server.
    pub async fn connect_tls(
        server: &str,
        log_key: &str,
        state_path: impl Into<std::path::PathBuf>,
        tls: &TlsOptions,
    ) -> Result<Self, ClientError> {
        let api = LogApi::connect_tls(server, log_key, tls).await?;
        let state = TrustedStateFile::open(state_path.into(), api.verifier())?;
        Ok(LogClient {
            api,
            state,
            policy: Policy::default(),
        })
    }

    /// Requires `policy` of every checkpoint from now on.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The transport, for callers that need raw reads (the auditor).
    pub fn api(&self) -> &LogApi {
        &self.api
    }

    /// The last verified checkpoint, if any.
    pub fn trusted(&self) -> Option<&SignedCheckpoint> {
        self.state.checkpoint()
    }

    /// Fetches the latest checkpoint and moves the trusted state to it after checking consistency.
    pub async fn refresh(&mut self) -> Result<Refresh, ClientError> {
        let latest = self.api.checkpoint(None).await?;
        self.accept(latest, Latest).await
    }

    /// Verifies `new` against the trusted state and, if it is newer, makes it the trusted state.
    /// A server's *latest* checkpoint older than the trusted one is a rollback. An older
    /// checkpoint that came with a receipt (the epoch an append was sequenced in, while another
    /// call already saw a newer one) must be consistent with the trusted state and leaves it
    /// unchanged.
    async fn accept(&mut self, new: SignedCheckpoint, kind: Seen) -> Result<Refresh, ClientError> {
        let pending = self.check(new, kind).await?;
        self.commit(pending)
    }

    /// The step of [`LogClient::accept`] without writing the state: what the trusted state
    /// becomes once the caller has verified everything else.
    async fn check(&self, new: SignedCheckpoint, kind: Seen) -> Result<Pending, ClientError> {
        let new = self.require_policy(new, kind).await?;
        let checked = new.clone();
        let Some(trusted) = self.state.checkpoint().cloned() else {
            return Ok(Pending {
                refresh: Refresh::FirstUse(new),
                store: true,
                checked,
            });
        };
        let (t, n) = (trusted.checkpoint(), new.checkpoint());
        if kind != Latest && n.epoch < t.epoch && n.size <= t.size && n.origin == t.origin {
            // An older checkpoint (say, the one an append was sequenced in while another call
            // already saw a newer one, or one asked for by epoch): it must be a prefix of what we
            // trust. The trusted checkpoint must be a valid step from the older one.
            let proof = self.consistency(n.size, t.size).await?;
            trust::advance(&new, &trusted, &proof)?;
            // What the answer says about epoch n is only as good as its map root: the trusted
            // checkpoint must commit to this very body, through the chain of `prev` links.
            self.check_chain(&trusted, &new).await?;
            return Ok(Pending {
                refresh: Refresh::Unchanged(trusted),
                store: false,
                checked,
            });
        }
        let proof = if t.size < n.size && n.epoch > t.epoch {
            self.consistency(t.size, n.size).await?
        } else {
            Vec::new()
        };
        Ok(match trust::advance(&trusted, &new, &proof)? {
            Step::Same => Pending {
                refresh: Refresh::Unchanged(trusted),
                store: false,
                checked,
            },
            Step::Advanced(next) => {
                // A jump over epochs the client never saw: their bodies must link too.
                self.check_chain(&trusted, &next).await?;
                Pending {
                    refresh: Refresh::Advanced {
                        from: trusted,
                        to: next,
                    },
                    store: true,
                    checked,
                }
            }
        })
    }

    /// Checks the `prev` links between two checkpoints of the log more than one epoch apart
    /// (`docs/protocol.md` §6): fetches the bodies of the epochs from the older one's up to the
    /// one before the newer one's and verifies them with [`trust::verify_chain`]. Nothing to do
    /// for the same or consecutive epochs ([`trust::advance`] checks those). Either may be the
    /// trusted one; it only names the notes in the evidence. Log consistency is the caller's.
    pub async fn check_chain(
        &self,
        trusted: &SignedCheckpoint,
        other: &SignedCheckpoint,
    ) -> Result<(), ClientError> {
        let (a, b) = (trusted.checkpoint().epoch, other.checkpoint().epoch);
        let (older, newer) = (a.min(b), a.max(b));
        if newer - older < 2 {
            return Ok(());
        }
        let chain = self.api.checkpoint_bodies(older, newer - 1).await?;
        trust::verify_chain(trusted, other, &chain).map_err(|e| match e {
            ChainRefusal::Violation(v) => v.into(),
            ChainRefusal::BadChain(source) => {
                let notes = if a < b {
                    [trusted.note().to_owned(), other.note().to_owned()]
                } else {
                    [other.note().to_owned(), trusted.note().to_owned()]
                };
                ClientError::BadChain {
                    from: older,
                    to: newer,
                    notes,
                    source,
                }
            }
        })
    }

    /// Applies the [`Policy`] to a signature-checked checkpoint: not dated in the future (any
    /// checkpoint), fresh enough (unless asked for by epoch), and cosigned by enough of the policy's witnesses. While the quorum is short,
    /// asks for the checkpoint of the same epoch again (cosignatures arrive after signing) for up
    /// to `quorum_wait`; a different body for the epoch is a fork. Returns the checkpoint with
    /// the most cosignatures seen.
    async fn require_policy(
        &self,
        mut new: SignedCheckpoint,
        kind: Seen,
    ) -> Result<SignedCheckpoint, ClientError> {
        let epoch = new.checkpoint().epoch;
        self.not_ahead(&new)?;
        if let (Some(max), true) = (self.policy.max_age, kind != Seen::Past) {
            let age_ms = now_ms().saturating_sub(new.checkpoint().time_ms);
            let max_ms = max.as_millis() as u64;
            if age_ms > max_ms {
                return Err(ClientError::Stale {
                    epoch,
                    age_ms,
                    max_ms,
                });
            }
        }
        let Some(witnesses) = &self.policy.witnesses else {
            return Ok(new);
        };
        let started = Instant::now();
        loop {
            let note = Note::parse(new.note().as_bytes()).map_err(CheckpointError::from)?;
            match witnesses.check(&note) {
                Ok(_) => return Ok(new),
                Err(CosignatureError::NoQuorum { found, threshold })
                    if started.elapsed() >= self.policy.quorum_wait =>
                {
                    return Err(ClientError::NoQuorum {
                        epoch,
                        found,
                        threshold,
                        waited_ms: started.elapsed().as_millis() as u64,
                    });
                }
                Err(CosignatureError::NoQuorum { .. }) => {}
                Err(e) => return Err(ClientError::Gossip(e.to_string())),
            }
            tokio::time::sleep(QUORUM_POLL).await;
            let again = self.api.checkpoint(Some(epoch)).await?;
            if let Err(v) = trust::advance(&new, &again, &[]) {
                return Err(v.into());
            }
            new = again;
        }
    }

    /// [`trust::check_not_ahead`] against the local clock and [`Policy::max_ahead`].
    fn not_ahead(&self, cp: &SignedCheckpoint) -> Result<(), ClientError> {
        let max_ms = self.policy.max_ahead.as_millis() as u64;
        trust::check_not_ahead(cp.checkpoint(), now_ms(), max_ms).map_err(|future| {
            ClientError::FromTheFuture {
                future,
                note: cp.note().to_owned(),
            }
        })
    }

    /// Gossip through a witness: `witness_note` is the latest checkpoint the witness `witness`
    /// cosigned (as it serves it, `docs/protocol.md` §13.4). It must carry the log's signature
    /// and a valid cosignature of that witness, not be dated in the future, and be consistent
    /// with the trusted state (an older one a prefix of it, the same epoch the same body, a newer
    /// one an extension). The trusted state does not move. A checkpoint the witness cosigned
    /// that conflicts with ours is a [`ClientError::Violation`]: someone was shown another view.
    ///
    /// The two notes are compared first ([`trust::proof_needed`]): what they prove on their own
    /// (a second body for an epoch, a larger tree at the older epoch, a broken link) is a
    /// violation without asking the server anything, since a lying server would just refuse the
    /// proof. The server is asked for a consistency proof only when the trees' roots need one.
    pub async fn check_witness(
        &self,
        witness: &kt_core::cosignature::CosignatureVerifier,
        witness_note: &[u8],
    ) -> Result<SignedCheckpoint, ClientError> {
        let theirs = self.api.open(witness_note)?;
        let note = Note::parse(theirs.note().as_bytes()).map_err(CheckpointError::from)?;
        witness
            .verify_note(&note)
            .map_err(|e| ClientError::Gossip(e.to_string()))?;
        self.not_ahead(&theirs)?;
        let Some(ours) = self.state.checkpoint().cloned() else {
            return Ok(theirs);
        };
        let (older, newer) = if theirs.checkpoint().epoch < ours.checkpoint().epoch {
            (&theirs, &ours)
        } else {
            (&ours, &theirs)
        };
        if let Some((from, to)) = trust::proof_needed(older, newer)? {
            let proof = self.consistency(from, to).await?;
            trust::advance(older, newer, &proof)?;
        }
        // Two or more epochs apart, the `prev` links in between decide whether the witness was
        // shown the same map roots as we were (a consistency proof covers the tree only).
        self.check_chain(&ours, &theirs).await?;
        Ok(theirs)
    }

    /// Writes the state a [`LogClient::check`] decided on.
    fn commit(&mut self, pending: Pending) -> Result<Refresh, ClientError> {
        if pending.store {
            self.state.store(pending.refresh.checkpoint())?;
        }
        Ok(pending.refresh)
    }

    async fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ClientError> {
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        self.api.consistency_proof(old, new).await
    }

    /// Appends a message-log record and verifies the receipt: the entry bytes are the ones sent,
    /// the inclusion proof verifies against the signed checkpoint, and that checkpoint is
    /// consistent with the trusted state.
    pub async fn append(
        &mut self,
        namespace: &str,
        payload: Vec<u8>,
    ) -> Result<VerifiedAppend, ClientError> {
        let record = Record::new(Namespace::new(namespace)?, payload)?;
        let receipt = self.api.append(&record).await?;
        if receipt.entry != Entry::Record(record).encode() {
            return Err(ClientError::EntryMismatch);
        }
        let checkpoint = self.api.open(&receipt.checkpoint_note)?;
        // The checkpoint first: a receipt whose checkpoint is not consistent with the trusted
        // state is a fork, with signed evidence, whatever its proof says. It comes back with
        // the cosignatures the witness policy asked for.
        let pending = self.check(checkpoint, Receipt).await?;
        let checkpoint = pending.checked.clone();
        self.commit(pending)?;
        let cp = checkpoint.checkpoint();
        verify_inclusion(
            &leaf_hash(&receipt.entry),
            receipt.index,
            cp.size,
            &receipt.inclusion_proof,
            &cp.root,
        )
        .map_err(|source| ClientError::Proof {
            what: format!("inclusion proof of entry {}", receipt.index),
            source,
        })?;
        Ok(VerifiedAppend {
            index: receipt.index,
            entry: receipt.entry,
            checkpoint,
            inclusion_proof: receipt.inclusion_proof,
        })
    }

    /// Proves that entry `index` is in the latest (verified) checkpoint, and returns it.
    pub async fn prove(&mut self, index: u64) -> Result<VerifiedInclusion, ClientError> {
        let checkpoint = self.refresh().await?.checkpoint().clone();
        let cp = checkpoint.checkpoint();
        if index >= cp.size {
            return Err(ClientError::IndexBeyondTree {
                index,
                size: cp.size,
            });
        }
        let entry = self
            .api
            .entries(index, index + 1)
            .await?
            .pop()
            .expect("entries() returns exactly the range");
        let proof = self.api.inclusion_proof(index, cp.size).await?;
        verify_inclusion(&leaf_hash(&entry), index, cp.size, &proof, &cp.root).map_err(
            |source| ClientError::Proof {
                what: format!("inclusion proof of entry {index}"),
                source,
            },
        )?;
        Ok(VerifiedInclusion {
            index,
            entry,
            inclusion_proof: proof,
            checkpoint,
        })
    }

    /// Re-verifies the stored state against the server: the server must still serve the very
    /// checkpoint we trust for its epoch (otherwise it signed two for one epoch), and its latest
    /// checkpoint must be consistent with it.
    pub async fn verify(&mut self) -> Result<Refresh, ClientError> {
        if let Some(trusted) = self.state.checkpoint().cloned() {
            let epoch = trusted.checkpoint().epoch;
            let served = self.api.checkpoint(Some(epoch)).await?;
            trust::advance(&trusted, &served, &[])?;
        }
        self.refresh().await
    }
}
