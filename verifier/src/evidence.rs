//! Evidence of a violation: everything needed for anyone to re-check it with the log's key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::BTreeMap;

use kt_core::checkpoint::SignedCheckpoint;
use kt_core::directory::Label;
use kt_core::hash::Hash;
use kt_core::map::MapValue;
use kt_core::trust::Violation;
use serde::Serialize;

use crate::replay::{hex, ReplayViolation};

/// One violation found by the auditor.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Short machine-readable kind, e.g. `fork`, `rollback`, `broken-chain`, `root-mismatch`.
    pub kind: String,
    pub detail: String,
    /// The epoch of the offending checkpoint.
    pub epoch: u64,
    /// The signed checkpoint notes involved, verbatim.
    pub checkpoints: Vec<String>,
    /// A consistency proof involved, base64 hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consistency_proof: Vec<String>,
    /// An offending entry: index and base64 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<(u64, String)>,
    /// A tile that disagrees: its path, the served bytes and the recomputed bytes (base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tile: Option<TileEvidence>,
    /// A directory entry or map root that does not follow from the log (kinds `directory-rule`,
    /// `map-root-mismatch`, and `invalid-entry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayEvidence>,
    /// For a checkpoint dated in the future (kind `future-checkpoint`): the auditor's clock when
    /// it refused it, and the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockEvidence>,
}

/// The auditor's clock against a checkpoint's `time` (kind `future-checkpoint`). The signed note
/// proves the log signed that time; the clock reading is the auditor's word, so anyone checking
/// the evidence compares the note's time with their own clock too.
#[derive(Debug, Clone, Serialize)]
pub struct ClockEvidence {
    /// The checkpoint's `time`.
    pub checkpoint_time_ms: u64,
    /// The auditor's (or witness's) clock when it checked.
    pub auditor_time_ms: u64,
    pub ahead_ms: u64,
    pub max_ahead_ms: u64,
}

/// What the directory replay found: the rule broken and the entries or map roots involved.
/// Bytes and hashes are lowercase hex.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayEvidence {
    /// The rule broken, e.g. `skipped-version`, `wrong-prev`, `bad-signature`,
    /// `skipped-sequence`, `bad-message-signature`, `invalid-entry`, `map-root`.
    pub rule: String,
    /// The offending entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryEvidence>,
    /// The earlier entry the rule compared it with: the label's latest key update, or for a
    /// message the author's previous message (sequence) or latest key update (signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_entry: Option<EntryEvidence>,
    /// For a map root: the entries `[start, end)` replayed into the previous checkpoint's map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch_entries: Option<[u64; 2]>,
    /// For a map root: the root the checkpoint signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_map_root: Option<String>,
    /// For a map root: the root the entries give.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_map_root: Option<String>,
    /// For a map root: how many labels the entries changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_count: Option<usize>,
    /// For a map root: the values the entries set, by label (omitted beyond
    /// [`ReplayEvidence::MAX_CHANGES`] labels).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<MapChange>,
}

impl ReplayEvidence {
    /// Most changed labels listed in one evidence file.
    pub const MAX_CHANGES: usize = 10_000;
}

impl EntryEvidence {
    /// `proof`: an inclusion proof the caller has verified, if any.
    pub fn new(index: u64, bytes: &[u8], proof: Option<&[Hash]>) -> Self {
        EntryEvidence {
            index,
            hex: hex(bytes),
            inclusion_proof: proof.map(|p| p.iter().map(|h| hex(h)).collect()),
        }
    }
}

/// One entry of the log, with a proof that the last checkpoint of the finding includes it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryEvidence {
    pub index: u64,
    /// The canonical entry bytes.
    pub hex: String,
    /// RFC 9162 inclusion proof (hashes, hex) of the entry in the last checkpoint of the
    /// finding; absent if the server did not give one that verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inclusion_proof: Option<Vec<String>>,
}

/// One label's map value as the replay computed it.
#[derive(Debug, Clone, Serialize)]
pub struct MapChange {
    pub label: String,
    pub version: u64,
    pub entry_hash: String,
    pub index: u64,
    pub message_count: u64,
    pub last_message_hash: String,
}

/// A served tile and what it should have been.
#[derive(Debug, Clone, Serialize)]
pub struct TileEvidence {
    pub path: String,
    pub served: String,
    pub expected: String,
}

impl Finding {
    pub fn single(kind: &str, detail: impl Into<String>, cp: &SignedCheckpoint) -> Self {
        Finding {
            kind: kind.to_owned(),
            detail: detail.into(),
            epoch: cp.checkpoint().epoch,
            checkpoints: vec![cp.note().to_owned()],
            consistency_proof: Vec::new(),
            entry: None,
            tile: None,
            replay: None,
            clock: None,
        }
    }

