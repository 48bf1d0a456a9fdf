//! The key directory and the message log, verified (`docs/protocol.md` §9).
//!
//! [`DirectoryClient`] wraps a [`LogClient`], so directory answers and log reads share one trusted
//! state. Every answer is handled the same way:
//!
//! 1. its checkpoint is opened with the log key ([`LogApi::open`](crate::LogApi::open)) and must
//!    be a valid step from the trusted state, exactly as in [`LogClient::refresh`]: a rollback or
//!    fork is a [`ClientError::Violation`] with the evidence;
//! 2. the answer is checked against that checkpoint by `kt_core::directory::verify`
//!    (`verify_lookup`, `verify_update_receipt`, `verify_history`, `verify_messages`); a failure
//!    is [`ClientError::Answer`];
//! 3. only then is the trusted state written, if the checkpoint is newer.
//!
//! Labels are VRF outputs of identifiers under the log's VRF key (`docs/protocol.md` §9.1), which
//! only the server can compute: every answer about an identifier carries the VRF proof, checked
//! with the pinned VRF public key and the identifier asked about
//! ([`verify_label`](kt_core::directory::verify_label)) before anything else, and the label it
//! gives is the one every map and entry check uses. An answer about another identifier's label
//! therefore never verifies.
//!
//! An update is built here, from a verified lookup of the label (its version and the leaf hash of
//! its latest update, which the new update's `prev` names), signed by the keys the rules require,
//! checked locally against those rules (`rules::apply_update`, so a wrong key or a revoked label
//! is refused before anything is sent), then sent; its receipt must show the log holding exactly
//! the bytes sent and the map naming them. [`DirectoryClient::prepare_rotate`] and
//! [`DirectoryClient::submit`] are separate so a caller can save the new key and the update's leaf
//! hash (see [`crate::keys`]) before the server can possibly have it.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::directory::{
    apply_message, apply_update, check_identifier, verify_history, verify_label, verify_lookup,
    verify_messages, verify_read, verify_update_receipt, AnswerError, DirectoryError,
    HistoryAnswer, KeyUpdate, Label, LabelState, LookupAnswer, Message, Op, ProvenEntry,
    ReadAnswer, Role, UserKey, UserSigner, VerifiedMessage, VerifiedUpdate,
};
use kt_core::entry::Namespace;
use kt_core::hash::Hash;
use kt_core::vrf::{VrfPublicKey, PUBLIC_KEY_LEN};
use kt_proto::directory::{answer_checkpoint, vrf_proof_from_wire};
use kt_proto::v1::directory_client::DirectoryClient as DirectoryRpc;
use kt_proto::v1::messages_client::MessagesClient as MessagesRpc;
use kt_proto::v1::{
    HistoryRequest, LookupRequest, ReadMessagesRequest, SendMessageRequest, UpdateRequest,
};
use tonic::transport::Channel;

use crate::api::MAX_MESSAGE;
use crate::keys::{Confirmed, MadeUpdate};
use crate::{BadAnswer, ClientError, LogClient, Pending, Refresh, Seen};

/// Default number of messages per read, as the server applies it to `limit = 0`.
pub const DEFAULT_READ_LIMIT: u32 = 100;
/// Most messages one read may ask for.
pub const MAX_READ_LIMIT: u32 = 1_000;

/// The log's VRF public key from `value`: 64 hex digits, or a file holding them (ktd writes
/// `<data_dir>/vrf.pub`). The key must pass RFC 9381 `validate_key`.
pub fn read_vrf_key(value: &str) -> Result<VrfPublicKey, String> {
    let parse = |text: &str| -> Option<Result<VrfPublicKey, String>> {
        let bytes: [u8; PUBLIC_KEY_LEN] = hex::decode(text.trim()).ok()?.try_into().ok()?;
        Some(VrfPublicKey::from_bytes(&bytes).map_err(|e| format!("VRF key {text:?}: {e}")))
    };
    if let Some(key) = parse(value) {
        return key;
    }
    let text = std::fs::read_to_string(value).map_err(|e| {
        format!("--vrf-key {value:?} is neither 64 hex digits nor a readable file: {e}")
    })?;
    parse(&text).unwrap_or_else(|| Err(format!("{value}: a VRF key file holds 64 hex digits")))
}

/// A verified lookup: the label's latest update under `checkpoint`, or proof that it has none.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub identifier: String,
    pub label: Label,
    /// The label's latest KeyUpdate; `None` when the label was never registered (a verified
    /// non-membership proof).
    pub current: Option<VerifiedUpdate>,
    /// The label's message count in the map's value: the sequence of its latest message (0 if
    /// none), so the next message is `message_count + 1`.
    pub message_count: u64,
    /// The answer's checkpoint: signed, and consistent with the trusted state.
    pub checkpoint: SignedCheckpoint,
}

