//! The auditor's state on disk: the last audited checkpoint, the right border of the tree it
//! recomputed, and the tile hashes not yet compared. A restart continues from here.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::Hash;
use kt_core::merkle::Frontier;
use kt_core::note::NoteVerifier;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    log_key: String,
    checkpoint: Option<String>,
    size: u64,
    frontier: Vec<String>,
    /// Per tile level, the hashes of the incomplete tile (compared when it fills up).
    pending_tiles: Vec<Vec<String>>,
}

/// What the auditor has verified so far.
#[derive(Debug, Clone)]
pub struct AuditState {
    pub checkpoint: Option<SignedCheckpoint>,
    pub frontier: Frontier,
    pub pending_tiles: Vec<Vec<Hash>>,
}

fn decode_hash(s: &str) -> anyhow::Result<Hash> {
    let bytes = B64.decode(s)?;
    Hash::try_from(bytes.as_slice()).map_err(|_| anyhow::anyhow!("hash of {} bytes", bytes.len()))
}

impl AuditState {
    pub fn empty() -> Self {
        AuditState {
            checkpoint: None,
            frontier: Frontier::new(),
            pending_tiles: Vec::new(),
        }
    }

    /// Loads the state in `path`, or an empty state if there is none yet.
    pub fn load(path: &Path, verifier: &NoteVerifier) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        let disk: OnDisk = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not an audit state: {e}", path.display()))?;
        let key = verifier.to_string();
        anyhow::ensure!(
            disk.log_key == key,
            "{} audits log key {}, not {key}; use another --state-dir",
            path.display(),
            disk.log_key
        );
        let checkpoint = disk
            .checkpoint
            .map(|n| SignedCheckpoint::open(n.as_bytes(), verifier.name().as_str(), verifier))
            .transpose()?;
        let hashes = disk
            .frontier
            .iter()
            .map(|h| decode_hash(h))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let frontier = Frontier::from_hashes(disk.size, hashes)?;
        let pending_tiles = disk
            .pending_tiles
            .iter()
            .map(|level| level.iter().map(|h| decode_hash(h)).collect())
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(cp) = &checkpoint {
            anyhow::ensure!(
                cp.checkpoint().size == frontier.size() && cp.checkpoint().root == frontier.root(),
                "{} is inconsistent: its tree does not match its checkpoint",
                path.display()
            );
        }
        Ok(AuditState {
            checkpoint,
            frontier,
            pending_tiles,
        })
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path, verifier: &NoteVerifier) -> anyhow::Result<()> {
        let disk = OnDisk {
            version: 1,
            log_key: verifier.to_string(),
            checkpoint: self.checkpoint.as_ref().map(|c| c.note().to_owned()),
            size: self.frontier.size(),
            frontier: self
                .frontier
                .hashes()
                .iter()
                .map(|h| B64.encode(h))
                .collect(),
            pending_tiles: self
                .pending_tiles
                .iter()
                .map(|l| l.iter().map(|h| B64.encode(h)).collect())
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&disk)?;
        kt_client::write_atomically(path, &json)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
    }
}
