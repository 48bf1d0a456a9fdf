//! Evidence of a violation: everything needed for anyone to re-check it with the log's key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::Hash;
use kt_core::trust::Violation;
use serde::Serialize;

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
        }
    }
}
