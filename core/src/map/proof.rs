//! Membership and non-membership proofs: the siblings along a label's path, empty ones
//! compressed, and what the path ends at.

use super::page::{Child, PAGE_FANOUT, PAGE_LEVELS};
use super::{
    label_bit, leaf_hash, shares_prefix, MapError, MapValue, Node, PagePath, PageReader,
    EMPTY_HASH, LABEL_BITS, MAP_VALUE_LEN,
};
use crate::directory::Label;
use crate::hash::Hash;
use thiserror::Error;

const TERMINAL_EMPTY: u8 = 0;
const TERMINAL_LEAF: u8 = 1;

/// Longest encoded proof: a full 256-level path with no empty sibling and a leaf at the end.
pub const MAX_PROOF_LEN: usize = 2 + LABEL_BITS / 8 + LABEL_BITS * 32 + 1 + 32 + MAP_VALUE_LEN;

/// Where a label's path ends: at the first node that holds at most one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    /// Nothing below: the label is absent.
    Empty,
    /// Exactly one label below: the looked-up one (membership) or another one sharing the path
    /// so far (non-membership).
    Leaf { label: Label, value: MapValue },
}

/// A proof that a label maps to a value, or to nothing, under a map root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProof {
    /// Sibling hashes from the root down; `EMPTY_HASH` for an empty sibling.
    siblings: Vec<Hash>,
    terminal: Terminal,
}

/// Why a map proof does not decode or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MapProofError {
    #[error("map proof truncated")]
    Truncated,
    #[error("{0} trailing bytes after the map proof")]
    Trailing(usize),
    #[error("map proof depth {0} exceeds 256")]
    TooDeep(usize),
    #[error("map proof bitmap has bits set past its depth")]
    BitmapPadding,
    #[error("map proof lists an all-zero sibling as non-empty")]
    ZeroSibling,
    #[error("unknown map proof terminal {0:#04x}")]
    UnknownTerminal(u8),
    #[error("map proof is not canonical: its deepest sibling is empty, so the path ends higher")]
    NotCanonical,
    #[error("map proof ends at a leaf that is not on the label's path")]
    LeafOffPath,
    #[error("map proof does not lead to the map root")]
    RootMismatch,
}

impl MapProof {
    pub fn new(siblings: Vec<Hash>, terminal: Terminal) -> MapProof {
        MapProof { siblings, terminal }
    }

    pub fn siblings(&self) -> &[Hash] {
        &self.siblings
    }

    pub fn terminal(&self) -> &Terminal {
        &self.terminal
    }

    /// `depth (u16 BE) || bitmap (ceil(depth / 8) bytes; bit d, most significant first, set when
    /// sibling d is not empty) || the non-empty siblings, root first || terminal`, where the
    /// terminal is `0x00` (empty) or `0x01 || label (32) || value (88)`.
    pub fn encode(&self) -> Vec<u8> {
        let depth = self.siblings.len();
        let mut bitmap = vec![0u8; depth.div_ceil(8)];
        let mut hashes = Vec::new();
        for (d, s) in self.siblings.iter().enumerate() {
            if *s != EMPTY_HASH {
                bitmap[d / 8] |= 0x80 >> (d % 8);
                hashes.extend_from_slice(s);
            }
        }
        let mut out = Vec::with_capacity(2 + bitmap.len() + hashes.len() + 81);
        out.extend_from_slice(&(depth as u16).to_be_bytes());
        out.extend_from_slice(&bitmap);
        out.extend_from_slice(&hashes);
        match &self.terminal {
            Terminal::Empty => out.push(TERMINAL_EMPTY),
            Terminal::Leaf { label, value } => {
                out.push(TERMINAL_LEAF);
                out.extend_from_slice(label.as_bytes());
                out.extend_from_slice(&value.encode());
            }
        }
        out
    }

