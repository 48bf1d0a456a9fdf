//! What a client checks in a directory answer: pure functions of (checkpoint, label, answer).
//!
//! Each returns what the answer proves or the first reason it proves nothing. The checkpoint
//! itself (signature, consistency with the client's trusted state) is checked before these run,
//! by [`crate::trust`].

use super::label::vrf_input;
use super::rules::{apply_message, apply_update, LabelState, RuleError};
use super::{DirectoryError, KeyUpdate, Label, Message, UserKey};
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

/// A message read answer: the author's messages from a sequence on, the author's every
/// KeyUpdate (so that each message's signature can be checked under the key current at its log
/// index), and the map proof for the author's label, whose value holds the author's latest
/// KeyUpdate and message count (`docs/protocol.md` §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAnswer {
    pub messages: Vec<ProvenEntry>,
    pub versions: Vec<ProvenEntry>,
    pub map_proof: MapProof,
}

/// What a read proves: consecutive messages of the author, each signed by the author's key at
/// its log index, and how many messages the author has as of the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRead {
    pub messages: Vec<VerifiedMessage>,
    /// The map's message count for the author: the sequence of its latest message in the
    /// checkpoint's log (0 if none). Messages after the last one read exist iff it is larger.
    pub count: u64,
    /// The author's key history, version 1 first.
    pub versions: Vec<VerifiedUpdate>,
}

/// A message in the log that its author's key at its log index did not sign, or that no key
/// could sign (before registration, after a revoke): the evidence a reader keeps. Anyone with the
/// checkpoint note can check that `entry` is at `index` (`inclusion`) and that its signature
/// does not verify under `key`; the history (version `key_version`) shows `key` was current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgedMessage {
    pub index: u64,
    pub entry: Vec<u8>,
    pub inclusion: Vec<Hash>,
    /// The author's key current at `index`; `None` before registration or after a revoke.
    pub key: Option<UserKey>,
    /// The version of the author's latest KeyUpdate before `index` (0: none).
    pub key_version: u64,
    pub rule: RuleError,
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
    #[error("history entry {position} (version {version}) is at log index {index}, not after the version before it")]
    HistoryOrder {
        position: usize,
        version: u64,
        index: u64,
    },
    #[error("message {} at log index {} is not the author's: {} (checked against {})", .0.entry_sequence(), .0.index, .0.rule, .0.key_description())]
    ForgedMessage(Box<ForgedMessage>),
    #[error("the map says the author has {count} messages, but the answer stops before sequence {from} without any")]
    IncompleteRead { from: u64, count: u64 },
    #[error("message {sequence} is beyond the {count} messages the map gives the author")]
    BeyondCount { sequence: u64, count: u64 },
    #[error("message {sequence} is the author's last by the map's count, but not the message the map names")]
    LastMessageMismatch { sequence: u64 },
}

impl ForgedMessage {
    fn entry_sequence(&self) -> u64 {
        Message::decode(&self.entry).map_or(0, |m| m.sequence())
    }

