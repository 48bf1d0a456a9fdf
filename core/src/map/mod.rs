//! The map: a sparse Merkle tree over 256-bit labels, committing to each label's latest KeyUpdate
//! (`docs/protocol.md` §10).
//!
//! The tree is *compressed*: a subtree holding exactly one leaf has that leaf's hash, wherever the
//! leaf sits, and an empty subtree has the hash of 32 zero bytes. So the tree's shape, and its
//! root, are a function of the set of (label, value) pairs alone: independent of insertion order
//! and of how updates were batched into epochs. A label's path stops at the first node that holds
//! at most one leaf, which is about log2(n) levels down for n labels.
//!
//! Storage reaches this module through [`PageReader`]: the tree is cut into [`Page`]s of four
//! levels (16 child slots), the unit of one storage read or write, as the log's hashes are cut
//! into tiles. Proofs are built by [`prove`] and checked by [`verify`]; [`apply_updates`] computes
//! the pages an epoch rewrites and the new root; [`MemoryMap`] keeps every page in memory for the
//! auditor and tests.

mod page;
mod proof;
mod update;

pub use page::{Child, Page, PagePath, PAGE_FANOUT, PAGE_LEVELS};
pub use proof::{
    prove, root_hash, verify, verify_tree, MapProof, MapProofError, Terminal, MAX_PROOF_LEN,
};
pub use update::{apply_updates, MapUpdate, MemoryMap};

use crate::directory::Label;
use crate::hash::Hash;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Hash of an empty subtree: 32 zero bytes (no SHA-256 output is known to be zero).
pub const EMPTY_HASH: Hash = [0; 32];
/// Domain-separation prefix of a map leaf hash; distinct from the log's 0x00/0x01.
pub const MAP_LEAF_PREFIX: u8 = 0x10;
/// Domain-separation prefix of a map interior node hash.
pub const MAP_NODE_PREFIX: u8 = 0x11;
/// Bits in a label, hence the greatest depth of the tree.
pub const LABEL_BITS: usize = 256;

/// What the map holds for a label: its latest KeyUpdate and its message state, summarized so
/// that a lookup can prove inclusion of exactly that entry in the log, and a message read can
/// prove that it has every message of the label up to the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapValue {
    /// Version of the latest update.
    pub version: u64,
    /// Leaf hash (RFC 9162) of the latest update's entry bytes.
    pub entry_hash: Hash,
    /// Log index of the latest update.
    pub index: u64,
    /// Number of messages the label has authored: the sequence of its latest message (messages
    /// are numbered from 1 with no gap), 0 if none.
    pub message_count: u64,
    /// Leaf hash of the label's latest message; 32 zero bytes if it has none.
    pub last_message_hash: Hash,
}

/// Length of [`MapValue::encode`].
pub const MAP_VALUE_LEN: usize = 88;

/// [`MapValue::last_message_hash`] of a label without messages.
pub const NO_MESSAGE_HASH: Hash = [0; 32];

impl MapValue {
    /// The value of a label whose latest KeyUpdate is (`version`, `entry_hash`, `index`) and
    /// which has authored no message.
    pub fn new(version: u64, entry_hash: Hash, index: u64) -> MapValue {
        MapValue {
            version,
            entry_hash,
            index,
            message_count: 0,
            last_message_hash: NO_MESSAGE_HASH,
        }
    }

    /// This value with `(count, leaf hash)` as the label's latest message.
    pub fn with_messages(self, message_count: u64, last_message_hash: Hash) -> MapValue {
        MapValue {
            message_count,
            last_message_hash,
            ..self
        }
    }

    /// `version (u64 BE) || entry_hash (32) || index (u64 BE) || message_count (u64 BE) ||
    /// last_message_hash (32)`.
    pub fn encode(&self) -> [u8; MAP_VALUE_LEN] {
        let mut out = [0u8; MAP_VALUE_LEN];
        out[..8].copy_from_slice(&self.version.to_be_bytes());
        out[8..40].copy_from_slice(&self.entry_hash);
        out[40..48].copy_from_slice(&self.index.to_be_bytes());
        out[48..56].copy_from_slice(&self.message_count.to_be_bytes());
        out[56..].copy_from_slice(&self.last_message_hash);
        out
    }

