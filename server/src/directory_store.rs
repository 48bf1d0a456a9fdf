//! The directory's part of storage: map pages versioned by epoch, each label's current state, the
//! log index of every KeyUpdate and Message. Written only through an epoch's `WriteBatch`
//! (`Storage::commit_epoch`), so the directory is always exactly as durable as the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kt_core::directory::{Label, LabelState, UserKey};
use kt_core::hash::Hash;
use kt_core::map::{Page, PagePath, PageReader};
use rocksdb::WriteBatch;

use crate::storage::{
    Db, Storage, StorageError, CF_LABELS, CF_MAP_LATEST, CF_MAP_PAGES, CF_MESSAGES, CF_VERSIONS,
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
    /// `(author, sequence, log index, leaf hash)` of every Message.
    pub messages: Vec<(Label, u64, u64, Hash)>,
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

/// `epoch (u64 BE) || page`: a page's newest version in `map_latest`.
fn latest_value(epoch: u64, page: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + page.len());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(page);
    v
}

/// Marks in `meta` that `map_latest` holds the newest version of every stored page. A database
/// written before `map_latest` existed lacks it, and gets its rows from `map_pages` on open.
const MAP_LATEST_COMPLETE: &str = "map_latest_complete";

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

/// A `messages` row: `log index (u64 BE) || leaf hash (32)`.
fn message_row(index: u64, leaf_hash: &Hash) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&index.to_be_bytes());
    v[8..].copy_from_slice(leaf_hash);
    v
}

