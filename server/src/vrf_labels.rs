//! Labels from identifiers: the server's VRF key (`docs/protocol.md` §9.1) and the stored proofs.
//!
//! A VRF proof costs about 125 µs, so the proof of every identifier that has a label in the
//! directory is computed once and stored (column family `vrf_proofs`), never per lookup. The
//! server stores no identifier (`docs/threat-model.md`): a proof is stored under a keyed hash of
//! its identifier,
//!
//! ```text
//! index key = SHA-256("keytrail/v1/vrf-index" || 0x00 || index secret || NFC(identifier))
//! index secret = SHA-256("keytrail/v1/vrf-index-secret" || 0x00 || VRF seed)
//! ```
//!
//! keyed with a secret derived from the VRF key, so a copy of the database alone (a backup, a
//! lost disk) cannot be searched for guessed identifiers: whoever can compute index keys holds
//! the VRF key and could compute the labels themselves.
//!
//! Only identifiers with a label in the directory get a row: a proof is stored when a
//! register or recover naming the identifier is appended, or when a read finds the identifier's
//! label registered without a stored proof. A lookup of an identifier that was never registered
//! computes its proof and forgets it, so the rows record no lookups.

use kt_core::directory::{DirectoryError, Label};
use kt_core::vrf::{VrfPublicKey, VrfSecretKey, PROOF_LEN};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, KeySource};
use crate::storage::{Storage, StorageError, CF_VRF_PROOFS};

/// File name of the VRF key in the data directory when no `vrf_key_file` is configured.
pub const DEFAULT_VRF_KEY_FILE_NAME: &str = "vrf.key";

const INDEX_TAG: &[u8] = b"keytrail/v1/vrf-index\x00";
const INDEX_SECRET_TAG: &[u8] = b"keytrail/v1/vrf-index-secret\x00";

/// An identifier's label and the VRF proof that shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelProof {
    pub label: Label,
    pub proof: [u8; PROOF_LEN],
    /// Whether the proof came from storage.
    pub stored: bool,
}

/// The server's VRF key. `Debug` shows only the public key.
#[derive(Clone)]
pub struct VrfLabels {
    key: VrfSecretKey,
    index_secret: [u8; 32],
}

impl std::fmt::Debug for VrfLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrfLabels")
            .field("public", &self.key.public())
            .finish_non_exhaustive()
    }
}

impl VrfLabels {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let index_secret = Sha256::new()
            .chain_update(INDEX_SECRET_TAG)
            .chain_update(seed)
            .finalize()
            .into();
        VrfLabels {
            key: VrfSecretKey::from_seed(seed),
            index_secret,
        }
    }

    pub fn public(&self) -> VrfPublicKey {
        self.key.public()
    }

    /// The key an identifier's proof is stored under: of its NFC form, like its label, so that
    /// canonically equivalent spellings share one row.
    fn index_key(&self, identifier: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(INDEX_TAG)
            .chain_update(self.index_secret)
            .chain_update(kt_core::directory::normalize_identifier(identifier).as_bytes())
            .finalize()
            .into()
    }

    /// The label and proof of `identifier`: the stored ones, else computed now (and not stored).
    pub fn label(&self, storage: &Storage, identifier: &str) -> Result<LabelProof, LabelError> {
        kt_core::directory::check_identifier(identifier)?;
        if let Some((proof, label)) = storage.vrf_proof(&self.index_key(identifier))? {
            return Ok(LabelProof {
                label,
                proof,
                stored: true,
            });
        }
        let (label, proof) = Label::prove(&self.key, identifier)?;
        Ok(LabelProof {
            label,
            proof: proof.to_bytes(),
            stored: false,
        })
    }

    /// Stores the proof of `identifier` if it is not stored yet. Call only for an identifier
    /// whose label is in the directory.
    pub fn remember(
        &self,
        storage: &Storage,
        identifier: &str,
        proof: &LabelProof,
    ) -> Result<(), StorageError> {
        if proof.stored {
            return Ok(());
        }
        storage.put_vrf_proof(&self.index_key(identifier), &proof.proof, &proof.label)
    }
}

