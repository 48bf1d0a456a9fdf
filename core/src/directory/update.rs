//! KeyUpdate entries (kind `0x02`): one change of one label's key.

use super::codec::Reader;
use super::key::{UserKey, UserSigner, ALG_NONE};
use super::{DirectoryError, Label, KIND_KEY_UPDATE, MAX_SIGNATURE_LEN};
use crate::entry::FORMAT_V1;
use crate::hash::{leaf_hash, Hash};

/// Domain tag prepended to the update body before signing, so a signature over an update can
/// never be taken for a signature over a message, a note or anything else.
pub const UPDATE_SIGNING_TAG: &[u8] = b"keytrail/v1/key-update\x00";

/// What an update does to its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// First key of a label (version 1); proof of possession by the new key.
    Register,
    /// Replaces the key; signed by the previous key (continuity) and the new key.
    Rotate,
    /// Removes the key; signed by the previous key.
    Revoke,
    /// Provider-authorized replacement after the user lost every key; flagged for monitors.
    Recover,
}

impl Op {
    pub fn byte(self) -> u8 {
        match self {
            Op::Register => 1,
            Op::Rotate => 2,
            Op::Revoke => 3,
            Op::Recover => 4,
        }
    }

    pub fn from_byte(b: u8) -> Result<Op, DirectoryError> {
        match b {
            1 => Ok(Op::Register),
            2 => Ok(Op::Rotate),
            3 => Ok(Op::Revoke),
            4 => Ok(Op::Recover),
            other => Err(DirectoryError::UnknownOp(other)),
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Register => "register",
            Op::Rotate => "rotate",
            Op::Revoke => "revoke",
            Op::Recover => "recover",
        })
    }
}

/// Which key made a signature on an update. Declared in byte order, so `Ord` is the canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The key of the label's previous version.
    PreviousKey,
    /// The key this update installs.
    NewKey,
}

impl Role {
    pub fn byte(self) -> u8 {
        match self {
            Role::PreviousKey => 1,
            Role::NewKey => 2,
        }
    }

    pub fn from_byte(b: u8) -> Result<Role, DirectoryError> {
        match b {
            1 => Ok(Role::PreviousKey),
            2 => Ok(Role::NewKey),
            other => Err(DirectoryError::UnknownRole(other)),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::PreviousKey => "previous-key",
            Role::NewKey => "new-key",
        })
    }
}

/// One signature of an update and the role of the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSignature {
    role: Role,
    bytes: Vec<u8>,
}

impl UpdateSignature {
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A KeyUpdate entry.
///
/// The constructor checks only what holds regardless of the directory's state (version at least
/// 1, `prev` zero exactly at version 1, at most one signature per role, in role order); whether
/// the update is allowed is [`super::rules::apply_update`]'s question, so that an auditor can
/// report a decodable but disallowed entry precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUpdate {
    label: Label,
    version: u64,
    prev: Hash,
    op: Op,
    key: Option<UserKey>,
    time_ms: u64,
    /// Strictly ascending by role, so a set of signatures has exactly one encoding.
    signatures: Vec<UpdateSignature>,
}

impl KeyUpdate {
    /// An update with no signatures yet; add them with [`KeyUpdate::sign`] or
    /// [`KeyUpdate::with_signature`].
    pub fn new(
        label: Label,
        version: u64,
        prev: Hash,
        op: Op,
        key: Option<UserKey>,
        time_ms: u64,
    ) -> Result<KeyUpdate, DirectoryError> {
        check_version_prev(version, &prev)?;
        Ok(KeyUpdate {
            label,
            version,
            prev,
            op,
            key,
            time_ms,
            signatures: Vec::new(),
        })
    }

    /// Adds a signature made elsewhere (a client's device, a test's forgery).
    pub fn with_signature(
        mut self,
        role: Role,
        signature: Vec<u8>,
    ) -> Result<KeyUpdate, DirectoryError> {
        if signature.is_empty() || signature.len() > MAX_SIGNATURE_LEN {
            return Err(DirectoryError::SignatureLength(signature.len()));
        }
        match self.signatures.binary_search_by_key(&role, |s| s.role) {
            Ok(_) => Err(DirectoryError::DuplicateRole(role)),
            Err(at) => {
                self.signatures.insert(
                    at,
                    UpdateSignature {
                        role,
                        bytes: signature,
                    },
                );
                Ok(self)
            }
        }
    }