fn decode_message_row(b: &[u8]) -> Result<(u64, Hash), StorageError> {
    if b.len() != 40 {
        return Err(StorageError::Corrupt(format!(
            "a message row has {} bytes, not 40",
            b.len()
        )));
    }
    Ok((
        be_u64(&b[..8], "message index")?,
        b[8..].try_into().expect("32 bytes"),
    ))
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
            let encoded = page.encode();
            batch.put_cf(
                db.cf(CF_MAP_LATEST),
                path.key(),
                latest_value(epoch, &encoded),
            );
            batch.put_cf(db.cf(CF_MAP_PAGES), page_key(path, epoch), encoded);
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
        for (author, sequence, index, leaf_hash) in &w.messages {
            batch.put_cf(
                db.cf(CF_MESSAGES),
                label_u64_key(author, *sequence),
                message_row(*index, leaf_hash),
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
        let db = self.db()?;
        let Some(latest) = db.get_pinned_cf(db.cf(CF_MAP_LATEST), path.key())? else {
            // `map_latest` has a row for every page ever written, and pages are never deleted.
            return Ok(None);
        };
        if latest.len() < 8 {
            return Err(StorageError::Corrupt(format!(
                "the latest map page {path} has {} bytes",
                latest.len()
            )));
        }
        let (written, page) = latest.split_at(8);
        if be_u64(written, "map page epoch")? <= epoch {
            return decode_page(path, page).map(Some);
        }
        // A newer version exists: read the one of `epoch` from the history.
        let prefix = path.key();
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
        decode_page(path, it.value().expect("valid iterator has a value")).map(Some)
    }

    /// Fills `map_latest` from `map_pages` unless it is marked complete: once, for a database
    /// written before `map_latest` existed (and trivially for a new one). Running it again after
    /// an interruption writes the same rows.
    pub(crate) fn complete_map_latest(&self) -> Result<(), StorageError> {
        if self.meta(MAP_LATEST_COMPLETE)?.is_some() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let mut pages = 0u64;
        for_each_newest_page(&db, |path_key, epoch, page| {
            batch.put_cf(db.cf(CF_MAP_LATEST), path_key, latest_value(epoch, page));
            pages += 1;
            if batch.size_in_bytes() > 8 << 20 {
                db.write(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
        db.write(batch)?;
        drop(db);
        self.set_meta(MAP_LATEST_COMPLETE, "1")?;
        if pages > 0 {
            tracing::info!(
                pages,
                seconds = started.elapsed().as_secs_f64(),
                "filled map_latest from the stored map pages"
            );
        }
        Ok(())
    }

    /// Checks that `map_latest` holds exactly the newest stored version of every page, so that
    /// checking the map as read at the latest epoch also checks the history's newest versions
    /// (the full start-up check). Reads both column families once, in key order.
    pub fn check_map_latest(&self) -> Result<u64, StorageError> {
        let db = self.db()?;
        let mut latest = db.raw_iterator_cf(db.cf(CF_MAP_LATEST));
        latest.seek_to_first();
        let mut pages = 0u64;
        let differs = |key: &[u8], why: &str| {
            StorageError::Corrupt(format!(
                "map page with key {} is corrupt: {why}",
                hex::encode(key)
            ))
        };
        for_each_newest_page(&db, |path_key, epoch, page| {
            if !latest.valid() {
                latest.status()?;
                return Err(differs(path_key, "it has no latest copy"));
            }
            let key = latest.key().expect("valid iterator has a key");
            // Both are in path order: the smaller key is the page that only one of them has.
            if key < path_key {
                return Err(differs(key, "it has a latest copy but no history"));
            }
            if key > path_key {
                return Err(differs(path_key, "it has no latest copy"));
            }
            if latest.value() != Some(&latest_value(epoch, page)[..]) {
                return Err(differs(
                    path_key,
                    "its latest copy differs from its newest version in the history",
                ));
            }
            pages += 1;
            latest.next();
            Ok(())
        })?;
        if latest.valid() {
            let key = latest.key().expect("valid iterator has a key");
            return Err(differs(key, "it has a latest copy but no history"));
        }
        latest.status()?;
        Ok(pages)
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

    /// The sequence and leaf hash of `author`'s latest message so far (0 and zeros if none):
    /// the message fields of its map value.
    pub fn last_message(&self, author: &Label) -> Result<(u64, Hash), StorageError> {
        let db = self.db()?;
        let mut it = db.raw_iterator_cf(db.cf(CF_MESSAGES));
        it.seek_for_prev(label_u64_key(author, u64::MAX));
        if !it.valid() {
            it.status()?;
            return Ok((0, kt_core::map::NO_MESSAGE_HASH));
        }
        let key = it.key().expect("valid iterator has a key");
        if !key.starts_with(author.as_bytes()) {
            return Ok((0, kt_core::map::NO_MESSAGE_HASH));
        }
        let sequence = be_u64(&key[32..], "message sequence")?;
        let (_, hash) = decode_message_row(it.value().expect("valid iterator has a value"))?;
        Ok((sequence, hash))
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
            let (index, _) = decode_message_row(it.value().expect("valid iterator has a value"))?;
            out.push((sequence, index));
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

fn decode_page(path: &PagePath, bytes: &[u8]) -> Result<Page, StorageError> {
    Page::decode(bytes).map_err(|e| StorageError::Corrupt(format!("map page {path}: {e}")))
}

/// Calls `f(path key, epoch, page)` with the newest version of every page in `map_pages`, in
/// the order of the path keys. A path key's length follows from its first byte (the depth), so
/// the versions of one page are adjacent and ordered by epoch.
fn for_each_newest_page(
    db: &Db,
    mut f: impl FnMut(&[u8], u64, &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut it = db.raw_iterator_cf(db.cf(CF_MAP_PAGES));
    it.seek_to_first();
    let mut newest: Option<(Vec<u8>, u64, Vec<u8>)> = None;
    while it.valid() {
        let key = it.key().expect("valid iterator has a key");
        if key.len() < 9 {
            return Err(StorageError::Corrupt(format!(
                "map page key {} is too short",
                hex::encode(key)
            )));
        }
        let (path_key, epoch) = key.split_at(key.len() - 8);
        let epoch = be_u64(epoch, "map page epoch")?;
        if let Some((previous, ..)) = &newest {
            if previous[..] != *path_key {
                let (k, e, p) = newest.take().expect("checked");
                f(&k, e, &p)?;
            }
        }
        newest = Some((
            path_key.to_vec(),
            epoch,
            it.value().expect("valid iterator has a value").to_vec(),
        ));
        it.next();
    }
    it.status()?;
    if let Some((k, e, p)) = newest {
        f(&k, e, &p)?;
    }
    Ok(())
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

    /// A database written before `map_latest` existed gets its latest copies on open, from the
    /// newest version of each page in the history; reads at every epoch stay the same.
    #[test]
    fn a_database_without_latest_copies_gets_them_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = PagePath::root();
        let child = PagePath::of_label(&Label::from_bytes([0x10; 32]), 1);
        let (page, newer) = page_and_newer();
        {
            let storage = Storage::open(dir.path()).unwrap();
            for (path, epoch, page) in [(root, 3, &page), (root, 7, &newer), (child, 5, &page)] {
                let mut key = path.key();
                key.extend_from_slice(&u64::to_be_bytes(epoch));
                storage.raw_put(CF_MAP_PAGES, &key, &page.encode()).unwrap();
            }
            storage
                .raw_delete("meta", MAP_LATEST_COMPLETE.as_bytes())
                .unwrap();
            assert_eq!(
                storage.map_page(&root, 7).unwrap(),
                None,
                "no latest copy yet"
            );
        }
        let storage = Storage::open(dir.path()).unwrap();
        assert_eq!(storage.check_map_latest().unwrap(), 2);
        assert_eq!(storage.map_page(&root, 7).unwrap(), Some(newer));
        assert_eq!(storage.map_page(&root, 6).unwrap(), Some(page.clone()));
        assert_eq!(storage.map_page(&child, 9).unwrap(), Some(page.clone()));
        assert_eq!(storage.map_page(&child, 4).unwrap(), None);
    }

    /// The full start-up check's comparison of the latest copies with the history catches a
    /// copy that differs, a copy that is missing, and a copy with no history.
    #[test]
    fn latest_copies_that_differ_from_the_history_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let root = PagePath::root();
        let child = PagePath::of_label(&Label::from_bytes([0x10; 32]), 1);
        let (page, newer) = page_and_newer();
        write_page(&storage, 3, root, &page);
        write_page(&storage, 7, root, &newer);
        write_page(&storage, 5, child, &page);
        assert_eq!(storage.check_map_latest().unwrap(), 2);

        let latest = |epoch: u64, page: &Page| latest_value(epoch, &page.encode());
        let tampered = [
            // The root's latest copy is its older version.
            (CF_MAP_LATEST, root.key(), Some(latest(3, &page)), "differs"),
            // The right bytes under the wrong epoch.
            (
                CF_MAP_LATEST,
                root.key(),
                Some(latest(6, &newer)),
                "differs",
            ),
            // The child's latest copy is gone.
            (CF_MAP_LATEST, child.key(), None, "no latest copy"),
            // The history's newest version of the root differs from its latest copy.
            (
                CF_MAP_PAGES,
                page_key(&root, 7),
                Some(page.encode()),
                "differs",
            ),
        ];
        for (cf, key, value, why) in tampered {
            let db = storage.db().unwrap();
            let original = db.get_cf(db.cf(cf), &key).unwrap().unwrap();
            drop(db);
            match &value {
                Some(v) => storage.raw_put(cf, &key, v).unwrap(),
                None => storage.raw_delete(cf, &key).unwrap(),
            }
            let err = storage.check_map_latest().unwrap_err().to_string();
            assert!(
                err.contains("corrupt") && err.contains(why),
                "{cf} {value:?}: {err}"
            );
            storage.raw_put(cf, &key, &original).unwrap();
            assert_eq!(storage.check_map_latest().unwrap(), 2);
        }
        // A latest copy of a page that has no history, sorting before or after the real ones.
        for stray in [0x00, 0x20] {
            let stray = PagePath::of_label(&Label::from_bytes([stray; 32]), 1);
            storage
                .raw_put(CF_MAP_LATEST, &stray.key(), &latest(5, &page))
                .unwrap();
            let err = storage.check_map_latest().unwrap_err().to_string();
            assert!(err.contains("no history"), "{err}");
            storage.raw_delete(CF_MAP_LATEST, &stray.key()).unwrap();
        }
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
