//! The directory's share of one epoch, run by the sequencer: each entry is checked against the
//! directory's rules as of the entries before it (stored state plus this epoch's earlier
//! entries), and the accepted ones become label states, index rows and map values.

use std::collections::{BTreeMap, HashMap};

use kt_core::directory::{
    apply_message, apply_update_verified, check_update_time, Label, LabelState, Op, RuleError,
    VerifiedSignatures,
};
use kt_core::entry::{Entry, EntryError};
use kt_core::hash::Hash;
use kt_core::map::{apply_updates, MapError, MapValue};

use crate::directory_store::DirectoryWrite;
use crate::storage::{Storage, StorageError};

/// Why one entry was refused. Only that request fails; the epoch goes on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Rejection {
    #[error("malformed entry: {0}")]
    Malformed(#[from] EntryError),
    #[error("{0}")]
    Rule(#[from] RuleError),
    /// A second update of one label in one epoch. The map holds one value per label per epoch,
    /// so the first update's receipt (a map proof naming it) could never be given; the caller
    /// retries once the epoch has closed. Messages never cause it: a message changes only the
    /// message fields of its author's value, which no receipt names (`docs/protocol.md` §11).
    #[error("label {0} already has an update in this epoch; retry after it closes")]
    SameEpoch(Label),
}

/// The epoch's view of the directory: what storage holds, overlaid by this epoch's changes.
pub struct EpochDirectory<'a> {
    storage: &'a Storage,
    /// The `time` the epoch's checkpoint will carry: every key update's `time_ms` must be
    /// within the skew of it.
    time_ms: u64,
    labels: HashMap<Label, LabelState>,
    /// Authors' latest `(sequence, leaf hash)` as of the entries admitted so far; 0 and zeros
    /// for an author without messages.
    messages: HashMap<Label, (u64, Hash)>,
    values: BTreeMap<Label, MapValue>,
    write: DirectoryWrite,
}

