//! KeyTrail checkpoints: C2SP tlog-checkpoints (<https://c2sp.org/tlog-checkpoint>) with four
//! extension lines, signed as a [note](crate::note) by the log's key.
//!
//! The body (the note text) is exactly seven lines, each ending in `\n`:
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//! epoch <epoch, decimal>
//! map <map root, base64>
//! prev <base64 SHA-256 of the previous checkpoint's body; 32 zero bytes for epoch 0>
//! time <unix milliseconds, decimal>
//! ```
//!
//! Decimals have no sign and no leading zeros; base64 is standard, padded, and decodes to
//! exactly 32 bytes; a tree of size 0 has the empty root `SHA-256("")`. Parsing accepts only this canonical form, so `parse_body(s)?.body() == s`.
//!
//! `prev` chains each checkpoint to the body of the one before it. Signatures are not part of
//! the body, so cosignatures added later never change the chain.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{empty_root, sha256, Hash};
use crate::note::{sign_note, Note, NoteError, NoteSigner, NoteVerifier};

/// Errors from parsing, signing and opening checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("checkpoint body does not end in a newline")]
    MissingNewline,
    #[error("origin line is empty or contains a control character")]
    InvalidOrigin,
    #[error("missing `{field}` line")]
    MissingLine { field: &'static str },
    #[error("unexpected line {line} after the last field")]
    ExtraLine { line: usize },
    #[error("`{field}` is not a canonical decimal u64")]
    InvalidNumber { field: &'static str },
    #[error("`{field}` is not a base64 32-byte hash")]
    InvalidHash { field: &'static str },
    #[error("tree size 0 with a root other than the empty root")]
    WrongEmptyRoot,
    #[error("checkpoint origin is {found:?}, want {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// Why a checkpoint does not follow another one (see [`Checkpoint::follows`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("origin changed from {prev:?} to {next:?}")]
    OriginChanged { prev: String, next: String },
    #[error("epoch {next} does not follow epoch {prev}")]
    EpochNotNext { prev: u64, next: u64 },
    #[error("prev hash does not name the previous checkpoint")]
    PrevMismatch,
    #[error("tree size went down from {prev} to {next}")]
    SizeDecreased { prev: u64, next: u64 },
    #[error("time went backwards from {prev} to {next}")]
    TimeWentBackwards { prev: u64, next: u64 },
}

/// The body of a KeyTrail checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Log identity; non-empty, no control characters.
    pub origin: String,
    /// Number of leaves in the log.
    pub size: u64,
    /// RFC 9162 root of the log at `size`.
    pub root: Hash,
    /// Epoch number; 0 for the genesis checkpoint, then +1 per checkpoint.
    pub epoch: u64,
    /// Root of the directory map at this epoch.
    pub map_root: Hash,
    /// [`Checkpoint::body_hash`] of the previous checkpoint; zeros for epoch 0.
    pub prev: Hash,
    /// Unix time in milliseconds, as the log's clock saw it when sealing the epoch.
    pub time_ms: u64,
}

impl Checkpoint {
    /// The first checkpoint of a log: empty tree, epoch 0, `prev` all zeros.
    ///
    /// The map root is all zeros here as a placeholder: the empty map root is defined by the
    /// directory (map) module, and a log whose empty map has another root must set it.
    pub fn genesis(origin: impl Into<String>, time_ms: u64) -> Self {
        Self {
            origin: origin.into(),
            size: 0,
            root: empty_root(),
            epoch: 0,
            map_root: [0; 32],
            prev: [0; 32],
            time_ms,
        }
    }

    /// The note text of this checkpoint.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\nepoch {}\nmap {}\nprev {}\ntime {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.epoch,
            BASE64.encode(self.map_root),
            BASE64.encode(self.prev),
            self.time_ms,
        )
    }

    /// SHA-256 of [`Checkpoint::body`]: what the next checkpoint's `prev` names.
    pub fn body_hash(&self) -> Hash {
        sha256(self.body().as_bytes())
    }

    /// Parses a body in the canonical form only (see the module docs).
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let body = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingNewline)?;
        let mut lines = body.split('\n');
        let mut next = |field: &'static str, keyword: Option<&str>| {
            let line = lines.next().ok_or(CheckpointError::MissingLine { field })?;
            match keyword {
                None => Ok(line),
                Some(k) => line
                    .strip_prefix(k)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .ok_or(CheckpointError::MissingLine { field }),
            }
        };

        let origin = next("origin", None)?;
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(CheckpointError::InvalidOrigin);
        }
        let size = parse_decimal(next("size", None)?, "size")?;
        let root = parse_hash(next("root", None)?, "root")?;
        if size == 0 && root != empty_root() {
            return Err(CheckpointError::WrongEmptyRoot);
        }
        let epoch = parse_decimal(next("epoch", Some("epoch"))?, "epoch")?;
        let map_root = parse_hash(next("map", Some("map"))?, "map")?;
        let prev = parse_hash(next("prev", Some("prev"))?, "prev")?;
        let time_ms = parse_decimal(next("time", Some("time"))?, "time")?;
        if lines.next().is_some() {
            return Err(CheckpointError::ExtraLine { line: 8 });
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            epoch,
            map_root,
            prev,
            time_ms,
        })
    }

    /// The chain-link rule: `self` is the checkpoint right after `prev`.
    ///
    /// Same origin, epoch `prev.epoch + 1`, `self.prev == prev.body_hash()`, tree size and time
    /// not decreasing. Log consistency between the two roots is checked separately.
    pub fn follows(&self, prev: &Checkpoint) -> Result<(), ChainError> {
        if self.origin != prev.origin {
            return Err(ChainError::OriginChanged {
                prev: prev.origin.clone(),
                next: self.origin.clone(),
            });
        }
        if prev.epoch.checked_add(1) != Some(self.epoch) {
            return Err(ChainError::EpochNotNext {
                prev: prev.epoch,
                next: self.epoch,
            });
        }
        if self.prev != prev.body_hash() {
            return Err(ChainError::PrevMismatch);
        }
        if self.size < prev.size {
            return Err(ChainError::SizeDecreased {
                prev: prev.size,
                next: self.size,
            });
        }
        if self.time_ms < prev.time_ms {
            return Err(ChainError::TimeWentBackwards {
                prev: prev.time_ms,
                next: self.time_ms,
            });
        }
        Ok(())
    }
}