impl Lookup {
    /// The label's current key: `None` if it was never registered or its latest update is a
    /// revoke.
    pub fn key(&self) -> Option<&UserKey> {
        self.current.as_ref().and_then(|c| c.update.key())
    }

    /// The label's state in the directory, as the rules see it.
    pub fn state(&self) -> Option<LabelState> {
        self.current.as_ref().map(label_state)
    }
}

/// A label's state after its verified latest update (what the map's value stands for).
pub fn label_state(latest: &VerifiedUpdate) -> LabelState {
    LabelState {
        version: latest.update.version(),
        leaf_hash: latest.leaf_hash,
        index: latest.index,
        key: latest.update.key().cloned(),
        recovered: latest.update.op() == Op::Recover,
    }
}

/// A verified history: every version of the label, version 1 first.
#[derive(Debug, Clone)]
pub struct VerifiedHistory {
    pub identifier: String,
    pub label: Label,
    /// Empty for a label the map proves absent.
    pub versions: Vec<VerifiedUpdate>,
    /// The state the versions lead to (`None` when absent).
    pub state: Option<LabelState>,
    pub checkpoint: SignedCheckpoint,
}

/// An update signed and checked against the directory's verified state, ready to send.
#[derive(Debug, Clone)]
pub struct PreparedUpdate {
    identifier: String,
    update: KeyUpdate,
}

impl PreparedUpdate {
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    pub fn update(&self) -> &KeyUpdate {
        &self.update
    }

    /// The leaf hash the update will have in the log: what a monitor recognizes it by.
    pub fn leaf_hash(&self) -> Hash {
        self.update.leaf_hash()
    }
}

/// A verified receipt of an update: the log holds exactly the update sent, and the map names it.
#[derive(Debug, Clone)]
pub struct UpdateReceipt {
    pub update: VerifiedUpdate,
    pub checkpoint: SignedCheckpoint,
}

/// A verified receipt of a message.
#[derive(Debug, Clone)]
pub struct MessageReceipt {
    pub message: VerifiedMessage,
    pub checkpoint: SignedCheckpoint,
}

/// Verified messages of one author, consecutive from `from`, each signed by the author's key at
/// its log index.
#[derive(Debug, Clone)]
pub struct Messages {
    pub identifier: String,
    pub from: u64,
    pub messages: Vec<VerifiedMessage>,
    /// How many messages the author has under `checkpoint` (the map's count): the read has every
    /// message from `from` on iff the last one read has this sequence (or there are none).
    pub count: u64,
    pub checkpoint: SignedCheckpoint,
}

/// A version of a label that the owner's devices did not make (see [`foreign_versions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub version: u64,
    pub op: Op,
    pub index: u64,
    pub leaf_hash: Hash,
    pub key: Option<UserKey>,
    pub time_ms: u64,
}

impl Alert {
    /// A `recover` is authorized by the provider, not by any key of the owner: the one update an
    /// operator (or whoever holds the provider's token) can make alone.
    pub fn is_recover(&self) -> bool {
        self.op == Op::Recover
    }
}

/// The monitor's question: which versions of a verified history were not made by this device
/// (`made` holds the leaf hashes of the updates it made). Every such version is an alert.
pub fn foreign_versions(versions: &[VerifiedUpdate], made: &HashSet<Hash>) -> Vec<Alert> {
    versions
        .iter()
        .filter(|v| !made.contains(&v.leaf_hash))
        .map(|v| Alert {
            version: v.update.version(),
            op: v.update.op(),
            index: v.index,
            leaf_hash: v.leaf_hash,
            key: v.update.key().cloned(),
            time_ms: v.update.time_ms(),
        })
        .collect()
}

/// What a verified history holds where a confirmed update of this device should be (see
/// [`RolledBack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub op: Op,
    pub index: u64,
    pub leaf_hash: Hash,
}

/// An update this device made and saw confirmed by a verified receipt, which a verified history
/// proven under the receipt's epoch or a later one does not hold (see [`missing_confirmed`]).
///
/// The map named the update when the receipt was made, and a label's versions only ever grow, so
/// no honest directory can lose it: whoever signs the checkpoints served a map that rolled the
/// label back (or a history whose version replaces it), and every client of that map is shown
/// the label as it was before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub version: u64,
    pub op: Op,
    pub leaf_hash: Hash,
    /// Where the receipt proved it.
    pub confirmed: Confirmed,
    /// The history's version `version` instead, if it has one (`None`: the history ends before).
    pub instead: Option<Replacement>,
    /// How many versions the history holds.
    pub history_versions: u64,
}