impl std::fmt::Debug for EpochDirectory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochDirectory")
            .field("changed_labels", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl<'a> EpochDirectory<'a> {
    /// The directory of an epoch whose checkpoint will carry `time_ms`.
    pub fn new(storage: &'a Storage, time_ms: u64) -> Self {
        EpochDirectory {
            storage,
            time_ms,
            labels: HashMap::new(),
            messages: HashMap::new(),
            values: BTreeMap::new(),
            write: DirectoryWrite::default(),
        }
    }

    fn state(&self, label: &Label) -> Result<Option<LabelState>, StorageError> {
        match self.labels.get(label) {
            Some(s) => Ok(Some(s.clone())),
            None => self.storage.label_state(label),
        }
    }

    /// The author's latest message as of the entries admitted so far.
    fn last_message(&self, author: &Label) -> Result<(u64, Hash), StorageError> {
        match self.messages.get(author) {
            Some(m) => Ok(*m),
            None => self.storage.last_message(author),
        }
    }

    /// Checks the entry that would get log index `index` and records its effect if allowed;
    /// signatures in `verified` (same key, message and bytes) are not verified again.
    /// `Ok(Err(_))` refuses this entry only; `Err(_)` is a storage failure that ends the epoch.
    pub fn admit(
        &mut self,
        entry: &[u8],
        leaf_hash: Hash,
        index: u64,
        verified: &VerifiedSignatures,
    ) -> Result<Result<(), Rejection>, StorageError> {
        let entry = match Entry::decode(entry) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.into())),
        };
        match entry {
            Entry::Record(_) => {}
            Entry::KeyUpdate(update) => {
                let label = *update.label();
                // `labels` holds exactly the labels updated in this epoch.
                if self.labels.contains_key(&label) {
                    return Ok(Err(Rejection::SameEpoch(label)));
                }
                let prev = self.state(&label)?;
                let next =
                    match apply_update_verified(prev.as_ref(), &update, leaf_hash, index, verified)
                    {
                        Ok(next) => next,
                        Err(e) => return Ok(Err(e.into())),
                    };
                // After the other rules, in the auditor's order (so both name the same rule).
                if let Err(e) = check_update_time(update.time_ms(), self.time_ms) {
                    return Ok(Err(e.into()));
                }
                self.record_update(label, next, leaf_hash, index)?;
            }
            Entry::Message(msg) => {
                let author = *msg.author();
                let state = self.state(&author)?;
                let (last, _) = self.last_message(&author)?;
                if let Err(e) = apply_message(state.as_ref(), last, &msg) {
                    return Ok(Err(e.into()));
                }
                let Some(state) = state else {
                    unreachable!("apply_message refuses an unregistered author")
                };
                self.record_message(author, &state, msg.sequence(), leaf_hash, index);
            }
        }
        Ok(Ok(()))
    }

    /// Records an allowed key update: the label's new state, its map value (the label's messages
    /// unchanged) and its version row.
    fn record_update(
        &mut self,
        label: Label,
        next: LabelState,
        leaf_hash: Hash,
        index: u64,
    ) -> Result<(), StorageError> {
        let (count, last) = self.last_message(&label)?;
        self.values.insert(
            label,
            MapValue::new(next.version, leaf_hash, index).with_messages(count, last),
        );
        self.write.versions.push((label, next.version, index));
        self.labels.insert(label, next);
        Ok(())
    }

    /// Records a message: its author's map value gets the message as the latest (the author's
    /// KeyUpdate fields unchanged), and its message row.
    fn record_message(
        &mut self,
        author: Label,
        state: &LabelState,
        sequence: u64,
        leaf_hash: Hash,
        index: u64,
    ) {
        self.values.insert(
            author,
            MapValue::new(state.version, state.leaf_hash, state.index)
                .with_messages(sequence, leaf_hash),
        );
        self.messages.insert(author, (sequence, leaf_hash));
        self.write
            .messages
            .push((author, sequence, index, leaf_hash));
    }

    /// **Test-only: a malicious operator's directory** (see
    /// `Sequencer::commit_forged_for_tests`). Records the entry's effect without checking the
    /// directory's rules: after a key update the label's state is whatever the update says
    /// (its version, its key, `recovered` for a recover), and a message becomes its author's
    /// latest. Only an entry that does not decode is refused. The server never calls it.
    #[doc(hidden)]
    pub fn admit_without_rules_for_tests(
        &mut self,
        entry: &[u8],
        leaf_hash: Hash,
        index: u64,
    ) -> Result<Result<(), Rejection>, StorageError> {
        match Entry::decode(entry) {
            Err(e) => return Ok(Err(e.into())),
            Ok(Entry::Record(_)) => {}
            Ok(Entry::KeyUpdate(update)) => {
                let next = LabelState {
                    version: update.version(),
                    leaf_hash,
                    index,
                    key: update.key().cloned(),
                    recovered: update.op() == Op::Recover,
                };
                self.record_update(*update.label(), next, leaf_hash, index)?;
            }
            Ok(Entry::Message(msg)) => {
                let author = *msg.author();
                // The map value keeps the author's latest KeyUpdate, if any (zeros if none: a
                // malicious operator may attribute a message to an unregistered label).
                let state = self.state(&author)?.unwrap_or(LabelState {
                    version: 0,
                    leaf_hash: [0; 32],
                    index: 0,
                    key: None,
                    recovered: false,
                });
                self.record_message(author, &state, msg.sequence(), leaf_hash, index);
            }
        }
        Ok(Ok(()))
    }

    /// Applies the epoch's map changes on top of the map as of `prev_epoch`: the new map root
    /// and everything the epoch's batch must write for the directory.
    pub fn finish(self, prev_epoch: u64) -> Result<(Hash, DirectoryWrite), MapError<StorageError>> {
        let update = apply_updates(&self.storage.map_at(prev_epoch), &self.values)?;
        let mut write = self.write;
        write.pages = update.pages;
        write.labels = self.labels.into_iter().collect();
        Ok((update.root, write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::directory::{KeyUpdate, Op, Role, UserSigner};
    use kt_core::hash::leaf_hash;

    #[test]
    fn a_second_update_of_a_label_waits_for_the_next_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (a, b) = (
            UserSigner::ed25519_from_seed([1; 32]),
            UserSigner::ed25519_from_seed([2; 32]),
        );
        let label = Label::from_identifier("alice@example.org").unwrap();
        let register = KeyUpdate::new(label, 1, [0; 32], Op::Register, Some(a.public()), 0)
            .unwrap()
            .sign(Role::NewKey, &a)
            .unwrap()
            .encode();
        let rotate = KeyUpdate::new(
            label,
            2,
            leaf_hash(&register),
            Op::Rotate,
            Some(b.public()),
            0,
        )
        .unwrap()
        .sign(Role::PreviousKey, &a)
        .unwrap()
        .sign(Role::NewKey, &b)
        .unwrap()
        .encode();
        let other = Label::from_identifier("bob@example.org").unwrap();
        let bob = KeyUpdate::new(other, 1, [0; 32], Op::Register, Some(b.public()), 0)
            .unwrap()
            .sign(Role::NewKey, &b)
            .unwrap()
            .encode();

        let none = VerifiedSignatures::default();
        let mut epoch = EpochDirectory::new(&storage, 0);
        assert!(epoch
            .admit(&register, leaf_hash(&register), 0, &none)
            .unwrap()
            .is_ok());
        // The rotation is valid by the rules, but its label already changed in this epoch.
        let refused = epoch.admit(&rotate, leaf_hash(&rotate), 1, &none).unwrap();
        assert!(matches!(refused, Err(Rejection::SameEpoch(l)) if l == label));
        // Other labels are unaffected.
        assert!(epoch
            .admit(&bob, leaf_hash(&bob), 1, &none)
            .unwrap()
            .is_ok());
        let (root, write) = epoch.finish(0).unwrap();
        assert_ne!(root, kt_core::map::EMPTY_HASH);
        assert_eq!(write.versions.len(), 2);
    }
}
