//! C2SP signed notes (<https://c2sp.org/signed-note>), Ed25519 only.
//!
//! A note is a text ending in a newline, a blank line, and one or more signature lines
//! `— <key name> base64(key id || signature)`. The text must be ignored unless a trusted key
//! signed it: [`Note::parse`] only checks the shape, [`Note::verify`] checks the signatures.
//!
//! Keys are written in the encoding of `golang.org/x/mod/sumdb/note`:
//!
//! - verifier key: `<name>+<hex8 key id>+base64(0x01 || 32-byte public key)`
//! - signer key: `PRIVATE+KEY+<name>+<hex8 key id>+base64(0x01 || 32-byte seed)`
//!
//! with `key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]`, read big-endian.
//!
//! Limits: a note is at most [`MAX_NOTE_SIZE`] bytes and carries at most [`MAX_SIGNATURES`]
//! signatures (the spec requires accepting at least 16).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::sha256;

/// Largest note [`Note::parse`] accepts, in bytes.
pub const MAX_NOTE_SIZE: usize = 1 << 20;
/// Most signature lines [`Note::parse`] accepts.
pub const MAX_SIGNATURES: usize = 100;
/// Signature type identifier of Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;

/// Prefix of every signature line: em dash (U+2014) and a space.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";
/// Shortest decoded signature: a 4-byte key id and at least one signature byte.
const MIN_SIG_LEN: usize = 5;
const ED25519_SIG_LEN: usize = 64;

/// Errors from parsing keys, signing and opening notes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("invalid key name {name:?}")]
    InvalidKeyName { name: String },
    #[error("malformed key")]
    MalformedKey,
    #[error("unsupported signature type {0:#04x}")]
    UnsupportedAlgorithm(u8),
    #[error("invalid ed25519 public key")]
    InvalidPublicKey,
    #[error("key id {found:08x} does not match the key (want {expected:08x})")]
    KeyIdMismatch { expected: u32, found: u32 },
    #[error("note is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    #[error("note is not valid utf-8")]
    NotUtf8,
    #[error("note contains a control character")]
    ControlCharacter,
    #[error("note text is empty or does not end in a newline")]
    MissingNewline,
    #[error("no blank line before the signatures")]
    NoBlankLine,
    #[error("note has no signatures")]
    NoSignatures,
    #[error("more than {max} signatures")]
    TooManySignatures { max: usize },
    #[error("signature line {index} does not start with an em dash and a space")]
    MissingEmDash { index: usize },
    #[error("signature line {index} is not `name signature`")]
    MalformedSignatureLine { index: usize },
    #[error("signature line {index} is not valid base64")]
    BadBase64 { index: usize },
    #[error("signature line {index} is too short")]
    SignatureTooShort { index: usize },
    #[error("no signature from a known key")]
    UnknownKey,
    #[error("ambiguous key {name}+{id:08x}")]
    AmbiguousKey { name: String, id: u32 },
    #[error("invalid signature from {name}+{id:08x}")]
    InvalidSignature { name: String, id: u32 },
    #[error("two signatures from {name}+{id:08x}")]
    DuplicateSignature { name: String, id: u32 },
}

/// A key name: non-empty, no `+`, no Unicode whitespace, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(String);

