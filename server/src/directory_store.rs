//! The directory's part of storage: map pages versioned by epoch, each label's current state, the
//! log index of every KeyUpdate and Message. Written only through an epoch's `WriteBatch`
//! (`Storage::commit_epoch`), so the directory is always exactly as durable as the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kt_core::directory::{Label, LabelState, UserKey};
use kt_core::map::{Page, PagePath, PageReader};
use rocksdb::WriteBatch;

use crate::storage::{
    Db, Storage, StorageError, CF_LABELS, CF_MAP_PAGES, CF_MESSAGES, CF_VERSIONS,
};

/// The directory's changes of one epoch.
#[derive(Debug, Default)]
pub struct DirectoryWrite {
    /// Rewritten map pages, stored under the epoch.
    pub pages: Vec<(PagePath, Page)>,
    /// The new state of every label an update touched.
    pub labels: Vec<(Label, LabelState)>,
    /// `(label, version, log index)` of every KeyUpdate.
    pub versions: Vec<(Label, u64, u64)>,
    /// `(author, sequence, log index)` of every Message.
    pub messages: Vec<(Label, u64, u64)>,
}

impl DirectoryWrite {
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
            && self.labels.is_empty()
            && self.versions.is_empty()
            && self.messages.is_empty()
    }
}

/// Map pages near the root, by `(path, epoch)`, for epochs already committed.
///
/// Every lookup reads the pages on its label's way down, and the top levels are the same pages
/// for every label: at 10^7 labels about four of a lookup's six or seven page reads. The page
/// at `(path, epoch)` is the newest version written at or before `epoch`, which cannot change
/// once `epoch` is committed (later epochs write later versions), so it can be kept. Reads at
/// an epoch not yet committed (none in the server; tests write pages directly) bypass this.
#[derive(Debug, Default)]
pub(crate) struct MapPageCache {
    pages: Mutex<HashMap<(PagePath, u64), Arc<Page>>>,
    /// The newest committed epoch plus one; 0 before any.
    committed: AtomicU64,
}

/// Pages at most this deep are kept: 1 + 16 + 256 + 4,096 per epoch.
const CACHED_DEPTH: u8 = 3;
/// At most this many pages (about 1.5 KiB each): two epochs' worth of the top four levels.
const CACHED_PAGES: usize = 8_192;

impl MapPageCache {
    /// Records that `epoch` is durable, with every page written at or before it.
    pub(crate) fn committed(&self, epoch: u64) {
        self.committed.fetch_max(epoch + 1, Ordering::SeqCst);
    }

    fn keeps(&self, path: &PagePath, epoch: u64) -> bool {
        path.depth() <= CACHED_DEPTH && epoch < self.committed.load(Ordering::SeqCst)
    }

    fn get(&self, path: &PagePath, epoch: u64) -> Option<Arc<Page>> {
        let pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        pages.get(&(*path, epoch)).cloned()
    }

    fn put(&self, path: &PagePath, epoch: u64, page: &Page) {
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        if pages.len() >= CACHED_PAGES {
            // Lookups ask for the latest epoch: pages of older ones go first.
            pages.retain(|(_, e), _| *e >= epoch);
            if pages.len() >= CACHED_PAGES {
                pages.clear();
            }
        }
        pages.insert((*path, epoch), Arc::new(page.clone()));
    }
}

/// A stored row: `(column family, key, value)`.
pub type Row = (String, Box<[u8]>, Box<[u8]>);

fn page_key(path: &PagePath, epoch: u64) -> Vec<u8> {
    let mut k = path.key();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn label_u64_key(label: &Label, n: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(label.as_bytes());
    k[32..].copy_from_slice(&n.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8], what: &str) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt(format!("{what} is not 8 bytes")))
}

