//! Replaying the directory: every entry through the directory's rules, every epoch into the map.
//!
//! The map is a function of the log (`docs/protocol.md` §9, design brief §6): the log is cut into
//! epochs by its checkpoints, and an epoch's entries, applied in log order to the map of the
//! previous checkpoint, must give the map root of this checkpoint. [`Replay`] does exactly what
//! the server does:
//!
//! - a record (kind `0x01`) changes nothing;
//! - a key update goes through [`apply_update`] against its label's state and, if allowed, sets
//!   the label's map value to `(version, leaf hash, index)`;
//! - a message goes through [`apply_message`] against its author's state and last sequence, which
//!   it then advances;
//! - at the end of the epoch, the last value of every label changed in it goes into the map in
//!   one [`MemoryMap::apply`], whose root must be the checkpoint's `map` line. An epoch without
//!   key updates keeps the previous root (32 zero bytes for the empty map).
//!
//! An honest server never appends an entry that breaks the rules, so every refusal is a
//! violation of the log, not an entry to skip.
//!
//! Signatures are the replay's main cost. Those that need no state (a key update's new-key
//! signature) are verified first for a whole chunk of entries on every core
//! ([`prepare_entries`]); the rules then run in log order on one thread and do not verify those
//! again ([`apply_update_verified`]).
//!
//! Everything is kept in memory, for every label ever registered (see `docs/operations.md`,
//! "Auditing").

use std::collections::{BTreeMap, HashMap};

use kt_core::checkpoint::Checkpoint;
use kt_core::directory::{
    apply_message, apply_update_verified, check_update_time, Label, LabelState, Op, RuleError,
    VerifiedSignatures,
};
use kt_core::entry::{Entry, EntryError};
use kt_core::hash::{leaf_hash, Hash};
use kt_core::map::{MapValue, MemoryMap, NO_MESSAGE_HASH};
use thiserror::Error;

/// Why the log's entries or a checkpoint's map root do not follow from the replay.
///
/// Every variant but [`ReplayViolation::OutOfOrder`] and [`ReplayViolation::EpochIncomplete`] is
/// a violation by the log; those two are the caller's mistakes (entries fed out of order, or a
/// checkpoint closed before all of its entries were fed) and prove nothing about the log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayViolation {
    /// The entry's bytes are not a canonical entry of any kind.
    #[error("entry {index} is not a valid entry: {error}")]
    Undecodable { index: u64, error: EntryError },
    /// A key update that may not follow its label's state.
    #[error("entry {index}: the {op} of label {label} breaks the directory rules: {rule}")]
    Update {
        index: u64,
        label: Label,
        op: Op,
        /// Boxed: the refusal is rare and the `Ok` path should stay small.
        rule: Box<RuleError>,
        /// Index of the entry the rule compared against: the label's latest update, if any.
        prior: Option<u64>,
    },
    /// A message that may not follow its author's state.
    #[error(
        "entry {index}: message {sequence} of author {author} breaks the directory rules: {rule}"
    )]
    Message {
        index: u64,
        author: Label,
        sequence: u64,
        rule: Box<RuleError>,
        /// Index of the entry the rule compared against: the author's previous message for a
        /// sequence error, else the author's latest key update (whose key signs), if any.
        prior: Option<u64>,
    },
    /// The checkpoint's map root is not the root the epoch's entries give.
    #[error(
        "epoch {epoch} (entries {start}..{end}): the checkpoint's map root is {}, the entries give {}",
        hex(.signed),
        hex(.replayed)
    )]
    MapRoot {
        epoch: u64,
        /// First entry of the epoch as replayed (the previous checkpoint's size).
        start: u64,
        /// The checkpoint's size.
        end: u64,
        signed: Hash,
        replayed: Hash,
    },
    /// Caller's mistake: the replay was given entry `got` when entry `next` was due.
    #[error("replay is at entry {next}, was given entry {got}")]
    OutOfOrder { next: u64, got: u64 },
    /// Caller's mistake: the checkpoint was closed after `applied` entries, not its `size`.
    #[error("replay has applied {applied} entries, the checkpoint of epoch {epoch} has {size}")]
    EpochIncomplete { epoch: u64, applied: u64, size: u64 },
}

impl ReplayViolation {
    /// Whether this is the log's fault (evidence-worthy) rather than the caller's.
    pub fn is_log_violation(&self) -> bool {
        !matches!(
            self,
            ReplayViolation::OutOfOrder { .. } | ReplayViolation::EpochIncomplete { .. }
        )
    }