fn parse_decimal(s: &str, field: &'static str) -> Result<u64, CheckpointError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::InvalidNumber { field });
    }
    s.parse()
        .map_err(|_| CheckpointError::InvalidNumber { field })
}

fn parse_hash(s: &str, field: &'static str) -> Result<Hash, CheckpointError> {
    // The STANDARD engine requires canonical padding and zero trailing bits.
    BASE64
        .decode(s)
        .ok()
        .and_then(|v| Hash::try_from(v).ok())
        .ok_or(CheckpointError::InvalidHash { field })
}

/// A checkpoint together with the whole signed note it came in (log signature and any
/// cosignatures).
///
/// Serde (de)serializes it as the note string. Deserializing parses the note and the body but
/// does not check signatures (it has no key): use it only for state the caller wrote itself,
/// and [`SignedCheckpoint::open`] for anything received.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the log key. Fails if its body would not parse back (bad origin).
    pub fn sign(checkpoint: Checkpoint, signer: &NoteSigner) -> Result<Self, CheckpointError> {
        let body = checkpoint.body();
        Checkpoint::parse_body(&body)?;
        let note = sign_note(&body, &[signer])?;
        Ok(Self { checkpoint, note })
    }

    /// Opens a checkpoint received from anywhere: parses the note, requires a valid signature
    /// by `verifier` (other signatures are kept but not checked here), checks the origin and
    /// parses the body.
    pub fn open(
        note_bytes: &[u8],
        origin: &str,
        verifier: &NoteVerifier,
    ) -> Result<Self, CheckpointError> {
        let note = Note::parse(note_bytes)?;
        note.verify(std::slice::from_ref(verifier))?;
        let checkpoint = Checkpoint::parse_body(note.text())?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                expected: origin.to_owned(),
                found: checkpoint.origin,
            });
        }
        let note = String::from_utf8(note_bytes.to_vec()).map_err(|_| NoteError::NotUtf8)?;
        Ok(Self { checkpoint, note })
    }

    /// Parses without checking any signature; see the type docs.
    fn parse_unverified(note: String) -> Result<Self, CheckpointError> {
        let checkpoint = Checkpoint::parse_body(Note::parse(note.as_bytes())?.text())?;
        Ok(Self { checkpoint, note })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The whole signed note.
    pub fn note(&self) -> &str {
        &self.note
    }

    pub fn into_note(self) -> String {
        self.note
    }
}

/// Opens checkpoints of one log, remembering the last one it opened so that the same note
/// received again (every answer of an epoch carries it) is not parsed and verified again.
///
/// Only a byte-identical note is taken from memory: a note that differs in any byte, a
/// cosignature added included, is opened in full. Clones share the memory.
#[derive(Debug, Clone)]
pub struct CheckpointOpener {
    origin: String,
    verifier: NoteVerifier,
    last: std::sync::Arc<std::sync::Mutex<Option<SignedCheckpoint>>>,
}

impl CheckpointOpener {
    /// An opener for checkpoints of `origin` signed by `verifier`.
    pub fn new(origin: impl Into<String>, verifier: NoteVerifier) -> Self {
        Self {
            origin: origin.into(),
            verifier,
            last: Default::default(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// [`SignedCheckpoint::open`], skipped when `note_bytes` are exactly the last note opened.
    pub fn open(&self, note_bytes: &[u8]) -> Result<SignedCheckpoint, CheckpointError> {
        if let Some(last) = self.remembered(note_bytes) {
            return Ok(last);
        }
        let opened = SignedCheckpoint::open(note_bytes, &self.origin, &self.verifier)?;
        *self.lock() = Some(opened.clone());
        Ok(opened)
    }

    /// Whether `note_bytes` are exactly the last note opened (and so need no opening).
    pub fn remembers(&self, note_bytes: &[u8]) -> bool {
        self.remembered(note_bytes).is_some()
    }

    fn remembered(&self, note_bytes: &[u8]) -> Option<SignedCheckpoint> {
        self.lock()
            .as_ref()
            .filter(|last| last.note().as_bytes() == note_bytes)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SignedCheckpoint>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SignedCheckpoint").field(&self.note).finish()
    }
}

impl Serialize for SignedCheckpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.note)
    }
}

impl<'de> Deserialize<'de> for SignedCheckpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse_unverified(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