/// `version (u64 BE) || leaf_hash (32) || index (u64 BE) || recovered (u8) || key algorithm (u8,
/// 0 = revoked) || key bytes`.
fn encode_state(s: &LabelState) -> Vec<u8> {
    let mut out = Vec::with_capacity(90);
    out.extend_from_slice(&s.version.to_be_bytes());
    out.extend_from_slice(&s.leaf_hash);
    out.extend_from_slice(&s.index.to_be_bytes());
    out.push(u8::from(s.recovered));
    match &s.key {
        None => out.push(0),
        Some(key) => {
            out.push(key.algorithm());
            out.extend_from_slice(key.public_bytes());
        }
    }
    out
}

fn decode_state(b: &[u8]) -> Result<LabelState, StorageError> {
    let bad = || StorageError::Corrupt("label state does not decode".into());
    if b.len() < 50 {
        return Err(bad());
    }
    let key = match b[49] {
        0 if b.len() == 50 => None,
        0 => return Err(bad()),
        alg => Some(UserKey::from_parts(alg, &b[50..]).map_err(|_| bad())?),
    };
    Ok(LabelState {
        version: be_u64(&b[..8], "label version")?,
        leaf_hash: b[8..40].try_into().expect("32 bytes"),
        index: be_u64(&b[40..48], "label index")?,
        recovered: match b[48] {
            0 => false,
            1 => true,
            _ => return Err(bad()),
        },
        key,
    })
}

impl Storage {
    pub(crate) fn add_directory_writes(
        db: &Db,
        batch: &mut WriteBatch,
        epoch: u64,
        w: &DirectoryWrite,
    ) {
        for (path, page) in &w.pages {
            batch.put_cf(db.cf(CF_MAP_PAGES), page_key(path, epoch), page.encode());
        }
        for (label, state) in &w.labels {
            batch.put_cf(db.cf(CF_LABELS), label.as_bytes(), encode_state(state));
        }
        for (label, version, index) in &w.versions {
            batch.put_cf(
                db.cf(CF_VERSIONS),
                label_u64_key(label, *version),
                index.to_be_bytes(),
            );
        }
        for (author, sequence, index) in &w.messages {
            batch.put_cf(
                db.cf(CF_MESSAGES),
                label_u64_key(author, *sequence),
                index.to_be_bytes(),
            );
        }
    }