    /// The index of the offending entry, if one entry is at fault.
    pub fn index(&self) -> Option<u64> {
        match self {
            ReplayViolation::Undecodable { index, .. }
            | ReplayViolation::Update { index, .. }
            | ReplayViolation::Message { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The earlier entry that the broken rule compared the offending entry against, if any.
    pub fn prior(&self) -> Option<u64> {
        match self {
            ReplayViolation::Update { prior, .. } | ReplayViolation::Message { prior, .. } => {
                *prior
            }
            _ => None,
        }
    }

    /// A short machine-readable name of the rule broken, for evidence files.
    pub fn rule(&self) -> &'static str {
        match self {
            ReplayViolation::Undecodable { .. } => "invalid-entry",
            ReplayViolation::Update { rule, .. } | ReplayViolation::Message { rule, .. } => {
                rule_name(rule)
            }
            ReplayViolation::MapRoot { .. } => "map-root",
            ReplayViolation::OutOfOrder { .. } => "out-of-order",
            ReplayViolation::EpochIncomplete { .. } => "epoch-incomplete",
        }
    }
}

/// The kebab-case name of a directory rule error (`docs/protocol.md` §9.3, §9.4).
pub fn rule_name(rule: &RuleError) -> &'static str {
    match rule {
        RuleError::AlreadyRegistered => "already-registered",
        RuleError::NotRegistered => "not-registered",
        RuleError::Revoked => "revoked",
        RuleError::SkippedVersion { .. } => "skipped-version",
        RuleError::VersionExhausted => "version-exhausted",
        RuleError::WrongPrev { .. } => "wrong-prev",
        RuleError::MissingKey { .. } => "missing-key",
        RuleError::UnexpectedKey { .. } => "unexpected-key",
        RuleError::MissingSignature { .. } => "missing-signature",
        RuleError::UnexpectedSignature { .. } => "unexpected-signature",
        RuleError::BadSignature { .. } => "bad-signature",
        RuleError::SkippedSequence { .. } => "skipped-sequence",
        RuleError::SequenceExhausted => "sequence-exhausted",
        RuleError::BadMessageSignature => "bad-message-signature",
        RuleError::UpdateTime { .. } => "update-time",
    }
}

/// An author's latest message.
#[derive(Debug, Clone, Copy)]
struct LastMessage {
    sequence: u64,
    index: u64,
    leaf_hash: Hash,
}

/// The directory rebuilt from the log, one entry and one epoch at a time.
///
/// A refused entry leaves the state as it was; a refused map root leaves the map at the root the
/// entries give. Either way the log has already been caught, and the auditor stops.
#[derive(Debug, Default)]
pub struct Replay {
    labels: HashMap<Label, LabelState>,
    authors: HashMap<Label, LastMessage>,
    map: MemoryMap,
    /// Labels changed in the current epoch, with their last value.
    changed: BTreeMap<Label, MapValue>,
    /// The labels changed by the last epoch whose map root was refused (kept for evidence;
    /// empty while every root matched, so that a replay from entry 0 does not hold them all).
    refused_changes: BTreeMap<Label, MapValue>,
    /// Entries applied so far: the index of the next entry.
    next_index: u64,
    /// The size of the last closed checkpoint: where the current epoch starts.
    epoch_start: u64,
    /// The epoch of the last closed checkpoint.
    last_epoch: Option<u64>,
    /// The `time` of the checkpoint that will close the current epoch, if the caller gave it
    /// ([`Replay::begin_epoch`]): each key update's `time_ms` must be within the skew of it.
    epoch_time_ms: Option<u64>,
}

impl Replay {
    /// The directory of the empty log.
    pub fn new() -> Replay {
        Replay::default()
    }

    /// The number of entries applied: the index of the next one.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The epoch of the last checkpoint closed with [`Replay::finish_epoch`].
    pub fn last_epoch(&self) -> Option<u64> {
        self.last_epoch
    }

    /// The map root after the last closed epoch.
    pub fn map_root(&self) -> Hash {
        self.map.root()
    }

    /// A label's state (its latest update), if it was ever registered.
    pub fn label(&self, label: &Label) -> Option<&LabelState> {
        self.labels.get(label)
    }

    /// The number of labels ever registered.
    pub fn label_count(&self) -> usize {
        self.labels.len()
    }

    /// The labels changed, with their new values, by the last epoch whose map root
    /// [`Replay::finish_epoch`] refused; empty if none was.
    pub fn refused_changes(&self) -> &BTreeMap<Label, MapValue> {
        &self.refused_changes
    }

    /// Announces the checkpoint that will close the current epoch, before its entries are
    /// applied: every key update of the epoch must then have a `time_ms` within the skew of its
    /// `time` (`check_update_time`, the server's rule). Without it (a resumed replay of many
    /// epochs at once, whose times were checked when each epoch was audited) times are not
    /// checked. [`Replay::finish_epoch`] forgets it.
    pub fn begin_epoch(&mut self, checkpoint: &Checkpoint) {
        self.epoch_time_ms = Some(checkpoint.time_ms);
    }

    /// Applies the entry at `index` (which must be [`Replay::next_index`]), with its canonical
    /// bytes as served by the log.
    pub fn apply_entry(&mut self, index: u64, bytes: &[u8]) -> Result<(), ReplayViolation> {
        let entry = PreparedEntry {
            decoded: Entry::decode(bytes),
            verified: VerifiedSignatures::default(),
        };
        self.apply_prepared(index, bytes, entry)
    }