    pub fn decode(bytes: &[u8; MAP_VALUE_LEN]) -> MapValue {
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let hash_at = |at: usize| -> Hash { bytes[at..at + 32].try_into().expect("32 bytes") };
        MapValue {
            version: u64_at(0),
            entry_hash: hash_at(8),
            index: u64_at(40),
            message_count: u64_at(48),
            last_message_hash: hash_at(56),
        }
    }
}

/// `SHA-256(0x10 || label || value)`.
pub fn leaf_hash(label: &Label, value: &MapValue) -> Hash {
    let mut h = Sha256::new();
    h.update([MAP_LEAF_PREFIX]);
    h.update(label.as_bytes());
    h.update(value.encode());
    h.finalize().into()
}

/// `SHA-256(0x11 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([MAP_NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Bit `depth` of a label, most significant bit first: 0 goes left, 1 goes right.
pub fn label_bit(label: &Label, depth: usize) -> u8 {
    (label.as_bytes()[depth / 8] >> (7 - depth % 8)) & 1
}

/// Whether two labels agree on their first `bits` bits.
pub fn shares_prefix(a: &Label, b: &Label, bits: usize) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// A subtree's hash together with how many leaves it holds (none, one, more), which decides
/// whether combining it with an empty sibling hashes (more) or passes the hash up (none, one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Empty,
    Single(Hash),
    Multi(Hash),
}

impl Node {
    pub(crate) fn hash(&self) -> Hash {
        match self {
            Node::Empty => EMPTY_HASH,
            Node::Single(h) | Node::Multi(h) => *h,
        }
    }

    pub(crate) fn combine(left: Node, right: Node) -> Node {
        match (left, right) {
            (Node::Empty, other) | (other, Node::Empty) if !matches!(other, Node::Multi(_)) => {
                other
            }
            _ => Node::Multi(node_hash(&left.hash(), &right.hash())),
        }
    }
}

/// Why a map operation over stored pages failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MapError<E> {
    /// A page that a parent page points to is not in storage.
    #[error("map page {0} is missing")]
    MissingPage(PagePath),
    /// A stored page does not decode or contradicts its position.
    #[error("map page {path} is corrupt: {why}")]
    CorruptPage { path: PagePath, why: &'static str },
    /// The storage backend failed.
    #[error("reading the map: {0}")]
    Read(E),
}

/// How storage hands pages to the map: one page per call, `None` if no page was ever written at
/// `path` (only the root may legitimately be absent: it is the empty map).
pub trait PageReader {
    type Error;
    fn read_page(&self, path: &PagePath) -> Result<Option<Page>, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_passes_single_leaves_up_and_hashes_everything_else() {
        let a = Node::Single([1; 32]);
        let m = Node::Multi([2; 32]);
        assert_eq!(Node::combine(Node::Empty, Node::Empty), Node::Empty);
        assert_eq!(Node::combine(a, Node::Empty), a);
        assert_eq!(Node::combine(Node::Empty, a), a);
        assert_eq!(
            Node::combine(m, Node::Empty),
            Node::Multi(node_hash(&[2; 32], &EMPTY_HASH))
        );
        assert_eq!(
            Node::combine(a, a),
            Node::Multi(node_hash(&[1; 32], &[1; 32]))
        );
    }

    #[test]
    fn prefixes() {
        let a = Label::from_bytes([0b1010_0000; 32]);
        let mut b = [0b1010_0000; 32];
        b[1] = 0b1011_0000;
        let b = Label::from_bytes(b);
        assert!(shares_prefix(&a, &b, 8));
        assert!(shares_prefix(&a, &b, 11));
        assert!(!shares_prefix(&a, &b, 12));
        assert!(shares_prefix(&a, &a, 256));
        assert_eq!(label_bit(&a, 0), 1);
        assert_eq!(label_bit(&a, 1), 0);
    }

    #[test]
    fn value_round_trips() {
        let v = MapValue::new(7, [9; 32], 1 << 40).with_messages(u64::MAX - 1, [3; 32]);
        assert_eq!(MapValue::decode(&v.encode()), v);
        assert_eq!(v.encode()[48..56], (u64::MAX - 1).to_be_bytes());
    }
}
