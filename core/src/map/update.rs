//! Applying an epoch's updates: which pages change and the new root.

use super::page::{Child, Page, PagePath, MAX_PAGE_DEPTH};
use super::{MapError, MapValue, Node, PageReader};
use crate::directory::Label;
use crate::hash::Hash;
use std::collections::{BTreeMap, HashMap};

/// What one epoch's updates do to the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapUpdate {
    /// The new root hash.
    pub root: Hash,
    /// Every page that changed, with its new contents, root page last. Pages are only ever
    /// rewritten, never removed: the directory has no operation that deletes a label.
    pub pages: Vec<(PagePath, Page)>,
}

/// Sets each label of `updates` to its value (inserting new labels) over the map `reader` holds,
/// without writing anything: the caller stores `pages` with the rest of the epoch.
///
/// Reads one page per four levels of each updated path; pages shared by several updated labels
/// are read and rewritten once.
pub fn apply_updates<R: PageReader>(
    reader: &R,
    updates: &BTreeMap<Label, MapValue>,
) -> Result<MapUpdate, MapError<R::Error>> {
    let items: Vec<(Label, MapValue)> = updates.iter().map(|(l, v)| (*l, *v)).collect();
    let root_path = PagePath::root();
    let existing = reader
        .read_page(&root_path)
        .map_err(MapError::Read)?
        .map(Box::new);
    if items.is_empty() {
        let root = existing.map_or(Node::Empty, |p| p.root()).hash();
        return Ok(MapUpdate {
            root,
            pages: Vec::new(),
        });
    }
    let mut pages = Vec::new();
    let root = update_page(reader, root_path, existing, &items, &mut pages)?;
    Ok(MapUpdate {
        root: root.hash(),
        pages,
    })
}

/// Rewrites the page at `path` (currently `existing`) with `items`, all of which lie below
/// `path`, sorted by label. Returns the page's new root node and appends every rewritten page to
/// `out`, children before parents.
///
/// Pages are held in boxes and read and copied in functions of their own, so that a frame of
/// this recursion (up to 64 deep) holds no page: a debug build's default 2 MiB thread stack must
/// do.
fn update_page<R: PageReader>(
    reader: &R,
    path: PagePath,
    existing: Option<Box<Page>>,
    items: &[(Label, MapValue)],
    out: &mut Vec<(PagePath, Page)>,
) -> Result<Node, MapError<R::Error>> {
    let mut page = existing.unwrap_or_default();
    if !page.leaves_fit(&path) {
        return Err(MapError::CorruptPage {
            path,
            why: "a leaf is not below its slot",
        });
    }
    // Sorted labels share nibble prefixes in runs, so each slot's updates are one run.
    let mut rest = items;
    while let Some((first, _)) = rest.first() {
        let slot = path.slot(first);
        let run = rest
            .iter()
            .take_while(|(l, _)| path.slot(l) == slot)
            .count();
        let (group, tail) = rest.split_at(run);
        rest = tail;
        page.children[slot] = Some(update_slot(reader, &path, page.children[slot], group, out)?);
    }
    record_page(out, path, &page);
    Ok(page.root())
}

#[inline(never)]
fn record_page(out: &mut Vec<(PagePath, Page)>, path: PagePath, page: &Page) {
    out.push((path, page.clone()));
}

/// The stored page at `path`, which its parent says hashes to `stored`.
#[inline(never)]
fn read_child<R: PageReader>(
    reader: &R,
    path: PagePath,
    stored: Hash,
) -> Result<Box<Page>, MapError<R::Error>> {
    let page = reader
        .read_page(&path)
        .map_err(MapError::Read)?
        .ok_or(MapError::MissingPage(path))?;
    // Never build on a page that does not hash to what its parent committed to: the new root
    // would silently absorb the corruption and get signed.
    if page.root().hash() != stored {
        return Err(MapError::CorruptPage {
            path,
            why: "the page does not hash to its parent's sub-page hash",
        });
    }
    Ok(Box::new(page))
}

fn update_slot<R: PageReader>(
    reader: &R,
    path: &PagePath,
    current: Option<Child>,
    group: &[(Label, MapValue)],
    out: &mut Vec<(PagePath, Page)>,
) -> Result<Child, MapError<R::Error>> {
    // A page at the deepest level (nibble 63) has one label per slot: two labels that agree on
    // 63 nibbles and land in one slot are equal. So a sub-page below it is corruption.
    let deepest = path.depth() + 1 >= MAX_PAGE_DEPTH;
    let child_path = || PagePath::of_label(&group[0].0, path.depth() + 1);
    let (existing, merged): (Option<Box<Page>>, Vec<(Label, MapValue)>) = match current {
        None => (None, group.to_vec()),
        Some(Child::Leaf { label, value }) => {
            let mut merged = group.to_vec();
            if let Err(at) = merged.binary_search_by(|(l, _)| l.cmp(&label)) {
                merged.insert(at, (label, value));
            }
            (None, merged)
        }
        Some(Child::Subpage(_)) if deepest => {
            return Err(MapError::CorruptPage {
                path: *path,
                why: "a sub-page below the deepest level",
            })
        }
        Some(Child::Subpage(stored)) => {
            let child_path = child_path();
            let page = read_child(reader, child_path, stored)?;
            return match update_page(reader, child_path, Some(page), group, out)? {
                Node::Multi(h) => Ok(Child::Subpage(h)),
                _ => Err(MapError::CorruptPage {
                    path: child_path,
                    why: "a subpage holds fewer than two leaves",
                }),
            };
        }
    };
    if let [(label, value)] = merged.as_slice() {
        return Ok(Child::Leaf {
            label: *label,
            value: *value,
        });
    }
    if deepest {
        // Distinct labels (the updates are a map, merged without duplicates) cannot share all
        // 64 nibbles; kept as an error rather than a panic on the writer thread.
        return Err(MapError::CorruptPage {
            path: *path,
            why: "two labels in one slot of the deepest page",
        });
    }
    match update_page(reader, child_path(), existing, &merged, out)? {
        Node::Multi(h) => Ok(Child::Subpage(h)),
        // Two distinct labels always part somewhere within 256 bits, so a fresh page over two
        // or more of them holds two or more leaves.
        _ => unreachable!("a page over two or more labels has two or more leaves"),
    }
}

/// The whole map in memory: for the auditor's replay and for tests. Memory grows with the number
/// of labels (about 1 KB each in pages, measured by the auditor; see docs/operations.md), which
/// the auditor accepts for now in exchange for needing no database.
#[derive(Debug, Clone, Default)]
pub struct MemoryMap {
    pages: HashMap<PagePath, Page>,
    root: Hash,
}

impl MemoryMap {
    pub fn new() -> MemoryMap {
        MemoryMap::default()
    }

    /// Applies one epoch's updates and returns the new root.
    pub fn apply(&mut self, updates: &BTreeMap<Label, MapValue>) -> Hash {
        let update = match apply_updates(&*self, updates) {
            Ok(update) => update,
            Err(MapError::Read(never)) => match never {},
            Err(e) => unreachable!("the in-memory map is always complete: {e}"),
        };
        self.pages.extend(update.pages);
        self.root = update.root;
        self.root
    }

    pub fn root(&self) -> Hash {
        self.root
    }

    /// Number of stored pages.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }
}

impl PageReader for MemoryMap {
    type Error = std::convert::Infallible;
    fn read_page(&self, path: &PagePath) -> Result<Option<Page>, Self::Error> {
        Ok(self.pages.get(path).cloned())
    }
}