    /// [`Replay::apply_entry`] for an entry already prepared from the same `bytes`.
    pub fn apply_prepared(
        &mut self,
        index: u64,
        bytes: &[u8],
        prepared: PreparedEntry,
    ) -> Result<(), ReplayViolation> {
        if index != self.next_index {
            return Err(ReplayViolation::OutOfOrder {
                next: self.next_index,
                got: index,
            });
        }
        let PreparedEntry { decoded, verified } = prepared;
        let entry = decoded.map_err(|error| ReplayViolation::Undecodable { index, error })?;
        match entry {
            Entry::Record(_) => {}
            Entry::KeyUpdate(update) => {
                let label = *update.label();
                let prev = self.labels.get(&label);
                let entry_hash = leaf_hash(bytes);
                let state = apply_update_verified(prev, &update, entry_hash, index, &verified)
                    .map_err(|rule| ReplayViolation::Update {
                        index,
                        label,
                        op: update.op(),
                        rule: Box::new(rule),
                        prior: prev.map(|s| s.index),
                    })?;
                if let Some(epoch_time_ms) = self.epoch_time_ms {
                    check_update_time(update.time_ms(), epoch_time_ms).map_err(|rule| {
                        ReplayViolation::Update {
                            index,
                            label,
                            op: update.op(),
                            rule: Box::new(rule),
                            prior: None,
                        }
                    })?;
                }
                let messages = self.authors.get(&label);
                self.changed.insert(
                    label,
                    MapValue::new(update.version(), entry_hash, index).with_messages(
                        messages.map_or(0, |m| m.sequence),
                        messages.map_or(NO_MESSAGE_HASH, |m| m.leaf_hash),
                    ),
                );
                self.labels.insert(label, state);
            }
            Entry::Message(msg) => {
                let author = *msg.author();
                let state = self.labels.get(&author);
                let last = self.authors.get(&author).copied();
                apply_message(state, last.map_or(0, |m| m.sequence), &msg).map_err(|rule| {
                    let prior = match rule {
                        RuleError::SkippedSequence { .. } | RuleError::SequenceExhausted => {
                            last.map(|m| m.index)
                        }
                        _ => state.map(|s| s.index),
                    };
                    ReplayViolation::Message {
                        index,
                        author,
                        sequence: msg.sequence(),
                        rule: Box::new(rule),
                        prior,
                    }
                })?;
                let leaf_hash = leaf_hash(bytes);
                // The rules passed, so the author is registered.
                if let Some(state) = state {
                    self.changed.insert(
                        author,
                        MapValue::new(state.version, state.leaf_hash, state.index)
                            .with_messages(msg.sequence(), leaf_hash),
                    );
                }
                self.authors.insert(
                    author,
                    LastMessage {
                        sequence: msg.sequence(),
                        index,
                        leaf_hash,
                    },
                );
            }
        }
        self.next_index += 1;
        Ok(())
    }

    /// Closes the epoch at `checkpoint`, whose entries must all have been applied: applies the
    /// epoch's map changes and checks the resulting root against the checkpoint's `map_root`.
    ///
    /// The epoch runs from the previously closed checkpoint's size (0 at first) to this one's.
    /// Because the map's root depends only on the final (label, value) pairs, closing several
    /// epochs at once (as a resumed auditor does) gives the root of the last of them.
    pub fn finish_epoch(&mut self, checkpoint: &Checkpoint) -> Result<(), ReplayViolation> {
        if checkpoint.size != self.next_index {
            return Err(ReplayViolation::EpochIncomplete {
                epoch: checkpoint.epoch,
                applied: self.next_index,
                size: checkpoint.size,
            });
        }
        let changes = std::mem::take(&mut self.changed);
        let replayed = self.map.apply(&changes);
        let start = std::mem::replace(&mut self.epoch_start, checkpoint.size);
        self.last_epoch = Some(checkpoint.epoch);
        self.epoch_time_ms = None;
        if replayed != checkpoint.map_root {
            self.refused_changes = changes;
            return Err(ReplayViolation::MapRoot {
                epoch: checkpoint.epoch,
                start,
                end: checkpoint.size,
                signed: checkpoint.map_root,
                replayed,
            });
        }
        Ok(())
    }
}

/// An entry decoded, with the signatures that need no state already verified: what
/// [`Replay::apply_prepared`] takes. Preparing depends on the entry's bytes alone, so entries can
/// be prepared on any thread and in any order.
#[derive(Debug)]
pub struct PreparedEntry {
    decoded: Result<Entry, EntryError>,
    verified: VerifiedSignatures,
}

impl PreparedEntry {
    pub fn new(bytes: &[u8]) -> PreparedEntry {
        let decoded = Entry::decode(bytes);
        let verified = match &decoded {
            Ok(Entry::KeyUpdate(update)) => VerifiedSignatures::of_new_key(update),
            _ => VerifiedSignatures::default(),
        };
        PreparedEntry { decoded, verified }
    }
}

/// Prepares `entries` on every available core; the result is in the same order.
pub fn prepare_entries(entries: &[Vec<u8>]) -> Vec<PreparedEntry> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || entries.len() < 2 {
        return entries.iter().map(|e| PreparedEntry::new(e)).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|e| PreparedEntry::new(e))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Lowercase hex, for messages and evidence.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::directory::{KeyUpdate, Message, Role, UserSigner};
    use kt_core::entry::{Namespace, Record};
    use kt_core::hash::empty_root;
    use kt_core::map::EMPTY_HASH;
    use kt_core::merkle::root_of_leaf_hashes;