    /// Every row of every column family: for tests and inspection tools that must see all that
    /// is stored (say, to show that no identifier is).
    pub fn every_row(&self) -> Result<Vec<Row>, StorageError> {
        let db = self.db()?;
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), db.path())?;
        let mut out = Vec::new();
        for name in names {
            let Some(cf) = db.cf_handle(&name) else {
                continue;
            };
            for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, v) = item?;
                out.push((name.clone(), k, v));
            }
        }
        Ok(out)
    }

    /// The map page at `path` as of `epoch`: its newest version written at or before `epoch`.
    pub fn map_page(&self, path: &PagePath, epoch: u64) -> Result<Option<Page>, StorageError> {
        let cache = &self.map_pages;
        if !cache.keeps(path, epoch) {
            return self.read_map_page(path, epoch);
        }
        if let Some(page) = cache.get(path, epoch) {
            return Ok(Some((*page).clone()));
        }
        let page = self.read_map_page(path, epoch)?;
        if let Some(page) = &page {
            cache.put(path, epoch, page);
        }
        Ok(page)
    }

    fn read_map_page(&self, path: &PagePath, epoch: u64) -> Result<Option<Page>, StorageError> {
        let prefix = path.key();
        let db = self.db()?;
        let mut it = db.raw_iterator_cf(db.cf(CF_MAP_PAGES));
        it.seek_for_prev(page_key(path, epoch));
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        let key = it.key().expect("valid iterator has a key");
        if key.len() != prefix.len() + 8 || !key.starts_with(&prefix) {
            return Ok(None);
        }
        let value = it.value().expect("valid iterator has a value");
        Page::decode(value)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("map page {path}: {e}")))
    }

    /// The map as it was at `epoch`, for proofs and for the next epoch's update.
    pub fn map_at(&self, epoch: u64) -> MapAt<'_> {
        MapAt {
            storage: self,
            epoch,
        }
    }

    /// A label's current state, if it was ever registered.
    pub fn label_state(&self, label: &Label) -> Result<Option<LabelState>, StorageError> {
        let db = self.db()?;
        db.get_cf(db.cf(CF_LABELS), label.as_bytes())?
            .map(|b| decode_state(&b))
            .transpose()
    }

    /// Log index of `label`'s KeyUpdate of `version`.
    pub fn version_index(&self, label: &Label, version: u64) -> Result<Option<u64>, StorageError> {
        let db = self.db()?;
        db.get_cf(db.cf(CF_VERSIONS), label_u64_key(label, version))?
            .map(|b| be_u64(&b, "version index"))
            .transpose()
    }

    /// The highest message sequence of `author` so far (0 if none).
    pub fn last_message_sequence(&self, author: &Label) -> Result<u64, StorageError> {
        let db = self.db()?;
        let mut it = db.raw_iterator_cf(db.cf(CF_MESSAGES));
        it.seek_for_prev(label_u64_key(author, u64::MAX));
        if !it.valid() {
            it.status()?;
            return Ok(0);
        }
        let key = it.key().expect("valid iterator has a key");
        if !key.starts_with(author.as_bytes()) {
            return Ok(0);
        }
        be_u64(&key[32..], "message sequence")
    }

    /// Log indexes of `author`'s messages with sequence `from..` (at most `limit`), in order.
    pub fn message_indexes(
        &self,
        author: &Label,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u64)>, StorageError> {
        let mut out = Vec::new();
        let db = self.db()?;
        let mut it = db.raw_iterator_cf(db.cf(CF_MESSAGES));
        it.seek(label_u64_key(author, from));
        while it.valid() && out.len() < limit {
            let key = it.key().expect("valid iterator has a key");
            if !key.starts_with(author.as_bytes()) {
                break;
            }
            let sequence = be_u64(&key[32..], "message sequence")?;
            let index = be_u64(
                it.value().expect("valid iterator has a value"),
                "message index",
            )?;
            out.push((sequence, index));
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

/// The map as of one epoch, read from storage.
#[derive(Debug, Clone, Copy)]
pub struct MapAt<'a> {
    storage: &'a Storage,
    epoch: u64,
}

impl PageReader for MapAt<'_> {
    type Error = StorageError;
    fn read_page(&self, path: &PagePath) -> Result<Option<Page>, StorageError> {
        self.storage.map_page(path, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::directory::UserSigner;

    #[test]
    fn label_state_round_trips_with_and_without_a_key() {
        let key = UserSigner::ed25519_from_seed([3; 32]).public();
        for (key, recovered) in [(Some(key), true), (None, false)] {
            let s = LabelState {
                version: 4,
                leaf_hash: [9; 32],
                index: 77,
                key,
                recovered,
            };
            assert_eq!(decode_state(&encode_state(&s)).unwrap(), s);
        }
        assert!(decode_state(&[0; 49]).is_err());
    }

    /// Writes `page` at `path` under `epoch`, as an epoch's batch does.
    /// A page and a newer version of it (one more child).
    fn page_and_newer() -> (Page, Page) {
        let mut page = Page::default();
        page.children[1] = Some(kt_core::map::Child::Subpage([1; 32]));
        let mut newer = page.clone();
        newer.children[2] = Some(kt_core::map::Child::Subpage([2; 32]));
        (page, newer)
    }

    #[test]
    fn pages_are_read_as_of_an_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let root = PagePath::root();
        let (page, newer) = page_and_newer();
        write_page(&storage, 3, root, &page);
        write_page(&storage, 7, root, &newer);
        assert_eq!(storage.map_page(&root, 2).unwrap(), None);
        assert_eq!(storage.map_page(&root, 3).unwrap(), Some(page.clone()));
        assert_eq!(storage.map_page(&root, 6).unwrap(), Some(page));
        assert_eq!(storage.map_page(&root, 7).unwrap(), Some(newer.clone()));
        assert_eq!(storage.map_page(&root, u64::MAX).unwrap(), Some(newer));
        // A deeper page's keys sort after the root's and are never mistaken for it.
        let child = PagePath::of_label(&Label::from_bytes([0x10; 32]), 1);
        assert_eq!(storage.map_page(&child, 7).unwrap(), None);
    }

    fn write_page(storage: &Storage, epoch: u64, path: PagePath, page: &Page) {
        let mut batch = WriteBatch::default();
        let w = DirectoryWrite {
            pages: vec![(path, page.clone())],
            ..DirectoryWrite::default()
        };
        let db = storage.db().unwrap();
        Storage::add_directory_writes(&db, &mut batch, epoch, &w);
        db.write(batch).unwrap();
    }

    /// Pages are kept only for committed epochs, where they can no longer change: a read at an
    /// epoch not yet committed is never answered from memory, and kept pages are exactly the
    /// stored ones.
    #[test]
    fn map_pages_are_kept_only_for_committed_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let root = PagePath::root();
        let (page, newer) = page_and_newer();
        write_page(&storage, 3, root, &page);
        storage.map_pages.committed(3);
        assert_eq!(storage.map_page(&root, 3).unwrap(), Some(page.clone()));
        assert!(
            storage.map_pages.get(&root, 3).is_some(),
            "kept: epoch 3 is committed"
        );
        // Epoch 5 is being written: its read must not be kept, or the write would be missed.
        assert_eq!(storage.map_page(&root, 5).unwrap(), Some(page.clone()));
        assert!(storage.map_pages.get(&root, 5).is_none());
        write_page(&storage, 5, root, &newer);
        assert_eq!(storage.map_page(&root, 5).unwrap(), Some(newer.clone()));
        storage.map_pages.committed(5);
        for _ in 0..2 {
            assert_eq!(storage.map_page(&root, 3).unwrap(), Some(page.clone()));
            assert_eq!(storage.map_page(&root, 4).unwrap(), Some(page.clone()));
            assert_eq!(storage.map_page(&root, 5).unwrap(), Some(newer.clone()));
        }
        // Deep pages are read from storage every time.
        let deep = PagePath::of_label(&Label::from_bytes([0x12; 32]), CACHED_DEPTH + 1);
        write_page(&storage, 5, deep, &page);
        assert_eq!(storage.map_page(&deep, 5).unwrap(), Some(page.clone()));
        assert!(storage.map_pages.get(&deep, 5).is_none());
        // A reopened storage knows its committed epoch from the stored checkpoints only.
        drop(storage);
        let storage = Storage::open(dir.path()).unwrap();
        assert_eq!(storage.map_page(&root, 5).unwrap(), Some(newer));
        assert!(
            storage.map_pages.get(&root, 5).is_none(),
            "no checkpoint stored here"
        );
    }

    /// When full, pages of epochs older than the one being kept go first.
    #[test]
    fn a_full_map_page_cache_drops_older_epochs_first() {
        let cache = MapPageCache::default();
        let page = Page::default();
        let paths: Vec<PagePath> = (0..=255u8)
            .flat_map(|a| (0..16u8).map(move |b| (a, b)))
            .map(|(a, b)| {
                let mut bytes = [0u8; 32];
                bytes[0] = a;
                bytes[1] = b << 4;
                PagePath::of_label(&Label::from_bytes(bytes), 3)
            })
            .collect();
        for path in &paths {
            cache.put(path, 1, &page);
            cache.put(path, 2, &page);
        }
        assert_eq!(cache.pages.lock().unwrap().len(), CACHED_PAGES);
        cache.put(&paths[0], 3, &page);
        let pages = cache.pages.lock().unwrap();
        assert_eq!(pages.len(), 1, "epochs 1 and 2 dropped for epoch 3");
        assert!(pages.contains_key(&(paths[0], 3)));
    }
}