    /// A checkpoint dated more than the allowed bound after this auditor's clock.
    pub fn future(
        future: &kt_core::trust::FromTheFuture,
        cp: &SignedCheckpoint,
        detail: impl Into<String>,
    ) -> Self {
        Finding {
            clock: Some(ClockEvidence {
                checkpoint_time_ms: future.time_ms,
                auditor_time_ms: future.now_ms,
                ahead_ms: future.ahead_ms,
                max_ahead_ms: future.max_ms,
            }),
            ..Finding::single("future-checkpoint", detail, cp)
        }
    }

    pub fn entry(
        kind: &str,
        detail: impl Into<String>,
        cp: &SignedCheckpoint,
        index: u64,
        bytes: &[u8],
    ) -> Self {
        Finding {
            entry: Some((index, B64.encode(bytes))),
            ..Finding::single(kind, detail, cp)
        }
    }

    pub fn pair(
        kind: &str,
        detail: impl Into<String>,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
        proof: &[Hash],
    ) -> Self {
        Finding {
            checkpoints: vec![old.note().to_owned(), new.note().to_owned()],
            consistency_proof: proof.iter().map(|h| B64.encode(h)).collect(),
            ..Finding::single(kind, detail, new)
        }
    }

    pub fn tile(
        kind: &str,
        detail: impl Into<String>,
        cp: &SignedCheckpoint,
        path: String,
        served: &[u8],
        expected: &[u8],
    ) -> Self {
        Finding {
            tile: Some(TileEvidence {
                path,
                served: B64.encode(served),
                expected: B64.encode(expected),
            }),
            ..Finding::single(kind, detail, cp)
        }
    }
}

impl Finding {
    /// The finding of a replay violation (kinds `invalid-entry`, `directory-rule`,
    /// `map-root-mismatch`). `checkpoints` are oldest first, the last one the checkpoint whose
    /// epoch broke the rule; `entry` is the offending entry's evidence and bytes (also given in
    /// the `entry` field, base64, like every entry finding); `prior` the entry it was compared
    /// with; `changes` what the epoch of a refused map root changed.
    pub fn from_replay(
        v: &ReplayViolation,
        checkpoints: &[&SignedCheckpoint],
        entry: Option<(EntryEvidence, &[u8])>,
        prior: Option<EntryEvidence>,
        changes: &BTreeMap<Label, MapValue>,
    ) -> Self {
        let last = checkpoints
            .last()
            .expect("a replay finding names its checkpoint");
        let (entry_evidence, entry_bytes) = entry.unzip();
        let mut evidence = ReplayEvidence {
            rule: v.rule().to_owned(),
            entry: entry_evidence,
            prior_entry: prior,
            ..ReplayEvidence::default()
        };
        let kind = match v {
            ReplayViolation::Undecodable { .. } => "invalid-entry",
            ReplayViolation::MapRoot {
                start,
                end,
                signed,
                replayed,
                ..
            } => {
                evidence.epoch_entries = Some([*start, *end]);
                evidence.signed_map_root = Some(hex(signed));
                evidence.replayed_map_root = Some(hex(replayed));
                evidence.changed_count = Some(changes.len());
                if changes.len() <= ReplayEvidence::MAX_CHANGES {
                    evidence.changed = changes
                        .iter()
                        .map(|(label, value)| MapChange {
                            label: hex(label.as_bytes()),
                            version: value.version,
                            entry_hash: hex(&value.entry_hash),
                            index: value.index,
                            message_count: value.message_count,
                            last_message_hash: hex(&value.last_message_hash),
                        })
                        .collect();
                }
                "map-root-mismatch"
            }
            _ => "directory-rule",
        };
        Finding {
            checkpoints: checkpoints.iter().map(|c| c.note().to_owned()).collect(),
            entry: v.index().zip(entry_bytes).map(|(i, b)| (i, B64.encode(b))),
            replay: Some(evidence),
            ..Finding::single(kind, v.to_string(), last)
        }
    }
}