    const T0: u64 = 1_795_689_600_000;

    fn signer(seed: u8) -> UserSigner {
        UserSigner::ed25519_from_seed([seed; 32])
    }

    fn label(name: &str) -> Label {
        Label::from_identifier(name).unwrap()
    }

    /// A log being written as an honest server would, with checkpoints as the server signs them
    /// (map roots computed independently of [`Replay`], with a `MemoryMap`).
    struct Log {
        entries: Vec<Vec<u8>>,
        checkpoints: Vec<Checkpoint>,
        /// Each label's latest (version, leaf hash), to chain updates.
        heads: HashMap<Label, (u64, Hash)>,
        sequences: HashMap<Label, u64>,
        map: MemoryMap,
        pending: BTreeMap<Label, MapValue>,
    }

    impl Log {
        fn new() -> Log {
            let genesis = Checkpoint::genesis("example.com/log", T0);
            assert_eq!(genesis.map_root, EMPTY_HASH);
            Log {
                entries: Vec::new(),
                checkpoints: vec![genesis],
                heads: HashMap::new(),
                sequences: HashMap::new(),
                map: MemoryMap::new(),
                pending: BTreeMap::new(),
            }
        }

        /// Appends raw entry bytes; returns the index.
        fn push(&mut self, bytes: Vec<u8>) -> u64 {
            self.entries.push(bytes);
            self.entries.len() as u64 - 1
        }

        /// The next update of `label` (version and prev chained), unsigned.
        fn next_update(&self, label: Label, op: Op, key: Option<&UserSigner>) -> KeyUpdate {
            let (version, prev) = self
                .heads
                .get(&label)
                .map_or((1, [0; 32]), |&(v, h)| (v + 1, h));
            KeyUpdate::new(
                label,
                version,
                prev,
                op,
                key.map(UserSigner::public),
                T0 + version,
            )
            .unwrap()
        }

        /// Appends a key update and records its map effect, as the server does after the rules
        /// accepted it.
        fn update(&mut self, u: KeyUpdate) -> u64 {
            let bytes = u.encode();
            let hash = leaf_hash(&bytes);
            let index = self.push(bytes);
            self.heads.insert(*u.label(), (u.version(), hash));
            let value = self.value(u.label());
            self.pending.insert(
                *u.label(),
                MapValue::new(u.version(), hash, index)
                    .with_messages(value.message_count, value.last_message_hash),
            );
            index
        }

        /// A label's current map value (zeros if it has none).
        fn value(&self, label: &Label) -> MapValue {
            let committed = kt_core::map::prove(&self.map, label).unwrap();
            let committed = match committed.terminal() {
                kt_core::map::Terminal::Leaf { label: l, value } if l == label => Some(*value),
                _ => None,
            };
            self.pending
                .get(label)
                .copied()
                .or(committed)
                .unwrap_or(MapValue::new(0, [0; 32], 0))
        }

        fn message(&mut self, author: Label, text: &str, key: &UserSigner) -> u64 {
            let seq = self.sequences.entry(author).or_insert(0);
            *seq += 1;
            let m = Message::sign(
                Namespace::new("chat").unwrap(),
                author,
                *seq,
                text.as_bytes().to_vec(),
                key,
            )
            .unwrap();
            let seq = *seq;
            let value = self.value(&author).with_messages(seq, m.leaf_hash());
            self.pending.insert(author, value);
            self.push(m.encode())
        }

        fn record(&mut self, text: &str) -> u64 {
            let r = Record::new(Namespace::new("notes").unwrap(), text.as_bytes().to_vec());
            self.push(Entry::Record(r.unwrap()).encode())
        }

        /// Seals an epoch over everything appended so far, with the honest map root.
        fn seal(&mut self) -> Checkpoint {
            let pending = std::mem::take(&mut self.pending);
            let map_root = self.map.apply(&pending);
            self.seal_with(map_root)
        }