    fn key_description(&self) -> String {
        match &self.key {
            Some(key) => format!(
                "the key of version {}: algorithm {:#04x}, {}",
                self.key_version,
                key.algorithm(),
                hex::encode(key.public_bytes())
            ),
            None if self.key_version == 0 => "no key: the author was not registered yet".into(),
            None => format!("no key: version {} revoked it", self.key_version),
        }
    }
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
/// 1, `prev` = the previous leaf hash, the required signatures), at a later log index, and the
/// last must be the one the map names. So a hidden version breaks the `prev` chain or the count,
/// and a version the owner did not sign breaks the rules, here, at the client.
pub fn verify_history(
    checkpoint: &Checkpoint,
    label: &Label,
    answer: &HistoryAnswer,
) -> Result<(Vec<VerifiedUpdate>, Option<LabelState>), AnswerError> {
    let value = map::verify(&checkpoint.map_root, label, &answer.map_proof)?;
    let (versions, mut states) =
        verify_versions(checkpoint, label, value.as_ref(), &answer.versions)?;
    Ok((versions, states.pop()))
}

/// The versions of `label` checked against the map's `value` (see [`verify_history`]), with the
/// state after each.
fn verify_versions(
    checkpoint: &Checkpoint,
    label: &Label,
    value: Option<&MapValue>,
    versions: &[ProvenEntry],
) -> Result<(Vec<VerifiedUpdate>, Vec<LabelState>), AnswerError> {
    let Some(value) = value else {
        if !versions.is_empty() {
            return Err(AnswerError::UnexpectedEntry);
        }
        return Ok((Vec::new(), Vec::new()));
    };
    if value.version != versions.len() as u64 {
        return Err(AnswerError::HistoryLength {
            want: value.version,
            got: versions.len(),
        });
    }
    let mut states: Vec<LabelState> = Vec::with_capacity(versions.len());
    let mut out = Vec::with_capacity(versions.len());
    for (position, proven) in versions.iter().enumerate() {
        let update = decode_update(label, proven)?;
        let want = position as u64 + 1;
        if update.version() != want {
            return Err(AnswerError::HistoryGap {
                position,
                want,
                got: update.version(),
            });
        }
        // Log order is the order the rules were applied in (and the auditor replays): a version
        // appended before the one it follows could not have been accepted.
        if states.last().is_some_and(|s| s.index >= proven.index) {
            return Err(AnswerError::HistoryOrder {
                position,
                version: want,
                index: proven.index,
            });
        }
        let hash = verify_proven_entry(checkpoint, proven)?;
        let next = apply_update(states.last(), &update, hash, proven.index).map_err(|source| {
            AnswerError::Rule {
                version: want,
                source,
            }
        })?;
        states.push(next);
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
    Ok((out, states))
}

/// What a read of `author`'s messages from `from_sequence` on proves under `checkpoint`
/// (`docs/protocol.md` §11):
///
/// - the map proof gives the author's value: its latest KeyUpdate and its message count;
/// - the versions are the author's whole key history, checked as [`verify_history`] does;
/// - the messages are in the log, by the author, consecutive from `from_sequence`
///   ([`verify_messages`]), none beyond the count, and each may follow the author's state at its
///   log index by the rules (`rules::apply_message`): registered, not revoked, signed by the key
///   of the author's latest KeyUpdate before it. A message that fails is a [`ForgedMessage`];
/// - completeness: if messages from `from_sequence` exist (`from_sequence <= count`) the answer
///   holds at least one, and a message with sequence `count` is the one the map names (its
///   leaf hash). So a server cannot hide the author's newest messages: it may only stop early
///   with some, and the caller asks again from the next sequence until the count.
pub fn verify_read(
    checkpoint: &Checkpoint,
    author: &Label,
    from_sequence: u64,
    answer: &ReadAnswer,
) -> Result<VerifiedRead, AnswerError> {
    let value = map::verify(&checkpoint.map_root, author, &answer.map_proof)?;
    let (versions, states) = verify_versions(checkpoint, author, value.as_ref(), &answer.versions)?;
    let count = value.map_or(0, |v| v.message_count);
    if answer.messages.is_empty() && from_sequence <= count {
        return Err(AnswerError::IncompleteRead {
            from: from_sequence,
            count,
        });
    }
    let messages = verify_messages(checkpoint, author, from_sequence, &answer.messages)?;
    for (verified, proven) in messages.iter().zip(&answer.messages) {
        let sequence = verified.message.sequence();
        if sequence > count {
            return Err(AnswerError::BeyondCount { sequence, count });
        }
        // The author's state at the message: its latest KeyUpdate at a lower log index.
        let at = states.partition_point(|s| s.index < verified.index);
        let state = at.checked_sub(1).map(|i| &states[i]);
        apply_message(state, sequence - 1, &verified.message).map_err(|rule| {
            AnswerError::ForgedMessage(Box::new(ForgedMessage {
                index: proven.index,
                entry: proven.entry.clone(),
                inclusion: proven.inclusion.clone(),
                key: state.and_then(|s| s.key.clone()),
                key_version: state.map_or(0, |s| s.version),
                rule,
            }))
        })?;
        if sequence == count {
            let last = value.map_or(map::NO_MESSAGE_HASH, |v| v.last_message_hash);
            if leaf_hash(&proven.entry) != last {
                return Err(AnswerError::LastMessageMismatch { sequence });
            }
        }
    }
    Ok(VerifiedRead {
        messages,
        count,
        versions,
    })
}

/// Checks messages read back for `author` from `from_sequence` on: each in the log, by that
/// author, consecutively numbered. Neither signatures nor completeness: that is [`verify_read`],
/// built on this; alone, this checks a message's receipt, whose message the caller signed.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Op, Role, UserSigner};
    use crate::entry::Namespace;
    use crate::map::MemoryMap;
    use crate::merkle::{inclusion_proof, root_of_leaf_hashes, HashReader, NodeId};
    use std::collections::BTreeMap;

    /// A log's leaf hashes, read as any complete node.
    struct Leaves(Vec<Hash>);

    impl HashReader for Leaves {
        type Error = std::convert::Infallible;
        fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
            Ok(ids
                .iter()
                .map(|id| {
                    let start = (id.index << id.level) as usize;
                    root_of_leaf_hashes(&self.0[start..start + (1 << id.level)])
                })
                .collect())
        }
    }

