//! What a client checks in a directory answer: pure functions of (checkpoint, label, answer).
//!
//! Each returns what the answer proves or the first reason it proves nothing. The checkpoint
//! itself (signature, consistency with the client's trusted state) is checked before these run,
//! by [`crate::trust`].

use super::label::vrf_input;
use super::rules::{apply_update, LabelState, RuleError};
use super::{DirectoryError, KeyUpdate, Label, Message};
use crate::checkpoint::Checkpoint;
use crate::hash::{leaf_hash, Hash};
use crate::map::{self, MapProof, MapProofError, MapValue};
use crate::merkle::{verify_inclusion, VerifyError};
use crate::vrf::{VrfError, VrfProof, VrfPublicKey, PROOF_LEN};
use thiserror::Error;

/// An entry of the log with its inclusion proof against an answer's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    pub inclusion: Vec<Hash>,
}

/// A lookup answer (also the receipt of an update): the map proof for the label and, when the
/// label is present, its latest KeyUpdate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupAnswer {
    pub map_proof: MapProof,
    pub entry: Option<ProvenEntry>,
}

/// A history answer: every KeyUpdate of a label, version 1 first, and the map proof naming the
/// last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryAnswer {
    pub versions: Vec<ProvenEntry>,
    pub map_proof: MapProof,
}

/// A KeyUpdate proven to be in the log, at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUpdate {
    pub update: KeyUpdate,
    pub index: u64,
    pub leaf_hash: Hash,
}

/// A message proven to be in the log, at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMessage {
    pub message: Message,
    pub index: u64,
}

/// Why an answer proves nothing. Every variant means the server (or the path to it) lied or
/// broke: an honest server never produces one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    /// The identifier asked about is not a valid identifier: the caller's mistake, not the
    /// server's (a client checks it before asking).
    #[error("identifier: {0}")]
    Identifier(DirectoryError),
    /// The answer's VRF proof is not the log's proof for the identifier asked about: it is for
    /// another identifier, under another key, or malformed (`docs/protocol.md` §9.1).
    #[error("VRF proof for the identifier: {0}")]
    VrfProof(VrfError),
    #[error("map proof: {0}")]
    MapProof(#[from] MapProofError),
    #[error("entry {index}: inclusion proof: {source}")]
    Inclusion { index: u64, source: VerifyError },
    #[error("entry {index}: {source}")]
    Malformed { index: u64, source: DirectoryError },
    #[error("entry {index} is for another label")]
    WrongLabel { index: u64 },
    #[error("the map says the label is absent, but the answer carries an entry")]
    UnexpectedEntry,
    #[error("the map holds the label, but the answer carries no entry")]
    MissingEntry,
    #[error("the map's value for the label ({want_version} at index {want_index}) does not name the entry given (version {got_version} at index {got_index})")]
    ValueMismatch {
        want_version: u64,
        want_index: u64,
        got_version: u64,
        got_index: u64,
    },
    #[error("the map's value for the label names an entry with another hash")]
    EntryHashMismatch,
    #[error("history holds {got} versions, but the map's value is version {want}")]
    HistoryLength { want: u64, got: usize },
    #[error("history entry {position} is version {got}, want {want}")]
    HistoryGap {
        position: usize,
        want: u64,
        got: u64,
    },
    #[error("version {version} breaks the directory's rules: {source}")]
    Rule { version: u64, source: RuleError },
    #[error("the receipt is for another entry than the one submitted")]
    NotOurEntry,
    #[error("message {index} is by another author")]
    WrongAuthor { index: u64 },
    #[error("messages are not consecutive: want sequence {want}, got {got}")]
    SequenceGap { want: u64, got: u64 },
}

/// The label of `identifier`, checked: `proof` must be the log's VRF proof (under its VRF public
/// key `key`) for the identifier's VRF input. Every directory answer carries one, and the
/// client checks it before anything else, so an answer about another user's label is refused.
pub fn verify_label(
    key: &VrfPublicKey,
    identifier: &str,
    proof: &[u8; PROOF_LEN],
) -> Result<Label, AnswerError> {
    let alpha = vrf_input(identifier).map_err(AnswerError::Identifier)?;
    let proof = VrfProof::from_bytes(proof).map_err(AnswerError::VrfProof)?;
    let beta = key.verify(&alpha, &proof).map_err(AnswerError::VrfProof)?;
    Ok(Label::from_vrf_output(&beta))
}

/// Checks that `proven` is in the log of `checkpoint` and returns its leaf hash.
pub fn verify_proven_entry(
    checkpoint: &Checkpoint,
    proven: &ProvenEntry,
) -> Result<Hash, AnswerError> {
    let hash = leaf_hash(&proven.entry);
    verify_inclusion(
        &hash,
        proven.index,
        checkpoint.size,
        &proven.inclusion,
        &checkpoint.root,
    )
    .map_err(|source| AnswerError::Inclusion {
        index: proven.index,
        source,
    })?;
    Ok(hash)
}

fn decode_update(label: &Label, proven: &ProvenEntry) -> Result<KeyUpdate, AnswerError> {
    let update = KeyUpdate::decode(&proven.entry).map_err(|source| AnswerError::Malformed {
        index: proven.index,
        source,
    })?;
    if update.label() != label {
        return Err(AnswerError::WrongLabel {
            index: proven.index,
        });
    }
    Ok(update)
}