        /// Seals an epoch with whatever map root the caller says.
        fn seal_with(&mut self, map_root: Hash) -> Checkpoint {
            let prev = self.checkpoints.last().unwrap();
            let hashes: Vec<Hash> = self.entries.iter().map(|e| leaf_hash(e)).collect();
            let cp = Checkpoint {
                origin: prev.origin.clone(),
                size: self.entries.len() as u64,
                root: if hashes.is_empty() {
                    empty_root()
                } else {
                    root_of_leaf_hashes(&hashes)
                },
                epoch: prev.epoch + 1,
                map_root,
                prev: prev.body_hash(),
                time_ms: prev.time_ms + 1000,
            };
            cp.follows(prev).unwrap();
            self.checkpoints.push(cp.clone());
            cp
        }

        /// Replays the whole log the way the auditor walks it: each checkpoint's entries, then
        /// the checkpoint. Twice: with each epoch's entries prepared on every core, and one by
        /// one with every signature verified by the rules; both must reach the same verdict
        /// (every test below runs both).
        fn replay(&self) -> Result<Replay, ReplayViolation> {
            let prepared = self.replay_with(true);
            let one_by_one = self.replay_with(false);
            match (&prepared, &one_by_one) {
                (Ok(a), Ok(b)) => assert_eq!(
                    (a.map_root(), a.next_index(), a.label_count()),
                    (b.map_root(), b.next_index(), b.label_count())
                ),
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("prepared: {prepared:?}, one by one: {one_by_one:?}"),
            }
            prepared
        }

        fn replay_with(&self, prepared: bool) -> Result<Replay, ReplayViolation> {
            let mut replay = Replay::new();
            let mut next = 0u64;
            for cp in &self.checkpoints {
                let end = cp.size.max(next) as usize;
                let epoch = &self.entries[next as usize..end];
                replay.begin_epoch(cp);
                if prepared {
                    for (bytes, ready) in epoch.iter().zip(prepare_entries(epoch)) {
                        replay.apply_prepared(next, bytes, ready)?;
                        next += 1;
                    }
                } else {
                    for bytes in epoch {
                        replay.apply_entry(next, bytes)?;
                        next += 1;
                    }
                }
                replay.finish_epoch(cp)?;
            }
            Ok(replay)
        }
    }

    fn register(log: &mut Log, who: Label, key: &UserSigner) -> u64 {
        let u = log
            .next_update(who, Op::Register, Some(key))
            .sign(Role::NewKey, key)
            .unwrap();
        log.update(u)
    }

    fn rotate(log: &mut Log, who: Label, old: &UserSigner, new: &UserSigner) -> u64 {
        let u = log
            .next_update(who, Op::Rotate, Some(new))
            .sign(Role::PreviousKey, old)
            .unwrap()
            .sign(Role::NewKey, new)
            .unwrap();
        log.update(u)
    }

    /// Alice and Bob register, talk, Alice rotates, revokes, recovers, and talks again, over
    /// several epochs, one of them without any key update (only a message) and one empty.
    fn honest_log() -> Log {
        let (alice, bob) = (label("alice@example.com"), label("bob@example.com"));
        let (k1, k2, k3, kb) = (signer(1), signer(2), signer(3), signer(9));
        let mut log = Log::new();
        log.record("before the directory");
        register(&mut log, alice, &k1);
        register(&mut log, bob, &kb);
        log.message(alice, "hi bob", &k1);
        log.seal();
        log.message(bob, "hi alice", &kb);
        rotate(&mut log, alice, &k1, &k2);
        log.message(alice, "new key", &k2);
        log.seal();
        log.message(bob, "still there?", &kb);
        log.record("no key update in this epoch");
        log.seal();
        log.seal(); // empty epoch
        let revoke = log
            .next_update(alice, Op::Revoke, None)
            .sign(Role::PreviousKey, &k2)
            .unwrap();
        log.update(revoke);
        let recover = log
            .next_update(alice, Op::Recover, Some(&k3))
            .sign(Role::NewKey, &k3)
            .unwrap();
        log.update(recover);
        log.message(alice, "recovered", &k3);
        log.seal();
        log
    }

    #[test]
    fn honest_log_replays_and_every_map_root_matches() {
        let log = honest_log();
        let replay = log.replay().unwrap();
        let last = log.checkpoints.last().unwrap();
        assert_eq!(replay.next_index(), last.size);
        assert_eq!(replay.last_epoch(), Some(last.epoch));
        assert_eq!(replay.map_root(), last.map_root);
        assert_ne!(replay.map_root(), EMPTY_HASH);
        assert_eq!(replay.label_count(), 2);
        let alice = replay.label(&label("alice@example.com")).unwrap();
        assert_eq!((alice.version, alice.recovered), (4, true));
        assert_eq!(alice.key, Some(signer(3).public()));
        // The epoch without key updates changed Bob's message count; the empty epoch kept the
        // root before it.
        assert_ne!(log.checkpoints[3].map_root, log.checkpoints[2].map_root);
        assert_eq!(log.checkpoints[4].map_root, log.checkpoints[3].map_root);
        assert!(replay.refused_changes().is_empty());
    }

