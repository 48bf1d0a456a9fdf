//! Labels: the 32-byte map keys that stand for user identifiers.

use super::{DirectoryError, MAX_IDENTIFIER_LEN};
use sha2::{Digest, Sha256};

/// Domain tag of the label hash, so a label can never collide with any other hash of the protocol.
pub const LABEL_TAG: &[u8] = b"keytrail/v1/label\x00";

/// A label: 32 opaque bytes naming one user in the map and the log.
///
/// Today it is `SHA-256("keytrail/v1/label\0" || identifier)`. A later version replaces the hash
/// with a VRF output (RFC 9381) so the public log does not reveal who has a key; nothing outside
/// [`Label::from_identifier`] may depend on how the bytes were derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label([u8; 32]);

impl Label {
    /// Derives the label of a user identifier (1 to 256 bytes of UTF-8, no control characters,
    /// so that what an operator logs or prints is what was hashed).
    pub fn from_identifier(identifier: &str) -> Result<Label, DirectoryError> {
        if identifier.is_empty() || identifier.len() > MAX_IDENTIFIER_LEN {
            return Err(DirectoryError::IdentifierLength(identifier.len()));
        }
        if identifier.chars().any(char::is_control) {
            return Err(DirectoryError::IdentifierControl);
        }
        let mut h = Sha256::new();
        h.update(LABEL_TAG);
        h.update(identifier.as_bytes());
        Ok(Label(h.finalize().into()))
    }

    /// The label for an RFC 9381 VRF output (planned, not used yet; protocol.md §12): the first
    /// 32 bytes of `beta`.
    ///
    /// `beta` is already a domain-separated SHA-512 output (`SHA-512(0x03 || 0x03 || 8·Gamma ||
    /// 0x00)`, [`crate::vrf`]), so its first half is as uniform as any hash of it would be and a
    /// second hash would add nothing. A VRF label and a hashed label never need to be told
    /// apart: a log uses one derivation for all its labels.
    pub fn from_vrf_output(beta: &[u8; 64]) -> Label {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&beta[..32]);
        Label(bytes)
    }

    /// Wraps label bytes read from an entry or a proof.
    pub const fn from_bytes(bytes: [u8; 32]) -> Label {
        Label(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
