//! Witness cosignatures: c2sp.org/tlog-cosignature, `cosignature/v1` (Ed25519).
//!
//! A cosignature is one more signature line on a checkpoint note, made by a witness that checked
//! the checkpoint is consistent with every other it has seen from the log. Its line is a
//! [signed-note](crate::note) signature line,
//!
//! ```text
//! — <cosigner name> base64(key id (4) || timestamp (8, big-endian u64) || Ed25519 signature (64))
//! ```
//!
//! where
//!
//! - `key id = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]` (type `0x04`, where a
//!   note key has `0x01`: the same Ed25519 key gets another id, so a cosignature is never taken
//!   for a note signature or the reverse);
//! - the signed message is `"cosignature/v1\ntime <timestamp>\n"` followed by the whole
//!   checkpoint note text (its body, final newline included, no signature lines); the timestamp
//!   is POSIX seconds, decimal without leading zeros, at most `2^63 - 1`;
//! - the verifier key string is `<name>+<hex8 key id>+base64(0x04 || public key)`.
//!
//! Every line of the checkpoint is signed, KeyTrail's extension lines included; the C2SP
//! semantics are a statement about the first three (origin, size, root) only.
//!
//! Verification is `verify_strict` as for notes. Verifier key strings of type `0x01` are
//! refused, unlike Go's `NewVerifierForCosignatureV1`: a witness is configured with its `0x04`
//! key.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::note::{
    check_text, encode_key, key_id_of_type, parse_key_parts, KeyName, Note, NoteError,
    NoteSignature, MAX_NOTE_SIZE, SIG_PREFIX,
};

/// Signature type identifier of Ed25519 `cosignature/v1` keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Largest timestamp a cosignature may carry: `2^63 - 1` seconds.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;
/// First line of every signed message.
const HEADER: &str = "cosignature/v1\n";
/// Decoded length of a cosignature: key id, timestamp, Ed25519 signature.
const COSIGNATURE_LEN: usize = 4 + 8 + 64;

/// Errors from keys, cosigning, parsing and verifying cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// A key name or verifier key string that does not parse (the signed-note rules).
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("checkpoint text is not a note text of at least three lines without blank lines")]
    InvalidCheckpointText,
    #[error("cosignature timestamp {0} is larger than 2^63 - 1")]
    TimestampTooLarge(u64),
    #[error("cosignature line does not start with an em dash and a space")]
    MissingEmDash,
    #[error("cosignature line is not `name signature`")]
    MalformedLine,
    #[error("cosignature is not valid base64")]
    BadBase64,
    #[error("cosignature is {0} bytes, want {COSIGNATURE_LEN}")]
    WrongLength(usize),
    #[error("cosignature is from {name}+{id:08x}, not from this cosigner")]
    WrongKey { name: String, id: u32 },
    #[error("invalid cosignature from {name}+{id:08x}")]
    InvalidSignature { name: String, id: u32 },
    #[error("no cosignature from {name}+{id:08x}")]
    Missing { name: String, id: u32 },
    #[error("two cosignatures from {name}+{id:08x}")]
    Duplicate { name: String, id: u32 },
    #[error("malformed cosigner private key")]
    MalformedPrivateKey,
    #[error("witness policy: {0}")]
    Policy(&'static str),
    /// One public key listed twice in a witness policy. The signed message does not include the
    /// name, so one cosignature could be copied under the other name and count twice toward
    /// the threshold.
    #[error(
        "witness policy: {first} and {second} are the same public key; a key may be listed once \
         whatever its name"
    )]
    DuplicateWitnessKey { first: String, second: String },
    #[error("{found} valid cosignatures from the witness policy, {threshold} required")]
    NoQuorum { found: usize, threshold: usize },
}

/// `SHA-256(name || 0x0A || 0x04 || public key)[:4]` as a big-endian `u32`.
pub fn key_id(name: &KeyName, public_key: &VerifyingKey) -> u32 {
    key_id_of_type(name, ALG_COSIGNATURE_V1, public_key.as_bytes())
}

/// A checkpoint text a cosigner will sign: a note text (ends in a newline, no control
/// characters but newline, at most [`MAX_NOTE_SIZE`]) of at least three lines, none empty.
fn check_checkpoint_text(text: &str) -> Result<(), CosignatureError> {
    let ok = text.len() <= MAX_NOTE_SIZE
        && check_text(text).is_ok()
        && !text.starts_with('\n')
        && !text.contains("\n\n")
        && text.matches('\n').count() >= 3;
    ok.then_some(())
        .ok_or(CosignatureError::InvalidCheckpointText)
}

/// The signed message: `cosignature/v1\ntime <timestamp>\n` then the checkpoint text.
fn signed_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    format!("{HEADER}time {timestamp}\n{checkpoint_text}").into_bytes()
}