    #[test]
    fn a_log_without_key_updates_keeps_the_zero_map_root() {
        let mut log = Log::new();
        log.record("one");
        log.seal();
        log.record("two");
        log.record("three");
        log.seal();
        assert!(log.checkpoints.iter().all(|c| c.map_root == [0; 32]));
        assert_eq!(log.replay().unwrap().map_root(), [0; 32]);
    }

    #[test]
    fn resuming_in_one_epoch_gives_the_last_root() {
        // A restarted auditor replays everything up to its stored checkpoint as one epoch.
        let log = honest_log();
        let last = log.checkpoints.last().unwrap();
        let mut replay = Replay::new();
        for (i, e) in log.entries.iter().enumerate() {
            replay.apply_entry(i as u64, e).unwrap();
        }
        replay.finish_epoch(last).unwrap();
    }

    #[test]
    fn skipped_version_is_caught() {
        let alice = label("alice@example.com");
        let (k1, k2) = (signer(1), signer(2));
        let mut log = Log::new();
        let reg = register(&mut log, alice, &k1);
        // Version 3 right after version 1, correctly chained and signed.
        let prev = log.heads[&alice].1;
        let skip = KeyUpdate::new(alice, 3, prev, Op::Rotate, Some(k2.public()), T0 + 3)
            .unwrap()
            .sign(Role::PreviousKey, &k1)
            .unwrap()
            .sign(Role::NewKey, &k2)
            .unwrap();
        let bad = log.update(skip);
        log.seal();
        let err = log.replay().unwrap_err();
        assert_eq!(
            err,
            ReplayViolation::Update {
                index: bad,
                label: alice,
                op: Op::Rotate,
                rule: Box::new(RuleError::SkippedVersion { want: 2, got: 3 }),
                prior: Some(reg),
            }
        );
        assert_eq!(err.rule(), "skipped-version");
        assert_eq!((err.index(), err.prior()), (Some(bad), Some(reg)));
        assert!(err.is_log_violation());
    }

    #[test]
    fn replayed_registration_is_caught() {
        let alice = label("alice@example.com");
        let k1 = signer(1);
        let mut log = Log::new();
        register(&mut log, alice, &k1);
        let again = log.entries[0].clone();
        let bad = log.push(again);
        log.seal();
        assert!(matches!(
            log.replay(),
            Err(ReplayViolation::Update { index, rule, .. })
                if index == bad && *rule == RuleError::AlreadyRegistered
        ));
    }

    #[test]
    fn wrong_prev_is_caught() {
        let alice = label("alice@example.com");
        let (k1, k2) = (signer(1), signer(2));
        let mut log = Log::new();
        let reg = register(&mut log, alice, &k1);
        log.seal();
        // Version 2 names some other entry as its predecessor (a fork of alice's chain).
        let fake_prev = leaf_hash(b"not alice's registration");
        let forked = KeyUpdate::new(alice, 2, fake_prev, Op::Rotate, Some(k2.public()), T0)
            .unwrap()
            .sign(Role::PreviousKey, &k1)
            .unwrap()
            .sign(Role::NewKey, &k2)
            .unwrap();
        let bad = log.update(forked);
        log.seal();
        let err = log.replay().unwrap_err();
        assert_eq!(
            err,
            ReplayViolation::Update {
                index: bad,
                label: alice,
                op: Op::Rotate,
                rule: Box::new(RuleError::WrongPrev {
                    want: leaf_hash(&log.entries[reg as usize]),
                    got: fake_prev
                }),
                prior: Some(reg),
            }
        );
        assert_eq!(err.rule(), "wrong-prev");
    }

    #[test]
    fn rotate_signed_by_another_key_is_caught() {
        let alice = label("alice@example.com");
        let (k1, k2, mallory) = (signer(1), signer(2), signer(66));
        let mut log = Log::new();
        let reg = register(&mut log, alice, &k1);
        log.seal();
        // Signed as the previous key by a key that is not alice's.
        let bad = rotate(&mut log, alice, &mallory, &k2);
        log.seal();
        let err = log.replay().unwrap_err();
        assert_eq!(
            err,
            ReplayViolation::Update {
                index: bad,
                label: alice,
                op: Op::Rotate,
                rule: Box::new(RuleError::BadSignature {
                    role: Role::PreviousKey
                }),
                prior: Some(reg),
            }
        );
        assert_eq!(err.rule(), "bad-signature");
    }

    #[test]
    fn message_with_skipped_sequence_is_caught() {
        let alice = label("alice@example.com");
        let k1 = signer(1);
        let mut log = Log::new();
        register(&mut log, alice, &k1);
        let first = log.message(alice, "one", &k1);
        log.seal();
        log.sequences.insert(alice, 2); // the next message claims sequence 3
        let bad = log.message(alice, "three", &k1);
        log.seal();
        let err = log.replay().unwrap_err();
        assert_eq!(
            err,
            ReplayViolation::Message {
                index: bad,
                author: alice,
                sequence: 3,
                rule: Box::new(RuleError::SkippedSequence { want: 2, got: 3 }),
                prior: Some(first),
            }
        );
        assert_eq!(err.rule(), "skipped-sequence");
    }

