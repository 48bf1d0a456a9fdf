//! The directory's rules: which entry may follow a label's current state.
//!
//! Pure functions of (state, entry), so the server (before it appends) and the auditor (when it
//! replays the log) run exactly the same checks. Provider authorization of `register` and
//! `recover` (a bearer token or mTLS identity) is checked by the server and is not in the entry;
//! everything a signature can prove is checked here.

use super::key::UserKey;
use super::update::{KeyUpdate, Op, Role};
use super::Message;
use crate::hash::Hash;
use thiserror::Error;

/// The map's value for a label: its latest KeyUpdate, summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelState {
    /// Version of the latest update (1 for a fresh registration).
    pub version: u64,
    /// Leaf hash of the latest update: what the next update's `prev` must name.
    pub leaf_hash: Hash,
    /// Log index of the latest update, so a lookup can prove inclusion of exactly that entry.
    pub index: u64,
    /// The current key; `None` after a revoke.
    pub key: Option<UserKey>,
    /// Whether the latest update was a `recover`: the owner's monitor must raise it, because the
    /// provider, not the user's previous key, authorized it.
    pub recovered: bool,
}

/// Why an entry may not follow the current state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("label is already registered")]
    AlreadyRegistered,
    #[error("label is not registered")]
    NotRegistered,
    #[error("label's key is revoked")]
    Revoked,
    #[error("version must be {want}, got {got}")]
    SkippedVersion { want: u64, got: u64 },
    #[error("version counter exhausted")]
    VersionExhausted,
    #[error("prev must be {}, got {}", hex::encode(.want), hex::encode(.got))]
    WrongPrev { want: Hash, got: Hash },
    #[error("{op} must carry a key")]
    MissingKey { op: Op },
    #[error("{op} must not carry a key")]
    UnexpectedKey { op: Op },
    #[error("missing {role} signature")]
    MissingSignature { role: Role },
    #[error("{op} must not carry a {role} signature")]
    UnexpectedSignature { op: Op, role: Role },
    #[error("{role} signature does not verify")]
    BadSignature { role: Role },
    #[error("sequence must be {want}, got {got}")]
    SkippedSequence { want: u64, got: u64 },
    #[error("sequence counter exhausted")]
    SequenceExhausted,
    #[error("message signature does not verify")]
    BadMessageSignature,
    /// A key update whose `time_ms` is more than [`MAX_UPDATE_SKEW_MS`] from the time of the
    /// checkpoint that first includes it ([`check_update_time`]).
    #[error(
        "update time_ms {time_ms} is more than {skew_ms} ms from the epoch's time {epoch_time_ms} \
         (allowed: {} to {})",
        epoch_time_ms.saturating_sub(*skew_ms),
        epoch_time_ms.saturating_add(*skew_ms)
    )]
    UpdateTime {
        time_ms: u64,
        epoch_time_ms: u64,
        skew_ms: u64,
    },
}

/// The state of `update.label()` after `update`, or why `update` may not follow `prev`.
///
/// `prev` is the label's current state (`None` if it has never been registered); the caller looks
/// it up by `update.label()`. `leaf_hash` and `index` are the update's leaf hash and log index.
///
/// | op | needs | signatures |
/// |---|---|---|
/// | register | no state; version 1 | new-key only (proof of possession) |
/// | rotate | a key; version + 1; `prev` = last leaf hash | previous-key and new-key |
/// | revoke | a key; version + 1; `prev`; no new key | previous-key only |
/// | recover | any state; version + 1; `prev` | new-key only (provider-authorized) |
pub fn apply_update(
    prev: Option<&LabelState>,
    update: &KeyUpdate,
    leaf_hash: Hash,
    index: u64,
) -> Result<LabelState, RuleError> {
    apply_update_verified(
        prev,
        update,
        leaf_hash,
        index,
        &VerifiedSignatures::default(),
    )
}

/// [`apply_update`], where a required signature found in `verified` (the same key, message and
/// signature bytes) is not verified again. Every rule is still checked, in the same order, so
/// the result is exactly [`apply_update`]'s.
pub fn apply_update_verified(
    prev: Option<&LabelState>,
    update: &KeyUpdate,
    leaf_hash: Hash,
    index: u64,
    verified: &VerifiedSignatures,
) -> Result<LabelState, RuleError> {
    let op = update.op();
    // Whose key signs as the previous key, if anyone's.
    let previous_key = match (op, prev) {
        (Op::Register, Some(_)) => return Err(RuleError::AlreadyRegistered),
        (Op::Register, None) => {
            check_version(1, update)?;
            // Unreachable through the constructor (version 1 implies zero prev); kept so the rule
            // reads complete on its own.
            check_prev(&[0; 32], update)?;
            None
        }
        (_, None) => return Err(RuleError::NotRegistered),
        (_, Some(state)) => {
            if op != Op::Recover && state.key.is_none() {
                return Err(RuleError::Revoked);
            }
            let want = state
                .version
                .checked_add(1)
                .ok_or(RuleError::VersionExhausted)?;
            check_version(want, update)?;
            check_prev(&state.leaf_hash, update)?;
            match op {
                Op::Rotate | Op::Revoke => state.key.as_ref(),
                _ => None,
            }
        }
    };

    match (op, update.key()) {
        (Op::Revoke, Some(_)) => return Err(RuleError::UnexpectedKey { op }),
        (Op::Register | Op::Rotate | Op::Recover, None) => {
            return Err(RuleError::MissingKey { op })
        }
        _ => {}
    }

    // Every signature present must be required, so an update has exactly one valid shape.
    for s in update.signatures() {
        let wanted = match s.role() {
            Role::PreviousKey => previous_key.is_some(),
            Role::NewKey => update.key().is_some(),
        };
        if !wanted {
            return Err(RuleError::UnexpectedSignature { op, role: s.role() });
        }
    }
    let signed = update.signed_bytes();
    let required = [
        (Role::PreviousKey, previous_key),
        (Role::NewKey, update.key()),
    ];
    for (role, key) in required {
        if let Some(key) = key {
            let sig = update
                .signature(role)
                .ok_or(RuleError::MissingSignature { role })?;
            if !verified.contains(key, &signed, sig) {
                key.verify(&signed, sig)
                    .map_err(|_| RuleError::BadSignature { role })?;
            }
        }
    }

    Ok(LabelState {
        version: update.version(),
        leaf_hash,
        index,
        key: update.key().cloned(),
        recovered: op == Op::Recover,
    })
}