    /// One author's entries, appended with whatever map value the caller says.
    struct Log {
        label: Label,
        entries: Vec<Vec<u8>>,
        versions: Vec<u64>,
        messages: Vec<u64>,
        value: Option<MapValue>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                label: Label::from_bytes([7; 32]),
                entries: Vec::new(),
                versions: Vec::new(),
                messages: Vec::new(),
                value: None,
            }
        }

        fn update(&mut self, op: Op, old: Option<&UserSigner>, new: Option<&UserSigner>) {
            let (version, prev) = self
                .value
                .map_or((1, [0; 32]), |v| (v.version + 1, v.entry_hash));
            let mut u =
                KeyUpdate::new(self.label, version, prev, op, new.map(|s| s.public()), 1).unwrap();
            if let Some(old) = old {
                u = u.sign(Role::PreviousKey, old).unwrap();
            }
            if let Some(new) = new {
                u = u.sign(Role::NewKey, new).unwrap();
            }
            let index = self.entries.len() as u64;
            let (count, last) = self
                .value
                .map_or((0, [0; 32]), |v| (v.message_count, v.last_message_hash));
            self.value =
                Some(MapValue::new(version, u.leaf_hash(), index).with_messages(count, last));
            self.versions.push(index);
            self.entries.push(u.encode());
        }

        fn message(&mut self, signature: Result<&UserSigner, Vec<u8>>) {
            let sequence = self.value.unwrap().message_count + 1;
            let ns = Namespace::new("chat").unwrap();
            let m = match signature {
                Ok(signer) => Message::sign(ns, self.label, sequence, b"hi".to_vec(), signer),
                Err(sig) => Message::new(ns, self.label, sequence, b"hi".to_vec(), sig),
            }
            .unwrap();
            self.value = Some(self.value.unwrap().with_messages(sequence, m.leaf_hash()));
            self.messages.push(self.entries.len() as u64);
            self.entries.push(m.encode());
        }

        /// The checkpoint of everything so far and the read answer from `from`, leaving out
        /// the messages past `shown` of them.
        fn read(&self, from: u64, shown: usize) -> (Checkpoint, ReadAnswer) {
            let leaves = Leaves(self.entries.iter().map(|e| leaf_hash(e)).collect());
            let size = self.entries.len() as u64;
            let mut map = MemoryMap::new();
            map.apply(&BTreeMap::from([(self.label, self.value.unwrap())]));
            let proven = |index: u64| ProvenEntry {
                index,
                entry: self.entries[index as usize].clone(),
                inclusion: inclusion_proof(&leaves, index, size).unwrap(),
            };
            let cp = Checkpoint {
                size,
                root: root_of_leaf_hashes(&leaves.0),
                epoch: 1,
                map_root: map.root(),
                ..Checkpoint::genesis("example.com/log", 1)
            };
            let answer = ReadAnswer {
                messages: self.messages[..shown]
                    .iter()
                    .skip(from as usize - 1)
                    .map(|i| proven(*i))
                    .collect(),
                versions: self.versions.iter().map(|i| proven(*i)).collect(),
                map_proof: map::prove(&map, &self.label).unwrap(),
            };
            (cp, answer)
        }
    }

    fn forged(err: AnswerError) -> ForgedMessage {
        match err {
            AnswerError::ForgedMessage(f) => *f,
            other => panic!("expected a forged message, got {other}"),
        }
    }

    #[test]
    fn each_message_is_checked_under_the_key_of_its_log_index() {
        let (k1, k2, k3) = (
            UserSigner::ed25519_from_seed([1; 32]),
            UserSigner::ed25519_from_seed([2; 32]),
            UserSigner::ed25519_from_seed([3; 32]),
        );
        let mut log = Log::new();
        log.update(Op::Register, None, Some(&k1));
        log.message(Ok(&k1));
        log.update(Op::Rotate, Some(&k1), Some(&k2));
        log.message(Ok(&k2));
        log.update(Op::Revoke, Some(&k2), None);
        log.update(Op::Recover, None, Some(&k3));
        log.message(Ok(&k3));
        let (cp, answer) = log.read(1, 3);
        let read = verify_read(&cp, &log.label, 1, &answer).unwrap();
        assert_eq!(
            (read.messages.len(), read.count, read.versions.len()),
            (3, 3, 4)
        );
        // From the middle, and past the end: nothing is missing.
        let (cp, answer) = log.read(2, 3);
        assert_eq!(
            verify_read(&cp, &log.label, 2, &answer)
                .unwrap()
                .messages
                .len(),
            2
        );
        let (cp, answer) = log.read(4, 3);
        assert_eq!(verify_read(&cp, &log.label, 4, &answer).unwrap().count, 3);

        // A message signed by the rotated-away key after the rotation: forged.
        let mut old_key = Log::new();
        old_key.update(Op::Register, None, Some(&k1));
        old_key.update(Op::Rotate, Some(&k1), Some(&k2));
        old_key.message(Ok(&k1));
        let (cp, answer) = old_key.read(1, 1);
        let f = forged(verify_read(&cp, &old_key.label, 1, &answer).unwrap_err());
        assert_eq!(
            (f.index, f.key_version, f.rule),
            (2, 2, RuleError::BadMessageSignature)
        );
        assert_eq!(f.key, Some(k2.public()));

        // Zero bytes as the signature; and a message after a revoke, under the revoked key.
        let mut zeros = Log::new();
        zeros.update(Op::Register, None, Some(&k1));
        zeros.message(Err(vec![0; 64]));
        let (cp, answer) = zeros.read(1, 1);
        let f = forged(verify_read(&cp, &zeros.label, 1, &answer).unwrap_err());
        assert_eq!(f.rule, RuleError::BadMessageSignature);
        let mut revoked = Log::new();
        revoked.update(Op::Register, None, Some(&k1));
        revoked.update(Op::Revoke, Some(&k1), None);
        revoked.message(Ok(&k1));
        let (cp, answer) = revoked.read(1, 1);
        let f = forged(verify_read(&cp, &revoked.label, 1, &answer).unwrap_err());
        assert_eq!(
            (f.key, f.key_version, f.rule),
            (None, 2, RuleError::Revoked)
        );
    }

    #[test]
    fn a_read_missing_the_newest_messages_is_refused() {
        let k1 = UserSigner::ed25519_from_seed([1; 32]);
        let mut log = Log::new();
        log.update(Op::Register, None, Some(&k1));
        for _ in 0..3 {
            log.message(Ok(&k1));
        }
        // Stopping early with some messages is a partial answer: the caller reads on.
        let (cp, answer) = log.read(1, 2);
        let read = verify_read(&cp, &log.label, 1, &answer).unwrap();
        assert_eq!((read.messages.len(), read.count), (2, 3));
        // Nothing where the count says there is more: refused.
        let (cp, answer) = log.read(3, 2);
        assert_eq!(
            verify_read(&cp, &log.label, 3, &answer),
            Err(AnswerError::IncompleteRead { from: 3, count: 3 })
        );
        // The last message by the count must be the one the map names.
        let (cp, mut answer) = log.read(3, 3);
        // The answer's map proof and checkpoint re-made for another value of the author.
        let under = |value: MapValue| {
            let mut map = MemoryMap::new();
            map.apply(&BTreeMap::from([(log.label, value)]));
            let cp = Checkpoint {
                map_root: map.root(),
                ..cp.clone()
            };
            (map::prove(&map, &log.label).unwrap(), cp)
        };
        let mut other = log.value.unwrap();
        other.last_message_hash = [9; 32];
        let (proof, cp) = under(other);
        answer.map_proof = proof;
        assert_eq!(
            verify_read(&cp, &log.label, 3, &answer),
            Err(AnswerError::LastMessageMismatch { sequence: 3 })
        );
        // A message beyond the count.
        let mut fewer = log.value.unwrap();
        fewer.message_count = 2;
        let (proof, cp) = under(fewer);
        answer.map_proof = proof;
        assert_eq!(
            verify_read(&cp, &log.label, 3, &answer),
            Err(AnswerError::BeyondCount {
                sequence: 3,
                count: 2
            })
        );
    }
}