    #[test]
    fn message_with_a_bad_signature_is_caught() {
        let alice = label("alice@example.com");
        let (k1, k2) = (signer(1), signer(2));
        let mut log = Log::new();
        register(&mut log, alice, &k1);
        let rot = rotate(&mut log, alice, &k1, &k2);
        // Signed with alice's old key, which the rotation replaced.
        let bad = log.message(alice, "stale key", &k1);
        log.seal();
        let err = log.replay().unwrap_err();
        assert_eq!(
            err,
            ReplayViolation::Message {
                index: bad,
                author: alice,
                sequence: 1,
                rule: Box::new(RuleError::BadMessageSignature),
                prior: Some(rot),
            }
        );
    }

    #[test]
    fn undecodable_entry_is_caught() {
        let mut log = Log::new();
        log.record("fine");
        let bad = log.push(vec![0x01, 0x02, 0x00]);
        log.seal();
        let err = log.replay().unwrap_err();
        assert!(matches!(err, ReplayViolation::Undecodable { index, .. } if index == bad));
        assert_eq!(err.rule(), "invalid-entry");
    }

    #[test]
    fn map_root_that_does_not_follow_is_caught() {
        let alice = label("alice@example.com");
        let mut log = Log::new();
        register(&mut log, alice, &signer(1));
        log.seal();
        log.record("nothing for the map");
        let honest = log.checkpoints.last().unwrap().map_root;
        let forged = leaf_hash(b"some other map");
        log.seal_with(forged);
        let err = log.replay().unwrap_err();
        assert_eq!(
            err,
            ReplayViolation::MapRoot {
                epoch: 2,
                start: 1,
                end: 2,
                signed: forged,
                replayed: honest,
            }
        );
        assert_eq!(err.rule(), "map-root");
    }

    #[test]
    fn non_zero_map_root_without_key_updates_is_caught() {
        let mut log = Log::new();
        log.record("one");
        log.seal_with([1; 32]);
        assert!(matches!(
            log.replay(),
            Err(ReplayViolation::MapRoot { epoch: 1, replayed, .. }) if replayed == EMPTY_HASH
        ));
    }

    #[test]
    fn genesis_with_a_non_empty_map_is_caught() {
        let mut log = Log::new();
        log.checkpoints[0].map_root = [7; 32];
        assert!(matches!(
            log.replay(),
            Err(ReplayViolation::MapRoot {
                epoch: 0,
                start: 0,
                end: 0,
                ..
            })
        ));
    }

    #[test]
    fn map_effect_sealed_an_epoch_early_is_caught() {
        // Bob's registration is appended in epoch 2, but epoch 1's checkpoint already carries it.
        let (alice, bob) = (label("alice@example.com"), label("bob@example.com"));
        let mut log = Log::new();
        register(&mut log, alice, &signer(1));
        let bob_reg = log
            .next_update(bob, Op::Register, Some(&signer(2)))
            .sign(Role::NewKey, &signer(2))
            .unwrap();
        let mut both = log.pending.clone();
        both.insert(bob, MapValue::new(1, bob_reg.leaf_hash(), 1));
        let early_root = MemoryMap::new().apply(&both);
        log.seal_with(early_root); // epoch 1: entry 0 only, with the map of entries 0 and 1
        log.update(bob_reg);
        let cp2 = log.seal(); // epoch 2: the honest root of both
        assert_eq!(cp2.map_root, early_root);
        let err = log.replay().unwrap_err();
        assert!(matches!(
            err,
            ReplayViolation::MapRoot { epoch: 1, start: 0, end: 1, signed, .. }
                if signed == early_root
        ));
    }

    #[test]
    fn map_effect_sealed_an_epoch_late_is_caught() {
        // Alice's rotation is in epoch 2, but only epoch 3's checkpoint carries its effect.
        let alice = label("alice@example.com");
        let (k1, k2) = (signer(1), signer(2));
        let mut log = Log::new();
        register(&mut log, alice, &k1);
        log.seal();
        let before = log.checkpoints.last().unwrap().map_root;
        let rot = rotate(&mut log, alice, &k1, &k2);
        log.seal_with(before); // the rotation's effect is held back...
        log.record("later");
        let late = log.seal(); // ...and applied here
        assert_ne!(late.map_root, before);
        let mut replay = Replay::new();
        let mut err = None;
        for cp in &log.checkpoints {
            while replay.next_index() < cp.size {
                let i = replay.next_index();
                replay.apply_entry(i, &log.entries[i as usize]).unwrap();
            }
            if let Err(e) = replay.finish_epoch(cp) {
                err = Some(e);
                break;
            }
        }
        // The evidence names what the epoch changed: alice's rotation.
        let changed: Vec<_> = replay.refused_changes().iter().collect();
        assert_eq!(changed.len(), 1);
        assert_eq!((changed[0].0, changed[0].1.index), (&alice, rot));
        assert_eq!(
            err.unwrap(),
            ReplayViolation::MapRoot {
                epoch: 2,
                start: 1,
                end: rot + 1,
                signed: before,
                replayed: late.map_root,
            }
        );
    }

