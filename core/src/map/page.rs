//! Pages: the map cut into subtrees of four levels, the unit of one storage read or write.

use super::{leaf_hash, MapValue, Node, MAP_VALUE_LEN};
use crate::directory::Label;
use crate::hash::Hash;

/// Levels of the tree one page spans.
pub const PAGE_LEVELS: usize = 4;
/// Child slots of a page: one per value of the next four label bits.
pub const PAGE_FANOUT: usize = 1 << PAGE_LEVELS;
/// Pages along the deepest possible path (256 bits / 4).
pub(crate) const MAX_PAGE_DEPTH: u8 = 64;

const TAG_LEAF: u8 = 1;
const TAG_SUBPAGE: u8 = 2;

/// Where a page sits: the first `depth` nibbles (4-bit groups, high nibble of each byte first)
/// that every label below it shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PagePath {
    depth: u8,
    /// The prefix, packed two nibbles per byte; nibbles at and past `depth` are zero.
    prefix: [u8; 32],
}

impl PagePath {
    /// The page at the top of the tree.
    pub const fn root() -> PagePath {
        PagePath {
            depth: 0,
            prefix: [0; 32],
        }
    }

    /// The path of the page at `depth` on `label`'s way down.
    pub fn of_label(label: &Label, depth: u8) -> PagePath {
        assert!(depth < MAX_PAGE_DEPTH, "page depth {depth} too deep");
        let mut prefix = [0u8; 32];
        let whole = usize::from(depth) / 2;
        prefix[..whole].copy_from_slice(&label.as_bytes()[..whole]);
        if depth % 2 == 1 {
            prefix[whole] = label.as_bytes()[whole] & 0xf0;
        }
        PagePath { depth, prefix }
    }

    /// The path of the page below child slot `slot` of this one, if this is not the deepest.
    pub fn child(&self, slot: usize) -> Option<PagePath> {
        if self.depth + 1 >= MAX_PAGE_DEPTH || slot >= PAGE_FANOUT {
            return None;
        }
        let mut prefix = self.prefix;
        let byte = usize::from(self.depth) / 2;
        prefix[byte] |= if self.depth.is_multiple_of(2) {
            (slot as u8) << 4
        } else {
            slot as u8
        };
        Some(PagePath {
            depth: self.depth + 1,
            prefix,
        })
    }

    /// Number of nibbles fixed by the path (0 for the root).
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The child slot `label` falls into in the page at this path.
    pub fn slot(&self, label: &Label) -> usize {
        nibble(label, self.depth)
    }

    /// Whether `label` lies below this path.
    pub fn contains(&self, label: &Label) -> bool {
        *self == PagePath::of_label(label, self.depth)
    }

    /// Storage key: `depth (u8) || ceil(depth / 2) prefix bytes`. Keys of one depth have one
    /// length, so a key plus a fixed-width suffix (an epoch) sorts by path and then by suffix.
    pub fn key(&self) -> Vec<u8> {
        let len = usize::from(self.depth).div_ceil(2);
        let mut out = Vec::with_capacity(1 + len);
        out.push(self.depth);
        out.extend_from_slice(&self.prefix[..len]);
        out
    }
}

impl std::fmt::Display for PagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = hex::encode(self.prefix);
        write!(f, "/{}", &hex[..usize::from(self.depth)])
    }
}

/// Nibble `i` of a label, high nibble of each byte first.
fn nibble(label: &Label, i: u8) -> usize {
    let byte = label.as_bytes()[usize::from(i) / 2];
    usize::from(if i.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    })
}

/// One child slot of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// The only label below this slot, with its value.
    Leaf { label: Label, value: MapValue },
    /// Two or more labels below this slot, in the page one level down; its root hash.
    Subpage(Hash),
}

impl Child {
    fn node(&self) -> Node {
        match self {
            Child::Leaf { label, value } => Node::Single(leaf_hash(label, value)),
            Child::Subpage(h) => Node::Multi(*h),
        }
    }
}

/// Four levels of the tree: 16 child slots and the 15 interior nodes above them, of which only
/// the slots are stored; interior hashes are recomputed (at most 15 hashes) when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub children: [Option<Child>; PAGE_FANOUT],
}

/// Why stored page bytes do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageDecodeError {
    #[error("page truncated")]
    Truncated,
    #[error("unknown child tag {0}")]
    UnknownTag(u8),
    #[error("trailing bytes after the page")]
    Trailing,
}