/// Checks that `proven` is exactly the entry `value` names and returns it decoded.
fn verify_named_entry(
    checkpoint: &Checkpoint,
    label: &Label,
    value: &MapValue,
    proven: &ProvenEntry,
) -> Result<VerifiedUpdate, AnswerError> {
    let update = decode_update(label, proven)?;
    if value.index != proven.index || value.version != update.version() {
        return Err(AnswerError::ValueMismatch {
            want_version: value.version,
            want_index: value.index,
            got_version: update.version(),
            got_index: proven.index,
        });
    }
    let hash = verify_proven_entry(checkpoint, proven)?;
    if hash != value.entry_hash {
        return Err(AnswerError::EntryHashMismatch);
    }
    Ok(VerifiedUpdate {
        update,
        index: proven.index,
        leaf_hash: hash,
    })
}

/// What a lookup of `label` under `checkpoint` proves: the label's latest KeyUpdate, or `None`
/// when the label has never been registered.
///
/// The map proof must lead to the checkpoint's map root, and the entry must be exactly the one the
/// map's value names (version, log index, leaf hash) and be in the checkpoint's log.
pub fn verify_lookup(
    checkpoint: &Checkpoint,
    label: &Label,
    answer: &LookupAnswer,
) -> Result<Option<VerifiedUpdate>, AnswerError> {
    let value = map::verify(&checkpoint.map_root, label, &answer.map_proof)?;
    match (value, &answer.entry) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(AnswerError::UnexpectedEntry),
        (Some(_), None) => Err(AnswerError::MissingEntry),
        (Some(value), Some(proven)) => {
            verify_named_entry(checkpoint, label, &value, proven).map(Some)
        }
    }
}

/// Checks the receipt of a submitted update: the log holds exactly `submitted` and the map now
/// names it for its label.
pub fn verify_update_receipt(
    checkpoint: &Checkpoint,
    submitted: &KeyUpdate,
    answer: &LookupAnswer,
) -> Result<VerifiedUpdate, AnswerError> {
    let verified =
        verify_lookup(checkpoint, submitted.label(), answer)?.ok_or(AnswerError::MissingEntry)?;
    if verified.update != *submitted {
        return Err(AnswerError::NotOurEntry);
    }
    Ok(verified)
}

/// What a history of `label` under `checkpoint` proves: every version of the label, in order,
/// and the state they lead to (`None`, with no versions, for a label the map proves absent).
///
/// Each version must be in the log, follow the previous one by the directory's rules (version +
/// 1, `prev` = the previous leaf hash, the required signatures), and the last must be the one the
/// map names. So a hidden version breaks the `prev` chain or the count, and a version the owner
/// did not sign breaks the rules, here, at the client.
pub fn verify_history(
    checkpoint: &Checkpoint,
    label: &Label,
    answer: &HistoryAnswer,
) -> Result<(Vec<VerifiedUpdate>, Option<LabelState>), AnswerError> {
    let Some(value) = map::verify(&checkpoint.map_root, label, &answer.map_proof)? else {
        if !answer.versions.is_empty() {
            return Err(AnswerError::UnexpectedEntry);
        }
        return Ok((Vec::new(), None));
    };
    if value.version != answer.versions.len() as u64 {
        return Err(AnswerError::HistoryLength {
            want: value.version,
            got: answer.versions.len(),
        });
    }
    let mut state: Option<LabelState> = None;
    let mut out = Vec::with_capacity(answer.versions.len());
    for (position, proven) in answer.versions.iter().enumerate() {
        let update = decode_update(label, proven)?;
        let want = position as u64 + 1;
        if update.version() != want {
            return Err(AnswerError::HistoryGap {
                position,
                want,
                got: update.version(),
            });
        }
        let hash = verify_proven_entry(checkpoint, proven)?;
        let next = apply_update(state.as_ref(), &update, hash, proven.index).map_err(|source| {
            AnswerError::Rule {
                version: want,
                source,
            }
        })?;
        state = Some(next);
        out.push(VerifiedUpdate {
            update,
            index: proven.index,
            leaf_hash: hash,
        });
    }
    // The map's version is at least 1, so there is a last version here.
    let last = out.last().ok_or(AnswerError::MissingEntry)?;
    if last.index != value.index || last.leaf_hash != value.entry_hash {
        return Err(AnswerError::EntryHashMismatch);
    }
    Ok((out, state))
}

/// Checks messages read back for `author` from `from_sequence` on: each in the log, by that
/// author, consecutively numbered. (Their signatures were checked by the log's rules when they
/// were appended; an auditor replays that check.)
pub fn verify_messages(
    checkpoint: &Checkpoint,
    author: &Label,
    from_sequence: u64,
    messages: &[ProvenEntry],
) -> Result<Vec<VerifiedMessage>, AnswerError> {
    let mut out = Vec::with_capacity(messages.len());
    for (offset, proven) in messages.iter().enumerate() {
        // Checked: a server may answer a read from sequence u64::MAX with more than one message.
        let want = from_sequence
            .checked_add(offset as u64)
            .ok_or(AnswerError::SequenceGap {
                want: u64::MAX,
                got: 0,
            })?;
        let message = Message::decode(&proven.entry).map_err(|source| AnswerError::Malformed {
            index: proven.index,
            source,
        })?;
        if message.author() != author {
            return Err(AnswerError::WrongAuthor {
                index: proven.index,
            });
        }
        if message.sequence() != want {
            return Err(AnswerError::SequenceGap {
                want,
                got: message.sequence(),
            });
        }
        verify_proven_entry(checkpoint, proven)?;
        out.push(VerifiedMessage {
            message,
            index: proven.index,
        });
    }
    Ok(out)
}