impl KeyName {
    pub fn new(name: impl Into<String>) -> Result<Self, NoteError> {
        let name = name.into();
        let valid = !name.is_empty()
            && !name
                .chars()
                .any(|c| c == '+' || c.is_whitespace() || c.is_control());
        if valid {
            Ok(Self(name))
        } else {
            Err(NoteError::InvalidKeyName { name })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyName {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        Self::new(s)
    }
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]` as a big-endian `u32`.
pub fn key_id(name: &KeyName, public_key: &VerifyingKey) -> u32 {
    key_id_of_type(name, ALG_ED25519, public_key.as_bytes())
}

/// `SHA-256(name || 0x0A || type || public key)[:4]` as a big-endian `u32`: the key id of
/// signed notes, for any key type byte (0x01 note keys, 0x04 cosignature keys).
pub(crate) fn key_id_of_type(name: &KeyName, key_type: u8, public_key: &[u8; 32]) -> u32 {
    let mut data = Vec::with_capacity(name.0.len() + 2 + 32);
    data.extend_from_slice(name.0.as_bytes());
    data.push(b'\n');
    data.push(key_type);
    data.extend_from_slice(public_key);
    let h = sha256(&data);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// Splits `<name>+<hex8>+<base64(type || 32 bytes)>` and checks every part but the key id; a
/// type byte other than `key_type` is [`NoteError::UnsupportedAlgorithm`].
pub(crate) fn parse_key_parts(
    s: &str,
    key_type: u8,
) -> Result<(KeyName, u32, [u8; 32]), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::MalformedKey);
    };
    let name = KeyName::new(name)?;
    // Canonical form only: exactly eight lowercase hex digits.
    if id_hex.len() != 8
        || !id_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(NoteError::MalformedKey);
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedKey)?;
    let key = BASE64
        .decode(key_b64)
        .map_err(|_| NoteError::MalformedKey)?;
    match key.split_first() {
        Some((&alg, rest)) if alg == key_type => {
            let bytes: [u8; 32] = rest.try_into().map_err(|_| NoteError::MalformedKey)?;
            Ok((name, id, bytes))
        }
        Some((&alg, _)) => Err(NoteError::UnsupportedAlgorithm(alg)),
        None => Err(NoteError::MalformedKey),
    }
}

/// `<name>+<hex8 id>+base64(type || key)`, what [`parse_key_parts`] reads.
pub(crate) fn encode_key(name: &KeyName, id: u32, key_type: u8, key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(key_type);
    raw.extend_from_slice(key);
    format!("{name}+{id:08x}+{}", BASE64.encode(raw))
}

/// An Ed25519 note signing key with its name. `Debug` never shows the secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: KeyName,
    id: u32,
    key: SigningKey,
}

impl NoteSigner {
    pub fn from_seed(name: KeyName, seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&name, &key.verifying_key());
        Self { name, id, key }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex8 key id>+base64(0x01 || seed)`, checking the key id.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey)?;
        let (name, id, seed) = parse_key_parts(rest, ALG_ED25519)?;
        let signer = Self::from_seed(name, seed);
        if signer.id != id {
            return Err(NoteError::KeyIdMismatch {
                expected: signer.id,
                found: id,
            });
        }
        Ok(signer)
    }

    /// The secret key string accepted by [`NoteSigner::parse`]. Keep it secret.
    pub fn to_private_string(&self) -> String {
        format!(
            "PRIVATE+KEY+{}",
            encode_key(&self.name, self.id, ALG_ED25519, self.key.as_bytes())
        )
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name.0)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

/// An Ed25519 note verifier key. `Display`/`FromStr` and serde use the verifier key string.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: KeyName,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: KeyName, key: VerifyingKey) -> Self {
        let id = key_id(&name, &key);
        Self { name, id, key }
    }

    /// Parses `<name>+<hex8 key id>+base64(0x01 || public key)`, checking the key id.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_parts(s, ALG_ED25519)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| NoteError::InvalidPublicKey)?;
        let verifier = Self::new(name, key);
        if verifier.id != id {
            return Err(NoteError::KeyIdMismatch {
                expected: verifier.id,
                found: id,
            });
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

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; ED25519_SIG_LEN]>::try_from(sig) else {
            return false;
        };
        crate::edwards::verify_strict(&self.key, msg, &sig)
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(
            &self.name,
            self.id,
            ALG_ED25519,
            self.key.as_bytes(),
        ))
    }
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({self})")
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        Self::parse(s)
    }
}

impl Serialize for NoteVerifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NoteVerifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a note text: non-empty, ends in a newline, no control characters but newline.
pub(crate) fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MissingNewline);
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