/// Why no label could be given for an identifier.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Identifier(#[from] DirectoryError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where the VRF key comes from: `vrf_key_file` if configured (it must exist and be private),
/// else `<data_dir>/vrf.key`, generated on a new log's first start. A data directory that holds
/// a log but no VRF key is refused: a new key would give every identifier another label.
pub fn key_source(
    configured: Option<std::path::PathBuf>,
    data_dir: &std::path::Path,
) -> Result<KeySource, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: "vrf_key_file",
        reason,
    };
    let check = |path: &std::path::Path| -> Result<(), ConfigError> {
        let meta =
            std::fs::metadata(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(invalid(format!(
                    "{} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        let _ = meta;
        Ok(())
    };
    if let Some(path) = configured {
        check(&path)?;
        return Ok(KeySource::File(path));
    }
    let path = data_dir.join(DEFAULT_VRF_KEY_FILE_NAME);
    if path.exists() {
        check(&path)?;
        Ok(KeySource::File(path))
    } else if data_dir.join("CURRENT").exists() {
        Err(invalid(format!(
            "{} is missing but the log in {} exists: its labels were made with a VRF key that \
             is gone (restore it, or configure it with vrf_key_file); a log from before labels \
             were VRF outputs has none and cannot be carried over (start a new one, e.g. `make \
             clean-data`)",
            path.display(),
            data_dir.display()
        )))
    } else {
        Ok(KeySource::GenerateAt(path))
    }
}

/// Loads the VRF key, or generates it for a new log.
pub fn load_or_create(source: &KeySource) -> Result<VrfLabels, crate::keys::KeyFileError> {
    let seed = match source {
        KeySource::File(path) => crate::keys::load_vrf(path)?,
        KeySource::GenerateAt(path) => crate::keys::generate_vrf(path)?,
    };
    Ok(VrfLabels::from_seed(seed))
}

impl Storage {
    /// The stored proof and label under `index_key`.
    pub fn vrf_proof(
        &self,
        index_key: &[u8; 32],
    ) -> Result<Option<([u8; PROOF_LEN], Label)>, StorageError> {
        let db = self.db()?;
        let Some(value) = db.get_cf(db.cf(CF_VRF_PROOFS), index_key)? else {
            return Ok(None);
        };
        if value.len() != PROOF_LEN + 32 {
            return Err(StorageError::Corrupt(format!(
                "a stored VRF proof row is {} bytes, want {}",
                value.len(),
                PROOF_LEN + 32
            )));
        }
        let proof = value[..PROOF_LEN].try_into().expect("80 bytes");
        let label = Label::from_bytes(value[PROOF_LEN..].try_into().expect("32 bytes"));
        Ok(Some((proof, label)))
    }

    /// Stores `proof || label` under `index_key`. Not synced, and outside the epochs' batches: a
    /// proof is a deterministic function of the key and the identifier, so a lost row is only
    /// computed again.
    pub fn put_vrf_proof(
        &self,
        index_key: &[u8; 32],
        proof: &[u8; PROOF_LEN],
        label: &Label,
    ) -> Result<(), StorageError> {
        let mut value = Vec::with_capacity(PROOF_LEN + 32);
        value.extend_from_slice(proof);
        value.extend_from_slice(label.as_bytes());
        let db = self.db()?;
        db.put_cf(db.cf(CF_VRF_PROOFS), index_key, value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::directory::verify_label;

    #[test]
    fn a_proof_is_computed_once_stored_under_a_keyed_hash_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let labels = VrfLabels::from_seed([9; 32]);
        let first = labels.label(&storage, "alice@example.org").unwrap();
        assert!(!first.stored);
        assert_eq!(
            verify_label(&labels.public(), "alice@example.org", &first.proof).unwrap(),
            first.label
        );
        // Not remembered until asked: a lookup of an unregistered identifier leaves no row.
        assert!(!labels.label(&storage, "alice@example.org").unwrap().stored);
        labels
            .remember(&storage, "alice@example.org", &first)
            .unwrap();
        let again = labels.label(&storage, "alice@example.org").unwrap();
        assert!(again.stored);
        assert_eq!((again.label, again.proof), (first.label, first.proof));

        // The row's key depends on the VRF key, not only on the identifier.
        let other = VrfLabels::from_seed([8; 32]);
        assert_ne!(
            labels.index_key("alice@example.org"),
            other.index_key("alice@example.org")
        );
        assert_ne!(
            labels.index_key("alice@example.org"),
            labels.index_key("bob@example.org")
        );
        assert!(labels.label(&storage, "").is_err());
    }

    #[test]
    fn a_missing_vrf_key_of_an_existing_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            key_source(None, dir.path()).unwrap(),
            KeySource::GenerateAt(_)
        ));
        std::fs::write(dir.path().join("CURRENT"), "MANIFEST-000001\n").unwrap();
        assert!(matches!(
            key_source(None, dir.path()),
            Err(ConfigError::Invalid {
                field: "vrf_key_file",
                ..
            })
        ));
        assert!(key_source(Some(dir.path().join("absent")), dir.path()).is_err());
        let labels = load_or_create(&KeySource::GenerateAt(dir.path().join("vrf.key"))).unwrap();
        let loaded = load_or_create(&key_source(None, dir.path()).unwrap()).unwrap();
        assert_eq!(labels.public(), loaded.public());
    }
}
