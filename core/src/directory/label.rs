//! Labels: the 32-byte map keys that stand for user identifiers (`docs/protocol.md` §9.1).
//!
//! A log's labels are VRF outputs (RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI, [`crate::vrf`]) of
//! its users' identifiers under the log's VRF key: only the holder of the VRF secret key (the
//! server) can compute the label of an identifier, so the public log does not reveal which
//! identifiers have keys. Anyone holding the VRF public key can check, with the proof the server
//! sends in every answer, that a label is the one of the identifier asked about
//! ([`verify_label`](super::verify::verify_label)).

use super::{DirectoryError, MAX_IDENTIFIER_LEN};
use crate::vrf::{VrfOutput, VrfProof, VrfSecretKey};
use sha2::{Digest, Sha256};

/// Domain tag of the VRF input (and of the example labels of [`Label::from_identifier`]).
pub const LABEL_TAG: &[u8] = b"keytrail/v1/label\x00";

/// A label: 32 opaque bytes naming one user in the map and the log.
///
/// Nothing but label derivation ([`vrf_input`], [`Label::from_vrf_output`]) depends on how the
/// bytes were made: the map, the rules, the auditor and every proof treat them as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label([u8; 32]);

/// Checks a user identifier: 1 to 256 bytes of UTF-8, no control characters (so that what an
/// operator prints is what was hashed).
pub fn check_identifier(identifier: &str) -> Result<(), DirectoryError> {
    if identifier.is_empty() || identifier.len() > MAX_IDENTIFIER_LEN {
        return Err(DirectoryError::IdentifierLength(identifier.len()));
    }
    if identifier.chars().any(char::is_control) {
        return Err(DirectoryError::IdentifierControl);
    }
    Ok(())
}

/// The VRF input `alpha` of an identifier: `"keytrail/v1/label" || 0x00 || identifier` (UTF-8).
///
/// The tag versions the input; the VRF itself already separates its hashes by suite and public
/// key, so the same identifier under another log's VRF key has an unrelated label.
pub fn vrf_input(identifier: &str) -> Result<Vec<u8>, DirectoryError> {
    check_identifier(identifier)?;
    let mut alpha = Vec::with_capacity(LABEL_TAG.len() + identifier.len());
    alpha.extend_from_slice(LABEL_TAG);
    alpha.extend_from_slice(identifier.as_bytes());
    Ok(alpha)
}

impl Label {
    /// The label of `identifier` under the VRF key `key`, with the proof that goes with it: what
    /// the server computes (about 125 µs) once per identifier.
    pub fn prove(
        key: &VrfSecretKey,
        identifier: &str,
    ) -> Result<(Label, VrfProof), DirectoryError> {
        let (proof, beta) = key.prove_with_output(&vrf_input(identifier)?);
        Ok((Label::from_vrf_output(&beta), proof))
    }

    /// **Not a log's label.** `SHA-256("keytrail/v1/label\0" || identifier)`: a fixed label for
    /// tests and for the encoding examples of `docs/protocol.md` §9.5, which need one without a
    /// VRF key. A log's labels come from [`Label::prove`] (server) and
    /// [`verify_label`](super::verify::verify_label) (everyone else).
    pub fn from_identifier(identifier: &str) -> Result<Label, DirectoryError> {
        check_identifier(identifier)?;
        let mut h = Sha256::new();
        h.update(LABEL_TAG);
        h.update(identifier.as_bytes());
        Ok(Label(h.finalize().into()))
    }

    /// The label for an RFC 9381 VRF output: the first 32 bytes of `beta`.
    ///
    /// `beta` is already a domain-separated SHA-512 output (`SHA-512(0x03 || 0x03 || 8·Gamma ||
    /// 0x00)`, [`crate::vrf`]), so its first half is as uniform as any hash of it would be and a
    /// second hash would add nothing.
    pub fn from_vrf_output(beta: &VrfOutput) -> Label {
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