/// A witness's cosigning key with its name. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Cosigner {
    name: KeyName,
    id: u32,
    key: SigningKey,
}

impl Cosigner {
    pub fn from_seed(name: KeyName, seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&name, &key.verifying_key());
        Self { name, id, key }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex8 key id>+base64(0x04 || 32-byte seed)`, the signer key
    /// format of signed notes with the cosignature type byte, checking the key id.
    pub fn parse(s: &str) -> Result<Self, CosignatureError> {
        let bad = CosignatureError::MalformedPrivateKey;
        let rest = s.trim().strip_prefix("PRIVATE+KEY+").ok_or(bad.clone())?;
        let (name, id, seed) = parse_key_parts(rest, ALG_COSIGNATURE_V1).map_err(|e| match e {
            // A bad name is reported as such; anything else about a secret is not echoed.
            NoteError::InvalidKeyName { .. } => e.into(),
            _ => bad.clone(),
        })?;
        let cosigner = Self::from_seed(name, seed);
        if id != cosigner.id {
            return Err(bad);
        }
        Ok(cosigner)
    }

    /// The secret key string accepted by [`Cosigner::parse`]. Keep it secret.
    pub fn to_private_string(&self) -> String {
        format!(
            "PRIVATE+KEY+{}",
            encode_key(&self.name, self.id, ALG_COSIGNATURE_V1, self.key.as_bytes())
        )
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns a checkpoint note text (the body, without signature lines) at `timestamp`
    /// (POSIX seconds). The caller must have checked the checkpoint first: this only signs.
    pub fn cosign(
        &self,
        checkpoint_text: &str,
        timestamp: u64,
    ) -> Result<Cosignature, CosignatureError> {
        check_checkpoint_text(checkpoint_text)?;
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge(timestamp));
        }
        let signature = self
            .key
            .sign(&signed_message(checkpoint_text, timestamp))
            .to_bytes();
        Ok(Cosignature {
            name: self.name.clone(),
            id: self.id,
            timestamp,
            signature,
        })
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name.as_str())
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

/// A witness's public key. `Display`/`FromStr` and serde use the verifier key string
/// `<name>+<hex8 key id>+base64(0x04 || public key)`.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: KeyName,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    pub fn new(name: KeyName, key: VerifyingKey) -> Self {
        let id = key_id(&name, &key);
        Self { name, id, key }
    }

    /// Parses `<name>+<hex8 key id>+base64(0x04 || public key)`, checking the key id.
    pub fn parse(s: &str) -> Result<Self, CosignatureError> {
        let (name, id, key) = parse_key_parts(s, ALG_COSIGNATURE_V1)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| NoteError::InvalidPublicKey)?;
        let verifier = Self::new(name, key);
        if verifier.id != id {
            return Err(NoteError::KeyIdMismatch {
                expected: verifier.id,
                found: id,
            }
            .into());
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks that `cosignature` is this cosigner's, over `checkpoint_text` (the note body,
    /// without signature lines) at the timestamp it carries.
    pub fn verify(
        &self,
        checkpoint_text: &str,
        cosignature: &Cosignature,
    ) -> Result<(), CosignatureError> {
        if cosignature.name != self.name || cosignature.id != self.id {
            return Err(CosignatureError::WrongKey {
                name: cosignature.name.as_str().to_owned(),
                id: cosignature.id,
            });
        }
        check_checkpoint_text(checkpoint_text)?;
        let msg = signed_message(checkpoint_text, cosignature.timestamp);
        if !crate::edwards::verify_strict(&self.key, &msg, &cosignature.signature) {
            return Err(CosignatureError::InvalidSignature {
                name: self.name.as_str().to_owned(),
                id: self.id,
            });
        }
        Ok(())
    }

    /// Finds this cosigner's line among a parsed note's signatures and verifies it against the
    /// note's text. Exactly one line must carry this name and key id.
    pub fn verify_note(&self, note: &Note) -> Result<Cosignature, CosignatureError> {
        let mine: Vec<&NoteSignature> = note
            .signatures()
            .iter()
            .filter(|s| *s.name() == self.name && s.key_id() == self.id)
            .collect();
        let (name, id) = (self.name.as_str().to_owned(), self.id);
        let sig = match mine.as_slice() {
            [sig] => *sig,
            [] => return Err(CosignatureError::Missing { name, id }),
            _ => return Err(CosignatureError::Duplicate { name, id }),
        };
        let cosignature = Cosignature::from_note_signature(sig)?;
        self.verify(note.text(), &cosignature)?;
        Ok(cosignature)
    }
}

impl fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(
            &self.name,
            self.id,
            ALG_COSIGNATURE_V1,
            self.key.as_bytes(),
        ))
    }
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignatureVerifier({self})")
    }
}

impl FromStr for CosignatureVerifier {
    type Err = CosignatureError;
    fn from_str(s: &str) -> Result<Self, CosignatureError> {
        Self::parse(s)
    }
}

impl Serialize for CosignatureVerifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CosignatureVerifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One cosignature, well-formed but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    name: KeyName,
    id: u32,
    timestamp: u64,
    signature: [u8; 64],
}

impl Cosignature {
    /// Parses a signature line `— <name> <base64>`, without its final newline.
    ///
    /// The decoded signature must be exactly 76 bytes and the timestamp at most `2^63 - 1`.
    pub fn parse_line(line: &str) -> Result<Self, CosignatureError> {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(CosignatureError::MissingEmDash)?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(CosignatureError::MalformedLine)?;
        let name = KeyName::new(name)?;
        let raw = BASE64
            .decode(b64)
            .map_err(|_| CosignatureError::BadBase64)?;
        if raw.len() != COSIGNATURE_LEN {
            return Err(CosignatureError::WrongLength(raw.len()));
        }
        let id = u32::from_be_bytes(raw[..4].try_into().expect("4 bytes"));
        Self::from_parts(name, id, &raw[4..])
    }

    /// The cosignature in a signature line that [`Note::parse`] already split out.
    pub fn from_note_signature(sig: &NoteSignature) -> Result<Self, CosignatureError> {
        let raw = sig.signature();
        if raw.len() + 4 != COSIGNATURE_LEN {
            return Err(CosignatureError::WrongLength(raw.len() + 4));
        }
        Self::from_parts(sig.name().clone(), sig.key_id(), raw)
    }

    /// `rest` is the 72 bytes after the key id.
    fn from_parts(name: KeyName, id: u32, rest: &[u8]) -> Result<Self, CosignatureError> {
        let timestamp = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge(timestamp));
        }
        Ok(Self {
            name,
            id,
            timestamp,
            signature: rest[8..].try_into().expect("64 bytes"),
        })
    }

    /// The signature line, without a final newline: append it and `\n` to a checkpoint note.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(COSIGNATURE_LEN);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&self.timestamp.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}", self.name, BASE64.encode(raw))
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// When the witness cosigned, in POSIX seconds (as the witness claims it).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// A verifier's witness policy: a checkpoint counts only when at least `threshold` of
/// `witnesses` validly cosigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    witnesses: Vec<CosignatureVerifier>,
    threshold: usize,
}

impl WitnessPolicy {
    /// `1 <= threshold <= witnesses.len()`, no public key twice (under any names) and no two
    /// witnesses with the same name and key id.
    pub fn new(
        witnesses: Vec<CosignatureVerifier>,
        threshold: usize,
    ) -> Result<Self, CosignatureError> {
        if threshold == 0 {
            return Err(CosignatureError::Policy("the threshold must be at least 1"));
        }
        if threshold > witnesses.len() {
            return Err(CosignatureError::Policy(
                "the threshold is larger than the number of witnesses",
            ));
        }
        for (i, w) in witnesses.iter().enumerate() {
            // Whatever the names: a cosignature is over the checkpoint and the timestamp only, so
            // it verifies as well under any name its key is listed with.
            if let Some(o) = witnesses[..i].iter().find(|o| o.key == w.key) {
                return Err(CosignatureError::DuplicateWitnessKey {
                    first: o.to_string(),
                    second: w.to_string(),
                });
            }
            if witnesses[..i]
                .iter()
                .any(|o| o.name == w.name && o.id == w.id)
            {
                return Err(CosignatureError::Policy("a witness is listed twice"));
            }
        }
        Ok(Self {
            witnesses,
            threshold,
        })
    }

    pub fn witnesses(&self) -> &[CosignatureVerifier] {
        &self.witnesses
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The policy's witnesses whose cosignature on `note` verifies, with their cosignatures.
    /// Lines of other keys are ignored; a missing, duplicated or invalid line of a policy
    /// witness does not count.
    pub fn cosigners<'a>(&'a self, note: &Note) -> Vec<(&'a CosignatureVerifier, Cosignature)> {
        self.witnesses
            .iter()
            .filter_map(|w| w.verify_note(note).ok().map(|c| (w, c)))
            .collect()
    }

    /// Requires at least `threshold` valid cosignatures on `note`; returns how many there are.
    pub fn check(&self, note: &Note) -> Result<usize, CosignatureError> {
        let found = self.cosigners(note).len();
        if found < self.threshold {
            return Err(CosignatureError::NoQuorum {
                found,
                threshold: self.threshold,
            });
        }
        Ok(found)
    }
}
