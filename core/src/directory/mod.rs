//! The key directory's entries and rules (`docs/protocol.md` §9), as pure functions.
//!
//! Two entry kinds live here, next to the message-log record of [`crate::entry`]:
//!
//! - [`KeyUpdate`] (kind `0x02`): one change of one label's key. A label's updates form a hash
//!   chain through `prev`, like the spends of a Bitcoin output.
//! - [`Message`] (kind `0x03`): a message signed by its author's current key.
//!
//! Both are canonical bytes: one value has exactly one encoding, and `decode` rejects anything
//! `encode` would not produce, because the bytes are what the log hashes and what users sign.
//! Whether an entry is *allowed* given the directory's state is a separate, pure question answered
//! by [`rules`], so the server (before appending) and the auditor (when replaying) run the same
//! code.

mod codec;
pub mod key;
pub mod label;
pub mod message;
pub mod rules;
pub mod update;
pub mod verify;

pub use key::{KeyError, SignatureError, UserKey, UserSigner};
pub use label::{
    canonical_identifier, check_identifier, normalize_identifier, refused_class, vrf_input, Label,
    RefusedClass,
};
pub use message::Message;
pub use rules::{
    apply_message, apply_update, apply_update_verified, check_update_time, LabelState, RuleError,
    VerifiedSignatures, MAX_UPDATE_SKEW_MS,
};
pub use update::{KeyUpdate, Op, Role, UpdateSignature};
pub use verify::{
    verify_history, verify_label, verify_lookup, verify_messages, verify_read,
    verify_update_receipt, AnswerError, ForgedMessage, HistoryAnswer, LookupAnswer, ProvenEntry,
    ReadAnswer, VerifiedMessage, VerifiedRead, VerifiedUpdate,
};

use crate::entry::EntryError;
use thiserror::Error;

/// Kind byte of a [`KeyUpdate`] entry.
pub const KIND_KEY_UPDATE: u8 = 0x02;
/// Kind byte of a [`Message`] entry.
pub const KIND_MESSAGE: u8 = 0x03;
/// Longest user identifier, in bytes of UTF-8.
pub const MAX_IDENTIFIER_LEN: usize = 256;
/// Longest signature in any entry. Every supported algorithm's signature is exactly 64 bytes
/// (Ed25519 `R || S`, secp256k1 ECDSA compact `r || s`, BIP-340), and [`UserKey::verify`] refuses
/// any other length; the framing bound stays at 128 so that a later algorithm with longer
/// signatures needs no change to the entry formats of §9.3 and §9.4. It keeps every entry small.
pub const MAX_SIGNATURE_LEN: usize = 128;

/// Why bytes or values are not a valid directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DirectoryError {
    #[error("entry is empty")]
    Empty,
    #[error("unsupported entry format version {0:#04x}")]
    UnsupportedVersion(u8),
    #[error("entry kind must be {want:#04x}, got {got:#04x}")]
    WrongKind { want: u8, got: u8 },
    #[error("entry truncated: {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the entry")]
    TrailingBytes(usize),
    #[error("identifier must be 1 to {MAX_IDENTIFIER_LEN} bytes of UTF-8 in NFC, got {0}")]
    IdentifierLength(usize),
    /// A character of a refused class (`docs/protocol.md` §9.1), at a byte offset of the
    /// identifier's NFC form.
    #[error(
        "identifier contains U+{code:04X} at byte {at}, {class}: refused, because it would \
         print like another identifier",
        code = u32::from(*ch)
    )]
    IdentifierCharacter {
        ch: char,
        at: usize,
        class: RefusedClass,
    },
    #[error("version must be at least 1")]
    ZeroVersion,
    #[error("prev must be zeros at version 1")]
    PrevAtVersionOne,
    #[error("prev must not be zeros at version {0}")]
    ZeroPrev(u64),
    #[error("unknown operation {0:#04x}")]
    UnknownOp(u8),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("at most 2 signatures, got {0}")]
    TooManySignatures(u8),
    #[error("unknown signature role {0:#04x}")]
    UnknownRole(u8),
    #[error("two signatures for the {0} role")]
    DuplicateRole(Role),
    #[error("signatures must be in ascending role order")]
    SignatureOrder,
    #[error("signature must be 1 to {MAX_SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
    #[error("sequence must be at least 1")]
    ZeroSequence,
    #[error("bad namespace: {0}")]
    Namespace(EntryError),
    #[error("payload must be 1 to {max} bytes, got {0}", max = crate::entry::MAX_PAYLOAD_LEN)]
    PayloadLength(usize),
}