/// How far a key update's `time_ms` may be from the `time` of the checkpoint that first includes
/// it, either way: 5 minutes (`docs/protocol.md` §9.3). It covers the client's clock error and the
/// time an update waits for its epoch. A rule of the log, not a server setting, because every
/// auditor enforces the same bound.
pub const MAX_UPDATE_SKEW_MS: u64 = 5 * 60 * 1000;

/// Whether a key update's `time_ms` is within [`MAX_UPDATE_SKEW_MS`] of `epoch_time_ms`, the
/// time of the checkpoint that first includes it. The server checks it before appending (with
/// the time the epoch's checkpoint will carry) and the auditor when it replays each epoch, so
/// the `time_ms` a history shows is when the update was logged, give or take the skew.
pub fn check_update_time(time_ms: u64, epoch_time_ms: u64) -> Result<(), RuleError> {
    if time_ms.abs_diff(epoch_time_ms) > MAX_UPDATE_SKEW_MS {
        return Err(RuleError::UpdateTime {
            time_ms,
            epoch_time_ms,
            skew_ms: MAX_UPDATE_SKEW_MS,
        });
    }
    Ok(())
}

/// Signatures already verified, as (key, message, signature) triples that [`UserKey::verify`]
/// accepted. Verification is a function of those three alone, so a triple verified earlier or
/// on another thread need not be verified again: an auditor verifies the signatures of a chunk
/// of entries on every core, then applies the rules in log order on one.
#[derive(Debug, Clone, Default)]
pub struct VerifiedSignatures(Vec<(UserKey, Vec<u8>, Vec<u8>)>);

impl VerifiedSignatures {
    /// Verifies what of `update` needs no state: the new key's signature over the update. A
    /// signature that does not verify is not recorded; the rules then report it in their order.
    pub fn of_new_key(update: &KeyUpdate) -> VerifiedSignatures {
        let mut verified = VerifiedSignatures::default();
        if let (Some(key), Some(sig)) = (update.key(), update.signature(Role::NewKey)) {
            verified.verify(key, update.signed_bytes(), sig);
        }
        verified
    }

    /// Verifies `signature` of `message` by `key`, and records it if it verifies.
    pub fn verify(&mut self, key: &UserKey, message: Vec<u8>, signature: &[u8]) -> bool {
        let ok = key.verify(&message, signature).is_ok();
        if ok {
            self.0.push((key.clone(), message, signature.to_vec()));
        }
        ok
    }

    /// Whether `key`'s `signature` of `message` was verified here.
    pub fn contains(&self, key: &UserKey, message: &[u8], signature: &[u8]) -> bool {
        self.0
            .iter()
            .any(|(k, m, s)| k == key && m == message && s == signature)
    }
}

/// Whether `msg` may follow its author's `last_sequence`-th message (0 if none yet).
///
/// `author` is the state of `msg.author()`. Sequences count per author across all namespaces, so
/// the log orders every author's messages and a dropped or replayed one is visible.
pub fn apply_message(
    author: Option<&LabelState>,
    last_sequence: u64,
    msg: &Message,
) -> Result<(), RuleError> {
    let state = author.ok_or(RuleError::NotRegistered)?;
    let key = state.key.as_ref().ok_or(RuleError::Revoked)?;
    let want = last_sequence
        .checked_add(1)
        .ok_or(RuleError::SequenceExhausted)?;
    if msg.sequence() != want {
        return Err(RuleError::SkippedSequence {
            want,
            got: msg.sequence(),
        });
    }
    key.verify(&msg.signed_bytes(), msg.signature())
        .map_err(|_| RuleError::BadMessageSignature)
}

fn check_version(want: u64, update: &KeyUpdate) -> Result<(), RuleError> {
    if update.version() != want {
        return Err(RuleError::SkippedVersion {
            want,
            got: update.version(),
        });
    }
    Ok(())
}

fn check_prev(want: &Hash, update: &KeyUpdate) -> Result<(), RuleError> {
    if update.prev() != want {
        return Err(RuleError::WrongPrev {
            want: *want,
            got: *update.prev(),
        });
    }
    Ok(())
}