    /// Signs [`KeyUpdate::signed_bytes`] with `signer` in `role`.
    pub fn sign(self, role: Role, signer: &UserSigner) -> Result<KeyUpdate, DirectoryError> {
        let signature = signer.sign(&self.signed_bytes());
        self.with_signature(role, signature)
    }

    pub fn label(&self) -> &Label {
        &self.label
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn prev(&self) -> &Hash {
        &self.prev
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn key(&self) -> Option<&UserKey> {
        self.key.as_ref()
    }

    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    pub fn signatures(&self) -> &[UpdateSignature] {
        &self.signatures
    }

    pub fn signature(&self, role: Role) -> Option<&[u8]> {
        self.signatures
            .iter()
            .find(|s| s.role == role)
            .map(|s| s.bytes.as_slice())
    }

    /// Exactly what every key signs: the tag, then the body from `label` through `time_ms`.
    /// Every field but the signatures is covered, so no signature can be replayed for another
    /// label, version, `prev`, operation, key or time.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(UPDATE_SIGNING_TAG.len() + 120);
        out.extend_from_slice(UPDATE_SIGNING_TAG);
        self.write_body(&mut out);
        out
    }

    /// The canonical entry bytes that are hashed into the log.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 120 + self.signatures.len() * 67);
        out.push(FORMAT_V1);
        out.push(KIND_KEY_UPDATE);
        self.write_body(&mut out);
        // At most two signatures of at most MAX_SIGNATURE_LEN bytes: the casts cannot truncate.
        out.push(self.signatures.len() as u8);
        for s in &self.signatures {
            out.push(s.role.byte());
            out.extend_from_slice(&(s.bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&s.bytes);
        }
        out
    }

    /// The log's leaf hash of this entry: what the next version's `prev` names.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.label.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.prev);
        out.push(self.op.byte());
        match &self.key {
            None => out.extend_from_slice(&[ALG_NONE, 0]),
            Some(k) => {
                let bytes = k.public_bytes();
                out.push(k.algorithm());
                // Public keys are at most 33 bytes.
                out.push(bytes.len() as u8);
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(&self.time_ms.to_be_bytes());
    }

    /// Parses canonical entry bytes (format and kind header included); anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<KeyUpdate, DirectoryError> {
        let mut r = Reader::entry(bytes, KIND_KEY_UPDATE)?;
        let label = Label::from_bytes(r.array("label")?);
        let version = r.u64("version")?;
        if version == 0 {
            return Err(DirectoryError::ZeroVersion);
        }
        let prev: Hash = r.array("prev")?;
        check_version_prev(version, &prev)?;
        let op = Op::from_byte(r.u8("op")?)?;
        let alg = r.u8("key algorithm")?;
        let key_len = r.u8("key length")? as usize;
        let key_bytes = r.take(key_len, "key")?;
        let key = if alg == ALG_NONE {
            if key_len != 0 {
                return Err(super::KeyError::Length {
                    alg,
                    want: 0,
                    got: key_len,
                }
                .into());
            }
            None
        } else {
            Some(UserKey::from_parts(alg, key_bytes)?)
        };
        let time_ms = r.u64("time")?;
        let mut update = KeyUpdate::new(label, version, prev, op, key, time_ms)?;
        let count = r.u8("signature count")?;
        if count > 2 {
            return Err(DirectoryError::TooManySignatures(count));
        }
        for _ in 0..count {
            let role = Role::from_byte(r.u8("signature role")?)?;
            // Insertion would silently sort; canonical bytes must already be in order.
            if let Some(last) = update.signatures.last() {
                if last.role == role {
                    return Err(DirectoryError::DuplicateRole(role));
                }
                if last.role > role {
                    return Err(DirectoryError::SignatureOrder);
                }
            }
            let len = r.u16("signature length")? as usize;
            if len == 0 || len > MAX_SIGNATURE_LEN {
                return Err(DirectoryError::SignatureLength(len));
            }
            let sig = r.take(len, "signature")?;
            update = update.with_signature(role, sig.to_vec())?;
        }
        r.finish()?;
        Ok(update)
    }
}

fn check_version_prev(version: u64, prev: &Hash) -> Result<(), DirectoryError> {
    let zero = prev.iter().all(|&b| b == 0);
    match version {
        0 => Err(DirectoryError::ZeroVersion),
        1 if !zero => Err(DirectoryError::PrevAtVersionOne),
        v if v > 1 && zero => Err(DirectoryError::ZeroPrev(v)),
        _ => Ok(()),
    }
}