impl Page {
    /// `present (u16 BE bitmap, bit i = slot i) || for each present slot in order:
    /// 0x01 label (32) value (88) | 0x02 subpage root (32)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut bitmap = 0u16;
        let mut body = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            let Some(child) = child else { continue };
            bitmap |= 1 << i;
            match child {
                Child::Leaf { label, value } => {
                    body.push(TAG_LEAF);
                    body.extend_from_slice(label.as_bytes());
                    body.extend_from_slice(&value.encode());
                }
                Child::Subpage(h) => {
                    body.push(TAG_SUBPAGE);
                    body.extend_from_slice(h);
                }
            }
        }
        let mut out = bitmap.to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Page, PageDecodeError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], PageDecodeError> {
            if b.len() < n {
                return Err(PageDecodeError::Truncated);
            }
            let (head, tail) = b.split_at(n);
            *b = tail;
            Ok(head)
        }
        let mut b = bytes;
        let bitmap = u16::from_be_bytes(take(&mut b, 2)?.try_into().unwrap());
        let mut page = Page::default();
        for (i, slot) in page.children.iter_mut().enumerate() {
            if bitmap & (1 << i) == 0 {
                continue;
            }
            *slot = Some(match take(&mut b, 1)?[0] {
                TAG_LEAF => {
                    let label = Label::from_bytes(take(&mut b, 32)?.try_into().unwrap());
                    let value = take(&mut b, MAP_VALUE_LEN)?.try_into().unwrap();
                    Child::Leaf {
                        label,
                        value: MapValue::decode(value),
                    }
                }
                TAG_SUBPAGE => Child::Subpage(take(&mut b, 32)?.try_into().unwrap()),
                other => return Err(PageDecodeError::UnknownTag(other)),
            });
        }
        if !b.is_empty() {
            return Err(PageDecodeError::Trailing);
        }
        Ok(page)
    }

    /// The page's nodes in heap order: index 1 is the page's root, node `i` has children `2i` and
    /// `2i + 1`, and the child slots are indices 16..32 (index 0 is unused).
    pub(crate) fn nodes(&self) -> [Node; 2 * PAGE_FANOUT] {
        let mut nodes = [Node::Empty; 2 * PAGE_FANOUT];
        for (i, child) in self.children.iter().enumerate() {
            if let Some(child) = child {
                nodes[PAGE_FANOUT + i] = child.node();
            }
        }
        for i in (1..PAGE_FANOUT).rev() {
            nodes[i] = Node::combine(nodes[2 * i], nodes[2 * i + 1]);
        }
        nodes
    }

    pub(crate) fn root(&self) -> Node {
        self.nodes()[1]
    }

    /// The only leaf among the slots below heap node `index` (which must hold exactly one leaf).
    pub(crate) fn single_leaf_below(&self, index: usize) -> Option<(Label, MapValue)> {
        let level = usize::BITS - 1 - index.leading_zeros(); // 0 for the root, 4 for a slot
        let span = PAGE_FANOUT >> level;
        let first = (index << (PAGE_LEVELS as u32 - level)) - PAGE_FANOUT;
        let mut found = None;
        for child in self.children[first..first + span].iter().flatten() {
            match (child, found) {
                (Child::Leaf { label, value }, None) => found = Some((*label, *value)),
                _ => return None,
            }
        }
        found
    }

    /// Whether every leaf in this page belongs below `path` in the slot it occupies.
    pub fn leaves_fit(&self, path: &PagePath) -> bool {
        self.children.iter().enumerate().all(|(i, c)| match c {
            Some(Child::Leaf { label, .. }) => path.contains(label) && path.slot(label) == i,
            _ => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(first: u8) -> Label {
        let mut b = [0x55; 32];
        b[0] = first;
        Label::from_bytes(b)
    }

    #[test]
    fn paths_and_keys() {
        let l = label(0xab);
        assert_eq!(PagePath::root().key(), vec![0]);
        assert_eq!(PagePath::of_label(&l, 1).key(), vec![1, 0xa0]);
        assert_eq!(PagePath::of_label(&l, 2).key(), vec![2, 0xab]);
        assert_eq!(PagePath::of_label(&l, 3).key(), vec![3, 0xab, 0x50]);
        assert_eq!(PagePath::root().slot(&l), 0xa);
        assert_eq!(PagePath::of_label(&l, 1).slot(&l), 0xb);
        assert!(PagePath::of_label(&l, 2).contains(&l));
        assert!(!PagePath::of_label(&l, 2).contains(&label(0xac)));
        assert_eq!(PagePath::of_label(&l, 3).to_string(), "/ab5");
    }

    #[test]
    fn page_round_trips_and_rejects_garbage() {
        let mut page = Page::default();
        page.children[3] = Some(Child::Subpage([7; 32]));
        page.children[15] = Some(Child::Leaf {
            label: label(0xff),
            value: MapValue::new(2, [1; 32], 9).with_messages(4, [2; 32]),
        });
        let bytes = page.encode();
        assert_eq!(bytes.len(), 2 + 33 + 1 + 32 + MAP_VALUE_LEN);
        assert_eq!(Page::decode(&bytes).unwrap(), page);
        assert_eq!(
            Page::decode(&bytes[..bytes.len() - 1]),
            Err(PageDecodeError::Truncated)
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Page::decode(&long), Err(PageDecodeError::Trailing));
        let mut bad = bytes;
        bad[2] = 9;
        assert_eq!(Page::decode(&bad), Err(PageDecodeError::UnknownTag(9)));
    }

    #[test]
    fn single_leaf_lookup_by_heap_index() {
        let mut page = Page::default();
        let v = MapValue::new(1, [0; 32], 0);
        page.children[5] = Some(Child::Leaf {
            label: label(0x50),
            value: v,
        });
        assert_eq!(page.single_leaf_below(1), Some((label(0x50), v)));
        assert_eq!(
            page.single_leaf_below(PAGE_FANOUT + 5),
            Some((label(0x50), v))
        );
        assert_eq!(page.single_leaf_below(PAGE_FANOUT + 4), None);
        page.children[4] = Some(Child::Subpage([1; 32]));
        assert_eq!(page.single_leaf_below(1), None);
    }
}