    #[test]
    fn map_value_names_the_update_entry_and_its_index() {
        // A checkpoint whose map holds the right version but another index is refused.
        let alice = label("alice@example.com");
        let mut log = Log::new();
        log.record("padding");
        let reg = register(&mut log, alice, &signer(1));
        let hash = leaf_hash(&log.entries[reg as usize]);
        log.pending.clear();
        let mut wrong = BTreeMap::new();
        wrong.insert(alice, MapValue::new(1, hash, reg + 1));
        let root = log.map.apply(&wrong);
        log.seal_with(root);
        assert!(matches!(
            log.replay(),
            Err(ReplayViolation::MapRoot { epoch: 1, .. })
        ));
    }

    #[test]
    fn a_refused_entry_leaves_the_state_unchanged() {
        let alice = label("alice@example.com");
        let (k1, k2, mallory) = (signer(1), signer(2), signer(66));
        let mut log = Log::new();
        register(&mut log, alice, &k1);
        rotate(&mut log, alice, &mallory, &k2);
        let mut replay = Replay::new();
        replay.apply_entry(0, &log.entries[0]).unwrap();
        let before = replay.label(&alice).cloned();
        assert!(replay.apply_entry(1, &log.entries[1]).is_err());
        assert_eq!(replay.label(&alice).cloned(), before);
        assert_eq!(replay.next_index(), 1);
    }

    #[test]
    fn caller_mistakes_are_not_log_violations() {
        let log = honest_log();
        let mut replay = Replay::new();
        let err = replay.apply_entry(1, &log.entries[1]).unwrap_err();
        assert_eq!(err, ReplayViolation::OutOfOrder { next: 0, got: 1 });
        assert!(!err.is_log_violation());
        let err = replay.finish_epoch(&log.checkpoints[1]).unwrap_err();
        assert!(matches!(
            err,
            ReplayViolation::EpochIncomplete { applied: 0, .. }
        ));
        assert!(!err.is_log_violation());
    }

    #[test]
    fn violations_stay_small() {
        // Returned by value on every entry; keep the Ok path cheap.
        assert!(std::mem::size_of::<ReplayViolation>() <= 96);
    }

    /// A key update's `time_ms` is held to the `time` of the checkpoint that closes its epoch,
    /// ± `MAX_UPDATE_SKEW_MS` (the server's rule): 0 and 2^64 - 1 are violations naming the
    /// entry; the bound itself passes. A replay told no checkpoint time (resumed over many epochs)
    /// does not check it.
    #[test]
    fn an_update_far_from_its_epochs_time_is_a_violation() {
        use kt_core::directory::MAX_UPDATE_SKEW_MS;
        let k = signer(4);
        let dated = |who: Label, time_ms: u64| {
            KeyUpdate::new(who, 1, [0; 32], Op::Register, Some(k.public()), time_ms)
                .unwrap()
                .sign(Role::NewKey, &k)
                .unwrap()
        };
        // The next checkpoint's time is the genesis time + 1 s.
        let epoch_time = T0 + 1000;
        for ok in [
            epoch_time - MAX_UPDATE_SKEW_MS,
            epoch_time + MAX_UPDATE_SKEW_MS,
        ] {
            let mut log = Log::new();
            let u = dated(label("carol@example.com"), ok);
            log.update(u);
            log.seal();
            assert!(log.replay().is_ok(), "{ok}");
        }
        for bad in [0, u64::MAX, epoch_time + MAX_UPDATE_SKEW_MS + 1] {
            let mut log = Log::new();
            log.record("first");
            let carol = label("carol@example.com");
            let u = dated(carol, bad);
            let index = log.update(u);
            log.seal();
            let v = log.replay().unwrap_err();
            assert_eq!(
                v,
                ReplayViolation::Update {
                    index,
                    label: carol,
                    op: Op::Register,
                    rule: Box::new(RuleError::UpdateTime {
                        time_ms: bad,
                        epoch_time_ms: epoch_time,
                        skew_ms: MAX_UPDATE_SKEW_MS,
                    }),
                    prior: None,
                }
            );
            assert_eq!(v.rule(), "update-time");
            assert!(v.is_log_violation());
            // Without the checkpoint's time, as in a resumed replay, it is not checked.
            let mut resumed = Replay::new();
            for (i, bytes) in log.entries.iter().enumerate() {
                resumed.apply_entry(i as u64, bytes).unwrap();
            }
            resumed
                .finish_epoch(log.checkpoints.last().unwrap())
                .unwrap();
        }
    }
}
