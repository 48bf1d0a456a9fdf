//! Canonical entry bytes (`docs/protocol.md` §Entries).
//!
//! Entries are hashed into the log exactly as encoded here, so the encoding is canonical: one
//! value has exactly one encoding, and [`Entry::decode`] rejects anything [`Entry::encode`] would
//! not produce. Protobuf is only the transport; it never reaches a hash.

use thiserror::Error;

use crate::directory::{DirectoryError, KeyUpdate, Message, KIND_KEY_UPDATE, KIND_MESSAGE};

/// The first byte of every entry: the entry format version.
pub const FORMAT_V1: u8 = 0x01;
/// Kind byte of a message-log record (namespace + payload).
pub const KIND_RECORD: u8 = 0x01;
/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Largest record payload, in bytes. Leaves room under the 65,535-byte entry limit of
/// C2SP tlog-tiles entry bundles (2-byte length prefixes).
pub const MAX_PAYLOAD_LEN: usize = 32 * 1024;
/// Largest encoded entry of any kind (the tlog-tiles bundle limit).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Why bytes or values are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    #[error("entry is empty")]
    Empty,
    #[error("unsupported entry format version {0:#04x}")]
    UnsupportedVersion(u8),
    #[error("unknown entry kind {0:#04x}")]
    UnknownKind(u8),
    #[error("entry truncated: {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the entry")]
    TrailingBytes(usize),
    #[error("namespace must be 1 to {MAX_NAMESPACE_LEN} bytes, got {0}")]
    NamespaceLength(usize),
    #[error("namespace may contain only a-z, 0-9, '.', '_', '-' and '/', got {0:?}")]
    NamespaceCharacters(String),
    #[error("payload must be 1 to {MAX_PAYLOAD_LEN} bytes, got {0}")]
    PayloadLength(usize),
    /// A key update or message that does not decode (boxed: directory errors can hold an
    /// `EntryError` for their namespace).
    #[error("{0}")]
    Directory(Box<DirectoryError>),
}