    /// Decodes exactly what [`MapProof::encode`] produces and nothing else.
    pub fn decode(bytes: &[u8]) -> Result<MapProof, MapProofError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], MapProofError> {
            if b.len() < n {
                return Err(MapProofError::Truncated);
            }
            let (head, tail) = b.split_at(n);
            *b = tail;
            Ok(head)
        }
        let mut b = bytes;
        let depth = usize::from(u16::from_be_bytes(take(&mut b, 2)?.try_into().unwrap()));
        if depth > LABEL_BITS {
            return Err(MapProofError::TooDeep(depth));
        }
        let bitmap = take(&mut b, depth.div_ceil(8))?;
        if depth % 8 != 0 && bitmap[depth / 8] & (0xff >> (depth % 8)) != 0 {
            return Err(MapProofError::BitmapPadding);
        }
        let mut siblings = Vec::with_capacity(depth);
        for d in 0..depth {
            if bitmap[d / 8] & (0x80 >> (d % 8)) == 0 {
                siblings.push(EMPTY_HASH);
                continue;
            }
            let h: Hash = take(&mut b, 32)?.try_into().unwrap();
            if h == EMPTY_HASH {
                return Err(MapProofError::ZeroSibling);
            }
            siblings.push(h);
        }
        let terminal = match take(&mut b, 1)?[0] {
            TERMINAL_EMPTY => Terminal::Empty,
            TERMINAL_LEAF => Terminal::Leaf {
                label: Label::from_bytes(take(&mut b, 32)?.try_into().unwrap()),
                value: MapValue::decode(take(&mut b, MAP_VALUE_LEN)?.try_into().unwrap()),
            },
            other => return Err(MapProofError::UnknownTerminal(other)),
        };
        if !b.is_empty() {
            return Err(MapProofError::Trailing(b.len()));
        }
        Ok(MapProof { siblings, terminal })
    }
}

/// Checks `proof` for `label` against `root`: `Some(value)` if the map holds `label` with
/// `value`, `None` if it proves `label` absent.
///
/// Only the canonical proof verifies: the path must end at the first node holding at most one
/// leaf, so its deepest sibling is never empty (otherwise the parent would already hold at most
/// one leaf). An empty terminal next to a one-leaf sibling does not verify either, because the
/// verifier hashes every non-empty sibling, while the tree passes a lone leaf up unhashed.
pub fn verify(
    root: &Hash,
    label: &Label,
    proof: &MapProof,
) -> Result<Option<MapValue>, MapProofError> {
    let depth = proof.siblings.len();
    if depth > LABEL_BITS {
        return Err(MapProofError::TooDeep(depth));
    }
    if proof.siblings.last() == Some(&EMPTY_HASH) {
        return Err(MapProofError::NotCanonical);
    }
    let (mut node, found) = match &proof.terminal {
        Terminal::Empty => (Node::Empty, None),
        Terminal::Leaf {
            label: other,
            value,
        } => {
            if other != label && !shares_prefix(other, label, depth) {
                return Err(MapProofError::LeafOffPath);
            }
            let found = (other == label).then_some(*value);
            (Node::Single(leaf_hash(other, value)), found)
        }
    };
    for d in (0..depth).rev() {
        let sibling = &proof.siblings[d];
        // A non-empty sibling is hashed in even if it holds one leaf: see the canonicity note.
        let sibling = if *sibling == EMPTY_HASH {
            Node::Empty
        } else {
            Node::Multi(*sibling)
        };
        node = if label_bit(label, d) == 0 {
            Node::combine(node, sibling)
        } else {
            Node::combine(sibling, node)
        };
    }
    if node.hash() != *root {
        return Err(MapProofError::RootMismatch);
    }
    Ok(found)
}

/// The map's root hash from its stored root page (the empty map has no root page).
pub fn root_hash<R: PageReader>(reader: &R) -> Result<Hash, MapError<R::Error>> {
    Ok(reader
        .read_page(&PagePath::root())
        .map_err(MapError::Read)?
        .map_or(EMPTY_HASH, |page| page.root().hash()))
}