/// The monitor's second question: which updates this device made and saw confirmed (by a receipt
/// that verified, in an epoch no later than `epoch`, the epoch of the history's checkpoint) are
/// not in the verified history `versions` at their version with their leaf hash. Every such
/// update is an alert.
///
/// Updates without a verified receipt are not required: one whose answer never came may never
/// have landed, and is no alarm. Updates confirmed after `epoch` are not required either: a
/// history under an older checkpoint (say, fetched just before this device's own rotation landed)
/// cannot hold them yet; the next history will.
pub fn missing_confirmed(
    versions: &[VerifiedUpdate],
    made: &[MadeUpdate],
    epoch: u64,
) -> Vec<RolledBack> {
    made.iter()
        .filter_map(|m| {
            let confirmed = m.confirmed.filter(|c| c.epoch <= epoch)?;
            // `verify_history` checked that version k sits at position k - 1.
            let at = usize::try_from(m.version)
                .ok()
                .and_then(|v| v.checked_sub(1))
                .and_then(|i| versions.get(i))
                .filter(|v| v.update.version() == m.version);
            if at.is_some_and(|v| v.leaf_hash == m.leaf_hash) {
                return None;
            }
            Some(RolledBack {
                version: m.version,
                op: m.op,
                leaf_hash: m.leaf_hash,
                confirmed,
                instead: at.map(|v| Replacement {
                    op: v.update.op(),
                    index: v.index,
                    leaf_hash: v.leaf_hash,
                }),
                history_versions: versions.len() as u64,
            })
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The directory and message services of one server, verified against one trusted state.
#[derive(Debug)]
pub struct DirectoryClient {
    log: LogClient,
    directory: DirectoryRpc<Channel>,
    messages: MessagesRpc<Channel>,
    /// The log's VRF public key: labels are checked with it.
    vrf_key: VrfPublicKey,
}

impl DirectoryClient {
    /// Connects to `server` with the trusted state in `state_path` (see [`LogClient::connect`])
    /// and the log's VRF public key.
    pub async fn connect(
        server: &str,
        log_key: &str,
        vrf_key: VrfPublicKey,
        state_path: impl Into<std::path::PathBuf>,
    ) -> Result<Self, ClientError> {
        Ok(DirectoryClient::new(
            LogClient::connect(server, log_key, state_path).await?,
            vrf_key,
        ))
    }

    /// [`DirectoryClient::connect`] with TLS options for an `https://` server.
    pub async fn connect_tls(
        server: &str,
        log_key: &str,
        vrf_key: VrfPublicKey,
        state_path: impl Into<std::path::PathBuf>,
        tls: &crate::TlsOptions,
    ) -> Result<Self, ClientError> {
        Ok(DirectoryClient::new(
            LogClient::connect_tls(server, log_key, state_path, tls).await?,
            vrf_key,
        ))
    }

    /// The directory of the server `log` is connected to, sharing its trusted state; `vrf_key`
    /// is the log's VRF public key, published with its log key.
    pub fn new(log: LogClient, vrf_key: VrfPublicKey) -> Self {
        let channel = log.api().channel();
        DirectoryClient {
            directory: DirectoryRpc::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            messages: MessagesRpc::new(channel).max_decoding_message_size(MAX_MESSAGE),
            log,
            vrf_key,
        }
    }

    pub fn vrf_key(&self) -> &VrfPublicKey {
        &self.vrf_key
    }

    pub fn log(&self) -> &LogClient {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut LogClient {
        &mut self.log
    }

    /// Opens an answer's checkpoint and decides its step from the trusted state (nothing is
    /// written yet).
    async fn checkpoint(
        &self,
        wire: Option<&kt_proto::v1::Checkpoint>,
        kind: Seen,
    ) -> Result<(SignedCheckpoint, Pending), ClientError> {
        let note = answer_checkpoint(wire)?;
        let checkpoint = self.log.api.open(&note)?;
        let pending = self.log.check(checkpoint.clone(), kind).await?;
        Ok((checkpoint, pending))
    }

    /// Runs a core verification of an answer under its checkpoint, then writes the step.
    fn finish<T>(
        &mut self,
        checkpoint: &SignedCheckpoint,
        pending: Pending,
        what: impl FnOnce() -> String,
        verify: impl FnOnce(&Checkpoint) -> Result<T, AnswerError>,
    ) -> Result<T, ClientError> {
        let verified = verify(checkpoint.checkpoint()).map_err(|source| {
            ClientError::Answer(Box::new(BadAnswer {
                what: what(),
                checkpoint_note: checkpoint.note().to_owned(),
                source,
            }))
        })?;
        self.log.commit(pending)?;
        Ok(verified)
    }

    /// The current key of `identifier` (or at `epoch`), verified.
    ///
    /// The answer for an epoch must carry that epoch's checkpoint. An epoch older than the
    /// trusted one does not roll the trusted state back: the trusted checkpoint must be provably
    /// consistent with it (a consistency proof), and stays trusted.
    pub async fn lookup(
        &mut self,
        identifier: &str,
        epoch: Option<u64>,
    ) -> Result<Lookup, ClientError> {
        check_identifier(identifier)?;
        let resp = self
            .directory
            .clone()
            .lookup(LookupRequest {
                identifier: identifier.to_owned(),
                epoch,
            })
            .await?
            .into_inner();
        let note = answer_checkpoint(resp.checkpoint.as_ref())?;
        let checkpoint = self.log.api.open(&note)?;
        if let Some(epoch) = epoch {
            if checkpoint.checkpoint().epoch != epoch {
                return Err(ClientError::Unexpected(format!(
                    "asked for a lookup at epoch {epoch}, got the checkpoint of epoch {}",
                    checkpoint.checkpoint().epoch
                )));
            }
        }
        let answer = LookupAnswer::try_from(&resp)?;
        let vrf_proof = vrf_proof_from_wire(&resp.vrf_proof)?;
        let kind = if epoch.is_some() {
            Seen::Past
        } else {
            Seen::Latest
        };
        let pending = self.log.check(checkpoint.clone(), kind).await?;
        let vrf_key = &self.vrf_key.clone();
        let (label, current, message_count) = self.finish(
            &checkpoint,
            pending,
            || format!("lookup of {identifier}"),
            |cp| {
                let label = verify_label(vrf_key, identifier, &vrf_proof)?;
                let current = verify_lookup(cp, &label, &answer)?;
                // Verified by `verify_lookup` just now; read again for the message count.
                let value = kt_core::map::verify(&cp.map_root, &label, &answer.map_proof)?;
                Ok((label, current, value.map_or(0, |v| v.message_count)))
            },
        )?;
        Ok(Lookup {
            identifier: identifier.to_owned(),
            label,
            current,
            message_count,
            checkpoint,
        })
    }

    /// Every version of `identifier`, verified: each in the log, each following the previous by
    /// the directory's rules, the last the one the map names.
    pub async fn history(&mut self, identifier: &str) -> Result<VerifiedHistory, ClientError> {
        check_identifier(identifier)?;
        let resp = self
            .directory
            .clone()
            .history(HistoryRequest {
                identifier: identifier.to_owned(),
            })
            .await?
            .into_inner();
        let (checkpoint, pending) = self
            .checkpoint(resp.checkpoint.as_ref(), Seen::Latest)
            .await?;
        let answer = HistoryAnswer::try_from(&resp)?;
        let vrf_proof = vrf_proof_from_wire(&resp.vrf_proof)?;
        let vrf_key = &self.vrf_key.clone();
        let (label, (versions, state)) = self.finish(
            &checkpoint,
            pending,
            || format!("history of {identifier}"),
            |cp| {
                let label = verify_label(vrf_key, identifier, &vrf_proof)?;
                Ok((label, verify_history(cp, &label, &answer)?))
            },
        )?;
        Ok(VerifiedHistory {
            identifier: identifier.to_owned(),
            label,
            versions,
            state,
            checkpoint,
        })
    }

    /// Builds, signs and checks an update of `identifier` against its verified current state.
    async fn prepare(
        &mut self,
        identifier: &str,
        op: Op,
        previous: Option<&UserSigner>,
        new: Option<&UserSigner>,
    ) -> Result<PreparedUpdate, ClientError> {
        let current = self.lookup(identifier, None).await?;
        let state = current.state();
        let (version, prev) = match (&state, op) {
            // A register is always version 1; the rules refuse it for a registered label.
            (_, Op::Register) | (None, _) => (1, [0; 32]),
            (Some(s), _) => (s.version.saturating_add(1), s.leaf_hash),
        };
        let refused = |reason| ClientError::Refused {
            op: op.to_string(),
            identifier: identifier.to_owned(),
            reason,
        };
        if state.is_none() && op != Op::Register {
            return Err(refused(kt_core::directory::RuleError::NotRegistered));
        }
        let mut update = KeyUpdate::new(
            current.label,
            version,
            prev,
            op,
            new.map(UserSigner::public),
            now_ms(),
        )?;
        if let Some(signer) = previous {
            if let Some(key) = state.as_ref().and_then(|s| s.key.as_ref()) {
                if *key != signer.public() {
                    return Err(ClientError::NotCurrentKey {
                        identifier: identifier.to_owned(),
                        version: version - 1,
                    });
                }
            }
            update = update.sign(Role::PreviousKey, signer)?;
        }
        if let Some(signer) = new {
            update = update.sign(Role::NewKey, signer)?;
        }
        apply_update(state.as_ref(), &update, update.leaf_hash(), 0).map_err(refused)?;
        Ok(PreparedUpdate {
            identifier: identifier.to_owned(),
            update,
        })
    }

    /// Version 1 of `identifier`, signed by `signer` (proof of possession).
    pub async fn prepare_register(
        &mut self,
        identifier: &str,
        signer: &UserSigner,
    ) -> Result<PreparedUpdate, ClientError> {
        self.prepare(identifier, Op::Register, None, Some(signer))
            .await
    }

    /// A rotation from the current key `old` to `new`, signed by both.
    pub async fn prepare_rotate(
        &mut self,
        identifier: &str,
        old: &UserSigner,
        new: &UserSigner,
    ) -> Result<PreparedUpdate, ClientError> {
        self.prepare(identifier, Op::Rotate, Some(old), Some(new))
            .await
    }

    /// A revocation, signed by the current key.
    pub async fn prepare_revoke(
        &mut self,
        identifier: &str,
        signer: &UserSigner,
    ) -> Result<PreparedUpdate, ClientError> {
        self.prepare(identifier, Op::Revoke, Some(signer), None)
            .await
    }

    /// A provider-authorized recovery to `new`, signed by `new` only.
    pub async fn prepare_recover(
        &mut self,
        identifier: &str,
        new: &UserSigner,
    ) -> Result<PreparedUpdate, ClientError> {
        self.prepare(identifier, Op::Recover, None, Some(new)).await
    }

    /// Sends a prepared update and verifies its receipt. `provider_token` is sent as
    /// `authorization: Bearer <token>` metadata (register and recover need it; the server
    /// answers `UNAUTHENTICATED` without it).
    pub async fn submit(
        &mut self,
        prepared: &PreparedUpdate,
        provider_token: Option<&str>,
    ) -> Result<UpdateReceipt, ClientError> {
        let op = prepared.update.op();
        // Register and recover name the identifier the provider vouches for (the server checks
        // that the entry's label is its VRF label); rotate and revoke need not, the label's
        // current key authorizes them.
        let vouched = matches!(op, Op::Register | Op::Recover);
        let mut request = tonic::Request::new(UpdateRequest {
            entry: prepared.update.encode(),
            identifier: if vouched {
                prepared.identifier.clone()
            } else {
                String::new()
            },
        });
        if let Some(token) = provider_token {
            let mut value =
                tonic::metadata::MetadataValue::try_from(format!("Bearer {}", token.trim()))
                    .map_err(|_| ClientError::BadToken)?;
            value.set_sensitive(true);
            request.metadata_mut().insert("authorization", value);
        }
        let mut rpc = self.directory.clone();
        let resp = match prepared.update.op() {
            Op::Register => rpc.register(request).await,
            Op::Rotate => rpc.rotate(request).await,
            Op::Revoke => rpc.revoke(request).await,
            Op::Recover => rpc.recover(request).await,
        }?
        .into_inner();
        let (checkpoint, pending) = self
            .checkpoint(resp.checkpoint.as_ref(), Seen::Receipt)
            .await?;
        let answer = LookupAnswer::try_from(&resp)?;
        let vrf_proof = if vouched {
            Some(vrf_proof_from_wire(&resp.vrf_proof)?)
        } else {
            None
        };
        let vrf_key = &self.vrf_key.clone();
        let update = self.finish(
            &checkpoint,
            pending,
            || {
                format!(
                    "receipt for the {} of {}",
                    prepared.update.op(),
                    prepared.identifier
                )
            },
            |cp| {
                // The label came from a verified lookup; the receipt's proof must give it too.
                if let Some(proof) = &vrf_proof {
                    if verify_label(vrf_key, &prepared.identifier, proof)?
                        != *prepared.update.label()
                    {
                        return Err(AnswerError::WrongLabel {
                            index: answer.entry.as_ref().map_or(0, |e| e.index),
                        });
                    }
                }
                verify_update_receipt(cp, &prepared.update, &answer)
            },
        )?;
        Ok(UpdateReceipt { update, checkpoint })
    }

    /// Registers `identifier` with `signer`'s key: [`Self::prepare_register`] then
    /// [`Self::submit`].
    pub async fn register(
        &mut self,
        identifier: &str,
        signer: &UserSigner,
        provider_token: Option<&str>,
    ) -> Result<UpdateReceipt, ClientError> {
        let prepared = self.prepare_register(identifier, signer).await?;
        self.submit(&prepared, provider_token).await
    }

    /// Rotates `identifier` from `old` (its current key) to `new`.
    pub async fn rotate(
        &mut self,
        identifier: &str,
        old: &UserSigner,
        new: &UserSigner,
    ) -> Result<UpdateReceipt, ClientError> {
        let prepared = self.prepare_rotate(identifier, old, new).await?;
        self.submit(&prepared, None).await
    }

    /// Revokes `identifier`'s key (`signer` must be it).
    pub async fn revoke(
        &mut self,
        identifier: &str,
        signer: &UserSigner,
    ) -> Result<UpdateReceipt, ClientError> {
        let prepared = self.prepare_revoke(identifier, signer).await?;
        self.submit(&prepared, None).await
    }

    /// Recovers `identifier` to `new` with the provider's authorization.
    pub async fn recover(
        &mut self,
        identifier: &str,
        new: &UserSigner,
        provider_token: Option<&str>,
    ) -> Result<UpdateReceipt, ClientError> {
        let prepared = self.prepare_recover(identifier, new).await?;
        self.submit(&prepared, provider_token).await
    }

    /// Accepts a checkpoint from [`LogApi::watch`](crate::LogApi::watch): a newer one advances
    /// the trusted state as a refresh would; one that another call has already overtaken must be
    /// consistent with the trusted state and leaves it as it is.
    pub async fn follow(&mut self, checkpoint: SignedCheckpoint) -> Result<Refresh, ClientError> {
        self.log.accept(checkpoint, Seen::Past).await
    }

    /// Messages of `identifier` from sequence `from` (≥ 1) on, at most `limit` (0: the server's
    /// default of 100), verified by `kt_core::directory::verify_read`: each in the log, by that
    /// author, numbered consecutively from `from`, signed by the author's key at its log index
    /// (a forged one is [`AnswerError::ForgedMessage`], with the evidence), and complete: the
    /// map's value for the author gives its message count, and the read asks again until it has
    /// every message up to the count or `limit` of them. A server that hides the newest messages
    /// is refused ([`AnswerError::IncompleteRead`], [`AnswerError::LastMessageMismatch`]).
    pub async fn read_messages(
        &mut self,
        identifier: &str,
        from: u64,
        limit: u32,
    ) -> Result<Messages, ClientError> {
        check_identifier(identifier)?;
        if from == 0 {
            return Err(DirectoryError::ZeroSequence.into());
        }
        let want = if limit == 0 {
            DEFAULT_READ_LIMIT
        } else {
            limit
        };
        let mut messages: Vec<VerifiedMessage> = Vec::new();
        loop {
            let next = from + messages.len() as u64;
            let (page, count, checkpoint) = self
                .read_page(identifier, next, want - messages.len() as u32)
                .await?;
            // `verify_read` refuses an empty page before the count, so each round reads more;
            // checked again here so that no answer can keep this loop going.
            if page.is_empty() && next <= count {
                return Err(ClientError::Unexpected(format!(
                    "the read from message {next} came back empty, but the author has {count}"
                )));
            }
            messages.extend(page);
            let last = from + messages.len() as u64 - 1;
            if messages.len() as u32 >= want || last >= count {
                return Ok(Messages {
                    identifier: identifier.to_owned(),
                    from,
                    messages,
                    count,
                    checkpoint,
                });
            }
        }
    }

    /// One Read call from `from`, at most `limit` messages, verified.
    async fn read_page(
        &mut self,
        identifier: &str,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<VerifiedMessage>, u64, SignedCheckpoint), ClientError> {
        let resp = self
            .messages
            .clone()
            .read(ReadMessagesRequest {
                author: identifier.to_owned(),
                from_sequence: from,
                limit,
            })
            .await?
            .into_inner();
        if resp.messages.len() > limit as usize {
            return Err(ClientError::Unexpected(format!(
                "asked for at most {limit} messages, got {}",
                resp.messages.len()
            )));
        }
        let (checkpoint, pending) = self
            .checkpoint(resp.checkpoint.as_ref(), Seen::Latest)
            .await?;
        let answer = ReadAnswer::try_from(&resp)?;
        let vrf_proof = vrf_proof_from_wire(&resp.vrf_proof)?;
        let vrf_key = &self.vrf_key.clone();
        let read = self.finish(
            &checkpoint,
            pending,
            || format!("messages of {identifier} from {from}"),
            |cp| {
                let label = verify_label(vrf_key, identifier, &vrf_proof)?;
                verify_read(cp, &label, from, &answer)
            },
        )?;
        Ok((read.messages, read.count, checkpoint))
    }

    /// The sequence number of `identifier`'s latest message (0 if none): the message count in
    /// the map's value for the label, from a verified lookup.
    pub async fn last_sequence(&mut self, identifier: &str) -> Result<u64, ClientError> {
        Ok(self.lookup(identifier, None).await?.message_count)
    }

    /// Sends a message as `identifier` with the next sequence number: one after the map's
    /// message count ([`Self::last_sequence`]). Use [`Self::send_message_at`] when the sequence
    /// is known.
    pub async fn send_message(
        &mut self,
        identifier: &str,
        namespace: &str,
        payload: Vec<u8>,
        signer: &UserSigner,
    ) -> Result<MessageReceipt, ClientError> {
        let last = self.last_sequence(identifier).await?;
        let next = last.checked_add(1).ok_or_else(|| {
            ClientError::Unexpected("the author's sequence counter is exhausted".into())
        })?;
        self.send_message_at(identifier, namespace, payload, signer, next)
            .await
    }

    /// Sends a message as `identifier` with sequence `sequence`, signed by `signer`, which must
    /// be the identifier's current key (checked with a verified lookup before sending), and
    /// verifies the receipt: the log holds exactly this message.
    pub async fn send_message_at(
        &mut self,
        identifier: &str,
        namespace: &str,
        payload: Vec<u8>,
        signer: &UserSigner,
        sequence: u64,
    ) -> Result<MessageReceipt, ClientError> {
        let namespace = Namespace::new(namespace)?;
        let current = self.lookup(identifier, None).await?;
        let message = Message::sign(namespace, current.label, sequence, payload, signer)?;
        let refused = |reason| ClientError::Refused {
            op: "message".into(),
            identifier: identifier.to_owned(),
            reason,
        };
        let state = current.state();
        if let Some(key) = current.key() {
            if *key != signer.public() {
                return Err(ClientError::NotCurrentKey {
                    identifier: identifier.to_owned(),
                    version: state.as_ref().map_or(0, |s| s.version),
                });
            }
        }
        apply_message(state.as_ref(), sequence - 1, &message).map_err(refused)?;
        let resp = self
            .messages
            .clone()
            .send(SendMessageRequest {
                entry: message.encode(),
            })
            .await?
            .into_inner();
        let (checkpoint, pending) = self
            .checkpoint(resp.checkpoint.as_ref(), Seen::Receipt)
            .await?;
        let proven = ProvenEntry::try_from(
            resp.entry
                .as_ref()
                .ok_or(kt_proto::WireError::MissingField("entry"))?,
        )?;
        let label = current.label;
        let verified = self.finish(
            &checkpoint,
            pending,
            || format!("receipt for message {sequence} of {identifier}"),
            |cp| {
                let mut verified = verify_messages(cp, &label, sequence, &[proven])?;
                match verified.pop() {
                    Some(v) if v.message == message => Ok(v),
                    _ => Err(AnswerError::NotOurEntry),
                }
            },
        )?;
        Ok(MessageReceipt {
            message: verified,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::hash::leaf_hash;

    fn version(n: u64, op: Op, hash_byte: u8) -> VerifiedUpdate {
        let signer = UserSigner::ed25519_from_seed([n as u8; 32]);
        let prev = if n == 1 { [0; 32] } else { [9; 32] };
        let key = (op != Op::Revoke).then(|| signer.public());
        let update = KeyUpdate::new(
            Label::from_identifier("alice@example.com").unwrap(),
            n,
            prev,
            op,
            key,
            1_000 + n,
        )
        .unwrap();
        VerifiedUpdate {
            update,
            index: n * 10,
            leaf_hash: leaf_hash(&[hash_byte]),
        }
    }

    #[test]
    fn foreign_versions_are_those_not_made_here() {
        let history = vec![
            version(1, Op::Register, 1),
            version(2, Op::Rotate, 2),
            version(3, Op::Recover, 3),
            version(4, Op::Revoke, 4),
        ];
        let made: HashSet<Hash> = [leaf_hash(&[1]), leaf_hash(&[4])].into();
        let alerts = foreign_versions(&history, &made);
        assert_eq!(
            alerts.iter().map(|a| a.version).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(!alerts[0].is_recover());
        assert!(alerts[1].is_recover());
        assert_eq!(alerts[1].index, 30);
        assert_eq!(alerts[1].time_ms, 1_003);
        assert_eq!(alerts[0].key, history[1].update.key().cloned());

        let all: HashSet<Hash> = (1..=4).map(|b| leaf_hash(&[b])).collect();
        assert!(foreign_versions(&history, &all).is_empty());
        assert_eq!(foreign_versions(&history, &HashSet::new()).len(), 4);
    }

    fn made(history: &[VerifiedUpdate], confirmed_epoch: Option<u64>) -> Vec<MadeUpdate> {
        history
            .iter()
            .map(|v| MadeUpdate {
                leaf_hash: v.leaf_hash,
                op: v.update.op(),
                version: v.update.version(),
                confirmed: confirmed_epoch.map(|epoch| Confirmed {
                    epoch,
                    index: v.index,
                }),
            })
            .collect()
    }

    #[test]
    fn confirmed_updates_present_in_the_history_raise_nothing() {
        let history = vec![version(1, Op::Register, 1), version(2, Op::Rotate, 2)];
        let mine = made(&history, Some(5));
        assert!(missing_confirmed(&history, &mine, 5).is_empty());
        assert!(missing_confirmed(&history, &mine, 9).is_empty());
        // Later versions by others are `foreign_versions`' business, not this one's.
        let longer = [history.clone(), vec![version(3, Op::Recover, 3)]].concat();
        assert!(missing_confirmed(&longer, &mine, 9).is_empty());
    }

    #[test]
    fn a_confirmed_update_missing_from_a_shorter_history_is_rolled_back() {
        let history = vec![version(1, Op::Register, 1), version(2, Op::Rotate, 2)];
        let mine = made(&history, Some(5));
        // The map names version 1 again: the history ends before the confirmed rotation.
        let alerts = missing_confirmed(&history[..1], &mine, 7);
        assert_eq!(
            alerts,
            vec![RolledBack {
                version: 2,
                op: Op::Rotate,
                leaf_hash: leaf_hash(&[2]),
                confirmed: Confirmed {
                    epoch: 5,
                    index: 20
                },
                instead: None,
                history_versions: 1,
            }]
        );
        // A label the map proves absent has lost both.
        let all = missing_confirmed(&[], &mine, 7);
        assert_eq!(all.iter().map(|a| a.version).collect::<Vec<_>>(), [1, 2]);
        // At the receipt's own epoch the update is already required.
        assert_eq!(missing_confirmed(&history[..1], &mine, 5).len(), 1);
    }

    #[test]
    fn a_confirmed_version_replaced_by_another_leaf_is_rolled_back() {
        let history = vec![version(1, Op::Register, 1), version(2, Op::Rotate, 2)];
        let mine = made(&history, Some(5));
        // Same version numbers, another update at version 2 (which this device may even have
        // prepared itself and never seen confirmed: it is in the made-set, but unconfirmed).
        let replaced = vec![version(1, Op::Register, 1), version(2, Op::Recover, 7)];
        let mut with_draft = mine.clone();
        with_draft.extend(made(&replaced[1..], None));
        for made in [&mine, &with_draft] {
            let alerts = missing_confirmed(&replaced, made, 6);
            assert_eq!(alerts.len(), 1);
            assert_eq!(alerts[0].version, 2);
            assert_eq!(alerts[0].leaf_hash, leaf_hash(&[2]));
            assert_eq!(
                alerts[0].instead,
                Some(Replacement {
                    op: Op::Recover,
                    index: 20,
                    leaf_hash: leaf_hash(&[7]),
                })
            );
            assert_eq!(alerts[0].history_versions, 2);
        }
        // The draft is not foreign, so only the rolled-back check raises this history.
        let drafts: HashSet<Hash> = with_draft.iter().map(|m| m.leaf_hash).collect();
        assert!(foreign_versions(&replaced, &drafts).is_empty());
    }

    #[test]
    fn unconfirmed_or_later_confirmed_updates_are_not_required() {
        let history = vec![version(1, Op::Register, 1), version(2, Op::Rotate, 2)];
        // Sent, but its answer never came: it may never have landed.
        let mut mine = made(&history[..1], Some(3));
        mine.extend(made(&history[1..], None));
        assert!(missing_confirmed(&history[..1], &mine, 9).is_empty());
        // Confirmed in epoch 8: a history under epoch 7 cannot hold it yet.
        let mine = made(&history, Some(8));
        assert!(missing_confirmed(&history[..1], &mine, 7).is_empty());
        assert_eq!(missing_confirmed(&history[..1], &mine, 8).len(), 1);
        assert!(missing_confirmed(&history, &[], 9).is_empty());
    }

    #[test]
    fn label_state_matches_the_rules() {
        let signer = UserSigner::ed25519_from_seed([1; 32]);
        let label = Label::from_identifier("bob").unwrap();
        let update = KeyUpdate::new(label, 1, [0; 32], Op::Register, Some(signer.public()), 5)
            .unwrap()
            .sign(Role::NewKey, &signer)
            .unwrap();
        let hash = update.leaf_hash();
        let by_rules = apply_update(None, &update, hash, 7).unwrap();
        let verified = VerifiedUpdate {
            update,
            index: 7,
            leaf_hash: hash,
        };
        assert_eq!(label_state(&verified), by_rules);
    }
}