/// A namespace of the message log: short, lowercase ASCII, so it is unambiguous when printed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(value: impl Into<String>) -> Result<Self, EntryError> {
        let value = value.into();
        if value.is_empty() || value.len() > MAX_NAMESPACE_LEN {
            return Err(EntryError::NamespaceLength(value.len()));
        }
        let allowed = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
        };
        if !value.chars().all(allowed) {
            return Err(EntryError::NamespaceCharacters(value));
        }
        Ok(Namespace(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message-log record: opaque payload bytes under a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    namespace: Namespace,
    payload: Vec<u8>,
}

impl Record {
    pub fn new(namespace: Namespace, payload: Vec<u8>) -> Result<Self, EntryError> {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_LEN {
            return Err(EntryError::PayloadLength(payload.len()));
        }
        Ok(Record { namespace, payload })
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Every kind of log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A message-log record (kind 0x01).
    Record(Record),
    /// A key directory update (kind 0x02, `docs/protocol.md` §9).
    KeyUpdate(KeyUpdate),
    /// A signed message of the directory's message log (kind 0x03, §9).
    Message(Message),
}

impl Entry {
    /// The canonical bytes that are hashed into the log.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Entry::Record(r) => {
                let ns = r.namespace.as_str().as_bytes();
                let mut out = Vec::with_capacity(2 + 1 + ns.len() + 4 + r.payload.len());
                out.push(FORMAT_V1);
                out.push(KIND_RECORD);
                // Lengths are bounded by the constructors, so these casts cannot truncate.
                out.push(ns.len() as u8);
                out.extend_from_slice(ns);
                out.extend_from_slice(&(r.payload.len() as u32).to_be_bytes());
                out.extend_from_slice(&r.payload);
                out
            }
            Entry::KeyUpdate(u) => u.encode(),
            Entry::Message(m) => m.encode(),
        }
    }

    /// Parses canonical bytes; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let mut r = Reader(bytes);
        let version = r.u8().map_err(|_| EntryError::Empty)?;
        if version != FORMAT_V1 {
            return Err(EntryError::UnsupportedVersion(version));
        }
        let kind = r.u8().map_err(|_| EntryError::Truncated("kind"))?;
        let entry = match kind {
            KIND_RECORD => {
                let ns_len = r
                    .u8()
                    .map_err(|_| EntryError::Truncated("namespace length"))?;
                let ns = r
                    .take(ns_len as usize)
                    .map_err(|_| EntryError::Truncated("namespace"))?;
                let ns = std::str::from_utf8(ns).map_err(|_| {
                    EntryError::NamespaceCharacters(String::from_utf8_lossy(ns).into_owned())
                })?;
                let namespace = Namespace::new(ns)?;
                let len = r
                    .u32()
                    .map_err(|_| EntryError::Truncated("payload length"))?;
                if len as usize > MAX_PAYLOAD_LEN {
                    return Err(EntryError::PayloadLength(len as usize));
                }
                let payload = r
                    .take(len as usize)
                    .map_err(|_| EntryError::Truncated("payload"))?;
                Entry::Record(Record::new(namespace, payload.to_vec())?)
            }
            KIND_KEY_UPDATE => {
                return KeyUpdate::decode(bytes)
                    .map(Entry::KeyUpdate)
                    .map_err(|e| EntryError::Directory(Box::new(e)))
            }
            KIND_MESSAGE => {
                return Message::decode(bytes)
                    .map(Entry::Message)
                    .map_err(|e| EntryError::Directory(Box::new(e)))
            }
            other => return Err(EntryError::UnknownKind(other)),
        };
        if !r.0.is_empty() {
            return Err(EntryError::TrailingBytes(r.0.len()));
        }
        Ok(entry)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < n {
            return Err(());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ()> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ()> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ns: &str, payload: &[u8]) -> Entry {
        Entry::Record(Record::new(Namespace::new(ns).unwrap(), payload.to_vec()).unwrap())
    }

    #[test]
    fn encoding_is_byte_exact() {
        let e = record("chat/room-1", b"hi");
        let mut want = vec![0x01, 0x01, 11];
        want.extend_from_slice(b"chat/room-1");
        want.extend_from_slice(&[0, 0, 0, 2]);
        want.extend_from_slice(b"hi");
        assert_eq!(e.encode(), want);
        assert_eq!(Entry::decode(&want).unwrap(), e);
    }

    #[test]
    fn directory_kinds_decode_through_entry() {
        use crate::directory::{Label, Op, Role, UserSigner};
        let signer = UserSigner::ed25519_from_seed([3; 32]);
        let label = Label::from_identifier("alice@example.com").unwrap();
        let update = KeyUpdate::new(label, 1, [0; 32], Op::Register, Some(signer.public()), 7)
            .unwrap()
            .sign(Role::NewKey, &signer)
            .unwrap();
        let entry = Entry::KeyUpdate(update);
        let bytes = entry.encode();
        assert_eq!(&bytes[..2], &[FORMAT_V1, KIND_KEY_UPDATE]);
        assert_eq!(Entry::decode(&bytes).unwrap(), entry);

        let message = Message::sign(
            Namespace::new("chat").unwrap(),
            label,
            1,
            b"hi".to_vec(),
            &signer,
        )
        .unwrap();
        let entry = Entry::Message(message);
        assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);

        let mut bad = bytes.clone();
        bad.push(0);
        assert!(matches!(Entry::decode(&bad), Err(EntryError::Directory(_))));
    }

    #[test]
    fn largest_entry_fits_a_tile_bundle() {
        let e = record(&"a".repeat(MAX_NAMESPACE_LEN), &vec![7; MAX_PAYLOAD_LEN]);
        assert!(e.encode().len() <= MAX_ENTRY_LEN);
    }

    #[test]
    fn rejects_non_canonical_and_bad_values() {
        let good = record("ns", b"x").encode();
        assert_eq!(Entry::decode(&[]), Err(EntryError::Empty));
        assert_eq!(
            Entry::decode(&[0x02, 0x01]),
            Err(EntryError::UnsupportedVersion(2))
        );
        assert_eq!(
            Entry::decode(&[0x01, 0x09]),
            Err(EntryError::UnknownKind(9))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Entry::decode(&trailing), Err(EntryError::TrailingBytes(1)));
        for cut in 1..good.len() {
            assert!(
                Entry::decode(&good[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        assert!(matches!(
            Namespace::new("Upper"),
            Err(EntryError::NamespaceCharacters(_))
        ));
        assert_eq!(Namespace::new(""), Err(EntryError::NamespaceLength(0)));
        assert!(matches!(
            Record::new(Namespace::new("a").unwrap(), vec![]),
            Err(EntryError::PayloadLength(0))
        ));
        let mut oversized = vec![0x01, 0x01, 1, b'a'];
        oversized.extend_from_slice(&((MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes()));
        assert_eq!(
            Entry::decode(&oversized),
            Err(EntryError::PayloadLength(MAX_PAYLOAD_LEN + 1))
        );
    }
}