impl From<Violation> for Finding {
    fn from(v: Violation) -> Self {
        let e = v.evidence();
        let epoch = kt_core::checkpoint::Checkpoint::parse_body(
            e.new_note
                .split("\n\n")
                .next()
                .map(|b| format!("{b}\n"))
                .as_deref()
                .unwrap_or(""),
        )
        .map(|c| c.epoch)
        .unwrap_or(0);
        Finding {
            kind: e.kind.clone(),
            detail: v.to_string(),
            epoch,
            checkpoints: vec![e.trusted_note.clone(), e.new_note.clone()],
            consistency_proof: e.consistency_proof.clone(),
            entry: None,
            tile: None,
            replay: None,
            clock: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Replay;
    use kt_core::checkpoint::Checkpoint;
    use kt_core::directory::{KeyUpdate, Op, Role, UserSigner};
    use kt_core::hash::leaf_hash;
    use kt_core::merkle::root_of_leaf_hashes;
    use kt_core::note::{KeyName, NoteSigner};

    fn signed(cp: Checkpoint) -> SignedCheckpoint {
        let key = NoteSigner::from_seed(KeyName::new("example.com/log").unwrap(), [5; 32]);
        SignedCheckpoint::sign(cp, &key).unwrap()
    }

    #[test]
    fn rule_finding_names_the_entry_the_rule_and_both_checkpoints() {
        let alice = Label::from_identifier("alice@example.com").unwrap();
        let (k1, k2) = (
            UserSigner::ed25519_from_seed([1; 32]),
            UserSigner::ed25519_from_seed([2; 32]),
        );
        let reg = KeyUpdate::new(alice, 1, [0; 32], Op::Register, Some(k1.public()), 1)
            .unwrap()
            .sign(Role::NewKey, &k1)
            .unwrap()
            .encode();
        let skip = KeyUpdate::new(alice, 3, leaf_hash(&reg), Op::Rotate, Some(k2.public()), 2)
            .unwrap()
            .sign(Role::PreviousKey, &k1)
            .unwrap()
            .sign(Role::NewKey, &k2)
            .unwrap()
            .encode();
        let mut replay = Replay::new();
        replay.apply_entry(0, &reg).unwrap();
        let v = replay.apply_entry(1, &skip).unwrap_err();

        let genesis = Checkpoint::genesis("example.com/log", 1);
        let cp = Checkpoint {
            origin: genesis.origin.clone(),
            size: 2,
            root: root_of_leaf_hashes(&[leaf_hash(&reg), leaf_hash(&skip)]),
            epoch: 1,
            map_root: [0; 32],
            prev: genesis.body_hash(),
            time_ms: 2,
        };
        let (genesis, cp) = (signed(genesis), signed(cp));
        let proof = [leaf_hash(&reg)];
        let finding = Finding::from_replay(
            &v,
            &[&genesis, &cp],
            Some((EntryEvidence::new(1, &skip, Some(&proof)), &skip)),
            Some(EntryEvidence::new(0, &reg, Some(&[leaf_hash(&skip)]))),
            replay.refused_changes(),
        );
        assert_eq!(
            (finding.kind.as_str(), finding.epoch),
            ("directory-rule", 1)
        );
        assert_eq!(finding.checkpoints, vec![genesis.note(), cp.note()]);
        assert!(finding.detail.contains("version must be 2, got 3"));
        let json: serde_json::Value = serde_json::to_value(&finding).unwrap();
        let r = &json["replay"];
        assert_eq!(r["rule"], "skipped-version");
        assert_eq!(r["entry"]["index"], 1);
        assert_eq!(r["entry"]["hex"], hex(&skip));
        assert_eq!(r["entry"]["inclusion_proof"][0], hex(&leaf_hash(&reg)));
        assert_eq!(r["prior_entry"]["index"], 0);
        assert_eq!(r["prior_entry"]["hex"], hex(&reg));
        assert!(r.get("signed_map_root").is_none());
        assert_eq!(json["entry"][0], 1);
        assert_eq!(json["entry"][1], B64.encode(&skip));
    }

    #[test]
    fn map_root_finding_gives_both_roots_and_the_changes() {
        let alice = Label::from_identifier("alice@example.com").unwrap();
        let k1 = UserSigner::ed25519_from_seed([1; 32]);
        let reg = KeyUpdate::new(alice, 1, [0; 32], Op::Register, Some(k1.public()), 1)
            .unwrap()
            .sign(Role::NewKey, &k1)
            .unwrap()
            .encode();
        let genesis = Checkpoint::genesis("example.com/log", 1);
        let cp = Checkpoint {
            origin: genesis.origin.clone(),
            size: 1,
            root: leaf_hash(&reg),
            epoch: 1,
            map_root: [0; 32], // forgot alice
            prev: genesis.body_hash(),
            time_ms: 2,
        };
        let mut replay = Replay::new();
        replay.finish_epoch(&genesis).unwrap();
        replay.apply_entry(0, &reg).unwrap();
        let v = replay.finish_epoch(&cp).unwrap_err();
        let (genesis, cp) = (signed(genesis), signed(cp));
        let finding =
            Finding::from_replay(&v, &[&genesis, &cp], None, None, replay.refused_changes());
        assert_eq!(finding.kind, "map-root-mismatch");
        let json: serde_json::Value = serde_json::to_value(&finding).unwrap();
        let r = &json["replay"];
        assert_eq!(r["rule"], "map-root");
        assert_eq!(r["epoch_entries"], serde_json::json!([0, 1]));
        assert_eq!(r["signed_map_root"], hex(&[0; 32]));
        assert_eq!(r["replayed_map_root"], hex(&replay.map_root()));
        assert_eq!(r["changed_count"], 1);
        assert_eq!(r["changed"][0]["label"], hex(alice.as_bytes()));
        assert_eq!(r["changed"][0]["entry_hash"], hex(&leaf_hash(&reg)));
        assert_eq!(r["changed"][0]["index"], 0);
        assert!(json.get("entry").is_none());
    }
}
