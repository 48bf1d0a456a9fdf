//! Start-up verification: the server serves nothing until storage is shown to match the last
//! checkpoint it signed (brief §5).

use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::{leaf_hash, Hash, HASH_SIZE};
use kt_core::merkle::{Frontier, HashReader};
use kt_core::note::NoteVerifier;
use kt_core::tiles::stored_position;
use kt_core::trust::check_link;

use crate::sequencer::RecoveryError;
use crate::storage::Storage;

/// How much of storage to re-verify at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartupCheck {
    /// Re-hash every entry, compare every stored tile hash and every checkpoint link: O(n).
    Full,
    /// Rebuild the root from the O(log n) stored subtree hashes of the right border only.
    Quick,
}

/// Storage as verified at start: the tree's right border and the last signed checkpoint.
#[derive(Debug)]
pub struct Recovered {
    pub frontier: Frontier,
    pub latest: Option<SignedCheckpoint>,
}

/// Entries are re-read in chunks so memory stays bounded whatever the log's size.
const CHUNK: u64 = 4096;

/// Checks storage against the last signed checkpoint; any mismatch refuses start-up.
pub fn recover(
    storage: &Storage,
    origin: &str,
    verifier: &NoteVerifier,
    check: StartupCheck,
) -> Result<Recovered, RecoveryError> {
    let Some((epoch, note)) = storage.latest_checkpoint()? else {
        if storage.has_entry_at_or_after(0)? {
            return Err(RecoveryError::Inconsistent(
                "entries are stored but no checkpoint is".into(),
            ));
        }
        return Ok(Recovered {
            frontier: Frontier::new(),
            latest: None,
        });
    };
    let latest = open(&note, epoch, origin, verifier)?;
    let cp = latest.checkpoint();
    let size = cp.size;

    let ids = Frontier::node_ids(size);
    let hashes = storage.read_hashes(&ids)?;
    let frontier = Frontier::from_hashes(size, hashes)
        .map_err(|e| RecoveryError::Inconsistent(e.to_string()))?;
    if frontier.root() != cp.root {
        return Err(RecoveryError::RootMismatch { epoch, size });
    }
    if storage.has_entry_at_or_after(size)? {
        return Err(RecoveryError::Inconsistent(format!(
            "entries are stored beyond the last checkpoint's size {size}"
        )));
    }
    // The map's stored pages must give the map root the last checkpoint signed.
    let map_root = kt_core::map::root_hash(&storage.map_at(epoch))
        .map_err(|e| RecoveryError::Inconsistent(format!("map: {e}")))?;
    if map_root != cp.map_root {
        return Err(RecoveryError::Inconsistent(format!(
            "the map root recomputed from storage does not match the last signed checkpoint (epoch {epoch}): stored map pages were modified or lost"
        )));
    }
    if check == StartupCheck::Full {
        verify_entries_and_tiles(storage, size, &cp.root, epoch)?;
        storage
            .check_tile_nodes()
            .map_err(|e| RecoveryError::Inconsistent(e.to_string()))?;
        verify_checkpoint_chain(storage, epoch, origin, verifier)?;
        // Every map page, not only the root: a page lower down that was altered or lost would
        // otherwise go unnoticed until a lookup's proof failed at a client. Pages are read from
        // their latest copies; those must equal the history's newest versions.
        storage
            .check_map_latest()
            .map_err(|e| RecoveryError::Inconsistent(format!("map: {e}")))?;
        kt_core::map::verify_tree(&storage.map_at(epoch))
            .map_err(|e| RecoveryError::Inconsistent(format!("map: {e}")))?;
    }
    Ok(Recovered {
        frontier,
        latest: Some(latest),
    })
}

fn open(
    note: &[u8],
    epoch: u64,
    origin: &str,
    verifier: &NoteVerifier,
) -> Result<SignedCheckpoint, RecoveryError> {
    let signed = SignedCheckpoint::open(note, origin, verifier).map_err(|e| {
        RecoveryError::BadCheckpoint {
            epoch,
            reason: e.to_string(),
        }
    })?;
    if signed.checkpoint().epoch != epoch {
        return Err(RecoveryError::BadCheckpoint {
            epoch,
            reason: format!(
                "stored under epoch {epoch} but says {}",
                signed.checkpoint().epoch
            ),
        });
    }
    Ok(signed)
}

/// Re-hashes every entry and compares every completed tile-level node with the stored tiles.
fn verify_entries_and_tiles(
    storage: &Storage,
    size: u64,
    root: &Hash,
    epoch: u64,
) -> Result<(), RecoveryError> {
    let mut frontier = Frontier::new();
    // The stored tile currently being compared, per tile level.
    let mut current: Vec<Option<(u64, Vec<u8>)>> = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + CHUNK).min(size);
        for entry in storage.entries(start, end)? {
            for (node, hash) in frontier.append(leaf_hash(&entry)) {
                let Some((level, index, offset)) = stored_position(node) else {
                    continue;
                };
                if current.len() <= level as usize {
                    current.resize(level as usize + 1, None);
                }
                let slot = &mut current[level as usize];
                if slot.as_ref().map(|(i, _)| *i) != Some(index) {
                    let bytes = storage.tile(level, index)?.ok_or_else(|| {
                        RecoveryError::Inconsistent(format!("tile {level}/{index} is missing"))
                    })?;
                    *slot = Some((index, bytes));
                }
                let (_, bytes) = slot.as_ref().expect("just filled");
                let at = offset as usize * HASH_SIZE;
                if bytes.get(at..at + HASH_SIZE) != Some(&hash[..]) {
                    return Err(RecoveryError::Inconsistent(format!(
                        "tile {level}/{index} disagrees with the entries at hash {offset}"
                    )));
                }
            }
        }
        start = end;
    }
    if frontier.root() != *root {
        return Err(RecoveryError::RootMismatch { epoch, size });
    }
    Ok(())
}

/// Checks that every stored checkpoint verifies and links to the one before it.
fn verify_checkpoint_chain(
    storage: &Storage,
    latest_epoch: u64,
    origin: &str,
    verifier: &NoteVerifier,
) -> Result<(), RecoveryError> {
    let mut prev: Option<SignedCheckpoint> = None;
    for epoch in 0..=latest_epoch {
        let note = storage.checkpoint(epoch)?.ok_or_else(|| {
            RecoveryError::Inconsistent(format!("checkpoint of epoch {epoch} is missing"))
        })?;
        let cp = open(&note, epoch, origin, verifier)?;
        if let Some(prev) = &prev {
            check_link(prev, &cp).map_err(|v| {
                RecoveryError::Inconsistent(format!(
                    "checkpoint chain broken at epoch {epoch}: {v}"
                ))
            })?;
        }
        prev = Some(cp);
    }
    Ok(())
}