/// Signs `text` with every signer, in order, and returns the encoded note.
///
/// The text must end in a newline and contain no control characters other than newline; it
/// may contain blank lines (the signatures start after the last one). Two signers with the same
/// name and key id are rejected.
pub fn sign_note(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 128);
    out.push_str(text);
    out.push('\n');
    for (i, s) in signers.iter().enumerate() {
        if signers[..i]
            .iter()
            .any(|o| o.name == s.name && o.id == s.id)
        {
            return Err(NoteError::DuplicateSignature {
                name: s.name.0.clone(),
                id: s.id,
            });
        }
        let mut raw = Vec::with_capacity(4 + ED25519_SIG_LEN);
        raw.extend_from_slice(&s.id.to_be_bytes());
        raw.extend_from_slice(&s.key.sign(text.as_bytes()).to_bytes());
        out.push_str(SIG_PREFIX);
        out.push_str(s.name.as_str());
        out.push(' ');
        out.push_str(&BASE64.encode(raw));
        out.push('\n');
    }
    if out.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            len: out.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    Ok(out)
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: KeyName,
    id: u32,
    sig: Vec<u8>,
}

impl NoteSignature {
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The signature bytes, without the key id.
    pub fn signature(&self) -> &[u8] {
        &self.sig
    }
}

/// A well-formed signed note whose signatures have not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note. Checks the shape only: call [`Note::verify`] before using the text.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::ControlCharacter);
        }
        // The text ends at the last blank line; it keeps its final newline.
        let split = s.rfind("\n\n").ok_or(NoteError::NoBlankLine)?;
        let (text, block) = (&s[..split + 1], &s[split + 2..]);
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let block = block.strip_suffix('\n').ok_or(NoteError::MissingNewline)?;

        let mut signatures = Vec::new();
        for (index, line) in block.split('\n').enumerate() {
            if index >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            let line = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::MissingEmDash { index })?;
            let (name, b64) = line
                .split_once(' ')
                .ok_or(NoteError::MalformedSignatureLine { index })?;
            let name = KeyName::new(name)?;
            let raw = BASE64
                .decode(b64)
                .map_err(|_| NoteError::BadBase64 { index })?;
            if raw.len() < MIN_SIG_LEN {
                return Err(NoteError::SignatureTooShort { index });
            }
            signatures.push(NoteSignature {
                name,
                id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                sig: raw[4..].to_vec(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Checks the signatures against the known `verifiers` and returns those that signed, in
    /// signature order.
    ///
    /// Signatures from unknown keys (other name or other key id) are ignored. Every signature
    /// from a known key must verify, no known key may sign twice, and at least one must sign.
    /// Two verifiers with the same name and key id but different keys are rejected.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<Vec<NoteVerifier>, NoteError> {
        let mut signed: Vec<NoteVerifier> = Vec::new();
        for sig in &self.signatures {
            let mut matching = verifiers
                .iter()
                .filter(|v| v.name == sig.name && v.id == sig.id);
            let Some(v) = matching.next() else {
                continue;
            };
            if matching.any(|other| other.key != v.key) {
                return Err(NoteError::AmbiguousKey {
                    name: sig.name.0.clone(),
                    id: sig.id,
                });
            }
            if signed.iter().any(|s| s.name == sig.name && s.id == sig.id) {
                return Err(NoteError::DuplicateSignature {
                    name: sig.name.0.clone(),
                    id: sig.id,
                });
            }
            if !v.verify(self.text.as_bytes(), &sig.sig) {
                return Err(NoteError::InvalidSignature {
                    name: sig.name.0.clone(),
                    id: sig.id,
                });
            }
            signed.push(v.clone());
        }
        if signed.is_empty() {
            return Err(NoteError::UnknownKey);
        }
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        for bad in [
            "",
            "a+b",
            "a b",
            "a\tb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{1}b",
        ] {
            assert!(KeyName::new(bad).is_err(), "{bad:?}");
        }
        for good in ["example.com/log", "é", "a\u{2014}b"] {
            assert!(KeyName::new(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn signer_debug_hides_secret() {
        let s = NoteSigner::from_seed(KeyName::new("k").unwrap(), [7; 32]);
        let dbg = format!("{s:?}");
        let secret = s.to_private_string();
        let b64 = secret.rsplit('+').next().unwrap();
        assert!(!dbg.contains(b64));
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
    }
}