/// Checks every stored page of the map, top down: each page decodes, its leaves lie below their
/// slots, every subpage it names exists and hashes to the root the parent holds for it (so no
/// page below the root was altered or lost), and every subpage holds at least two labels (the
/// tree is compressed). Returns the root hash and the number of labels. Reads every page once:
/// O(n), for a full start-up check.
pub fn verify_tree<R: PageReader>(reader: &R) -> Result<(Hash, u64), MapError<R::Error>> {
    let root = PagePath::root();
    let Some(page) = reader.read_page(&root).map_err(MapError::Read)? else {
        return Ok((EMPTY_HASH, 0));
    };
    let mut labels = 0u64;
    // Depth first, so at most one page per level waits in memory with its siblings' paths.
    let mut pending = vec![(root, page)];
    while let Some((path, page)) = pending.pop() {
        if !page.leaves_fit(&path) {
            return Err(MapError::CorruptPage {
                path,
                why: "a leaf is not below its slot",
            });
        }
        for (slot, child) in page.children.iter().enumerate() {
            match child {
                None => {}
                Some(Child::Leaf { .. }) => labels += 1,
                Some(Child::Subpage(hash)) => {
                    let below = path.child(slot).ok_or(MapError::CorruptPage {
                        path,
                        why: "a subpage below the deepest level",
                    })?;
                    let sub = reader
                        .read_page(&below)
                        .map_err(MapError::Read)?
                        .ok_or(MapError::MissingPage(below))?;
                    if sub.root().hash() != *hash {
                        return Err(MapError::CorruptPage {
                            path: below,
                            why: "its root is not the hash its parent page holds",
                        });
                    }
                    if !matches!(sub.root(), Node::Multi(_)) {
                        return Err(MapError::CorruptPage {
                            path: below,
                            why: "a subpage holds fewer than two labels",
                        });
                    }
                    pending.push((below, sub));
                }
            }
        }
    }
    Ok((root_hash(reader)?, labels))
}

/// Builds the proof for `label` from stored pages: one page read per four levels of the path.
pub fn prove<R: PageReader>(reader: &R, label: &Label) -> Result<MapProof, MapError<R::Error>> {
    let mut siblings = Vec::new();
    let mut path = PagePath::root();
    loop {
        let page = match reader.read_page(&path).map_err(MapError::Read)? {
            Some(page) => page,
            None if path == PagePath::root() => {
                return Ok(MapProof::new(siblings, Terminal::Empty));
            }
            None => return Err(MapError::MissingPage(path)),
        };
        if !page.leaves_fit(&path) {
            return Err(MapError::CorruptPage {
                path,
                why: "a leaf is not below its slot",
            });
        }
        let nodes = page.nodes();
        let slot = path.slot(label);
        for level in 0..=PAGE_LEVELS {
            let index = (1 << level) + (slot >> (PAGE_LEVELS - level));
            match nodes[index] {
                Node::Empty => return Ok(MapProof::new(siblings, Terminal::Empty)),
                Node::Single(_) => {
                    let (label, value) =
                        page.single_leaf_below(index).ok_or(MapError::CorruptPage {
                            path,
                            why: "a one-leaf node has no single leaf below it",
                        })?;
                    return Ok(MapProof::new(siblings, Terminal::Leaf { label, value }));
                }
                Node::Multi(_) if level < PAGE_LEVELS => {
                    let child = (1 << (level + 1)) + (slot >> (PAGE_LEVELS - level - 1));
                    siblings.push(nodes[child ^ 1].hash());
                }
                Node::Multi(_) => {}
            }
        }
        debug_assert!(matches!(page.children[slot], Some(Child::Subpage(_))));
        debug_assert_eq!(nodes.len(), 2 * PAGE_FANOUT);
        if path.depth() + 1 >= (LABEL_BITS / PAGE_LEVELS) as u8 {
            return Err(MapError::CorruptPage {
                path,
                why: "a subpage below the deepest level",
            });
        }
        path = PagePath::of_label(label, path.depth() + 1);
    }
}
