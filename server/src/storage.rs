//! RocksDB storage of the log. Key layout (also in `docs/architecture.md`):
//!
//! | column family | key                                   | value                                      |
//! |---------------|---------------------------------------|--------------------------------------------|
//! | `entries`     | index, u64 big-endian                 | canonical entry bytes                      |
//! | `tiles`       | tile level u8, tile index u64 BE      | the tile's hashes, 32 bytes each (1..=256) |
//! | `tile_nodes`  | tile level u8, tile index u64 BE      | a full tile's inner nodes (255 hashes)     |
//! | `checkpoints` | epoch, u64 big-endian                 | the signed checkpoint note                 |
//! | `meta`        | ASCII name (`origin`, `storage_format`) | UTF-8 value                              |
//! | `map_pages`   | page path key, epoch u64 BE            | the map page as of that epoch              |
//! | `map_latest`  | page path key                         | epoch u64 BE, the page's newest version    |
//! | `labels`      | label (32)                            | the label's current state                  |
//! | `versions`    | label (32), version u64 BE            | log index of that KeyUpdate, u64 BE        |
//! | `messages`    | author label (32), sequence u64 BE    | log index u64 BE, leaf hash (32)           |
//! | `vrf_proofs`  | keyed hash of an identifier (32)      | its VRF proof (80), its label (32)         |
//! | `cosignatures`| epoch u64 BE, witness key id u32 BE   | the witness's cosignature line (UTF-8)     |
//!
//! The directory's column families are in `crate::directory_store`. Map pages are versioned by
//! epoch (a page is rewritten under the epoch that changed it), so a lookup at any past epoch
//! reads the newest version of each page at or below that epoch. `map_latest` holds each page's
//! newest version again, under a key without the epoch, so that reading a page at the latest
//! epoch (every lookup) is a point read that Bloom filters serve, not a seek through every level.
//!
//! Big-endian keys make RocksDB's byte order the numeric order, so ranges are iterator scans and
//! the latest checkpoint is the last key. Hashes are stored as C2SP tiles (256 hashes of one tree
//! level per value), so an inclusion proof is a handful of point reads and the HTTP tiles are
//! served straight from this column family. A partial tile is rewritten as it grows; since the
//! tree only appends, every prefix of a stored tile stays valid.
//!
//! One epoch is one synced [`rocksdb::WriteBatch`] holding its entries, tiles and signed checkpoint:
//! either all of an epoch is durable or none of it is.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use kt_core::hash::{Hash, HASH_SIZE};
use kt_core::merkle::{HashReader, NodeId};
use kt_core::tiles::{tile_for_node, TILE_WIDTH};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use thiserror::Error;

const CF_ENTRIES: &str = "entries";
const CF_TILES: &str = "tiles";
const CF_TILE_NODES: &str = "tile_nodes";
const CF_CHECKPOINTS: &str = "checkpoints";
const CF_META: &str = "meta";
pub(crate) const CF_MAP_PAGES: &str = "map_pages";
pub(crate) const CF_MAP_LATEST: &str = "map_latest";
pub(crate) const CF_LABELS: &str = "labels";
pub(crate) const CF_VERSIONS: &str = "versions";
pub(crate) const CF_MESSAGES: &str = "messages";
pub(crate) const CF_VRF_PROOFS: &str = "vrf_proofs";
const CF_COSIGNATURES: &str = "cosignatures";
const COLUMN_FAMILIES: [&str; 12] = [
    CF_ENTRIES,
    CF_TILES,
    CF_TILE_NODES,
    CF_CHECKPOINTS,
    CF_META,
    CF_MAP_PAGES,
    CF_MAP_LATEST,
    CF_LABELS,
    CF_VERSIONS,
    CF_MESSAGES,
    CF_VRF_PROOFS,
    CF_COSIGNATURES,
];

/// A storage failure. Reads and writes that fail leave the database as it was.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    #[error("storage is being reopened after a write error")]
    Closed,
    #[error("storage could not be reopened: readers held it for 30 s")]
    Busy,
    #[error("{0}")]
    Io(String),
    /// A fault armed by a test ([`Storage::inject_fault`]).
    #[error("injected fault: {0}")]
    Injected(&'static str),
    /// The database was written by a ktd with another storage format: its rows would be misread.
    #[error("the database in {path} has storage format {found}, but this ktd reads and writes only format {STORAGE_FORMAT} ({STORAGE_FORMAT_CHANGE}); keep that data directory for the ktd that wrote it, or start this one with a new data directory and a new log origin")]
    Format { path: String, found: String },
}

/// The storage format this ktd writes, recorded in `meta` as `storage_format`. Version 2: map
/// values of 88 bytes (with the label's message count and last message hash) and `messages` rows
/// of 40 bytes (with the leaf hash). A database without the record is format 1 (48-byte map
/// values), unless it is empty.
pub const STORAGE_FORMAT: u32 = 2;
const STORAGE_FORMAT_KEY: &str = "storage_format";
const STORAGE_FORMAT_CHANGE: &str = "map values of 88 bytes, docs/protocol.md section 10";

/// Everything one epoch writes, committed atomically by [`Storage::commit_epoch`].
#[derive(Debug, Default)]
pub struct EpochWrite {
    pub first_index: u64,
    pub entries: Vec<Vec<u8>>,
    /// `(tile level, tile index)` and the tile's full current contents.
    pub tiles: Vec<((u8, u64), Vec<u8>)>,
    pub epoch: u64,
    pub checkpoint_note: Vec<u8>,
    /// The directory's changes in this epoch (empty for an epoch of records only).
    pub directory: crate::directory_store::DirectoryWrite,
}

/// The log's RocksDB database. Safe to share between the sequencer (the only writer) and readers.
///
/// The database handle can be replaced while the server runs ([`Storage::reopen`]): after a
/// failed write RocksDB refuses every later write until it is opened again, and the sequencer
/// reopens it to resume once the cause (a full disk) is gone. Readers take a reference to the
/// current handle per call, so a reopen waits for calls in flight and never pulls a handle from
/// under them.
#[derive(Debug)]
pub struct Storage {
    path: PathBuf,
    memory: MemoryBudget,
    tile_trees: TileTrees,
    pub(crate) map_pages: crate::directory_store::MapPageCache,
    db: RwLock<Option<Arc<DB>>>,
    /// Faults armed by tests ([`Storage::inject_fault`]); empty in a server.
    faults: Mutex<Vec<Fault>>,
}

/// A handle on the open database, held for the length of one storage call.
#[derive(Debug)]
pub(crate) struct Db(Arc<DB>);

impl std::ops::Deref for Db {
    type Target = DB;
    fn deref(&self) -> &DB {
        &self.0
    }
}

impl Db {
    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.0
            .cf_handle(name)
            .expect("column families are created on open")
    }
}

/// **Test-only.** A storage fault armed by [`Storage::inject_fault`]; each fires once, on the
/// next call that reaches its step, in the order armed.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The epoch's batch fails and nothing of it is written.
    CommitFailsNotWritten,
    /// The epoch's batch is written durably, and then the write reports failure.
    CommitFailsButWritten,
    /// The epoch's batch fails like a full disk: nothing is written (ENOSPC).
    CommitNoSpace,
    /// Reading the tree's stored border to verify the new root (before signing) fails.
    ReadBeforeSigningFails,
    /// The process stops being able to answer right after the commit point, before the new
    /// checkpoint is published or any request answered (what a crash there leaves behind).
    FailsAfterCommit,
}

fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn tile_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// RocksDB's memory, bounded by configuration whatever the log's size: one LRU block cache
/// shared by every column family, which also holds their index and filter blocks, and one budget
/// for the memtables of all column families (RocksDB's write buffer manager flushes the largest
/// when the sum reaches it). Without them, each of the ten column families would have its own
/// cache and up to two 64 MiB memtables, and index and filter blocks would grow with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 128 << 20,
        }
    }
}

impl Storage {
    /// Opens (creating if needed) the database under `path`, with the default memory budget.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Storage::open_with(path, MemoryBudget::default())
    }

    /// Opens (creating if needed) the database under `path`.
    pub fn open_with(path: &Path, memory: MemoryBudget) -> Result<Self, StorageError> {
        let db = open_db(path, memory)?;
        let storage = Storage {
            path: path.to_path_buf(),
            memory,
            tile_trees: TileTrees::default(),
            map_pages: Default::default(),
            db: RwLock::new(Some(Arc::new(db))),
            faults: Mutex::new(Vec::new()),
        };
        storage.check_format()?;
        storage.complete_map_latest()?;
        if let Some((epoch, _)) = storage.latest_checkpoint()? {
            storage.map_pages.committed(epoch);
        }
        Ok(storage)
    }

    /// The open database. Fails only while [`Storage::reopen`] runs, or after it failed.
    pub(crate) fn db(&self) -> Result<Db, StorageError> {
        self.db
            .read()
            .expect("not poisoned")
            .clone()
            .map(Db)
            .ok_or(StorageError::Closed)
    }

    /// Closes the database and opens it again from disk, which clears a write error that
    /// RocksDB keeps reporting until then (a write that failed on a full disk), and recovers
    /// from the write-ahead log what was durably written. Calls in flight finish first; calls
    /// made meanwhile fail with [`StorageError::Closed`]. If opening fails, every call fails
    /// until a later `reopen` succeeds.
    pub fn reopen(&self) -> Result<(), StorageError> {
        let old = self.db.write().expect("not poisoned").take();
        if let Some(old) = old {
            // RocksDB allows one open handle per directory: wait for the readers of the old one.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while Arc::strong_count(&old) > 1 {
                if std::time::Instant::now() > deadline {
                    *self.db.write().expect("not poisoned") = Some(old);
                    return Err(StorageError::Busy);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(old);
        }
        let db = open_db(&self.path, self.memory)?;
        *self.db.write().expect("not poisoned") = Some(Arc::new(db));
        Ok(())
    }

    /// Bytes free for an unprivileged writer on the filesystem holding the database.
    pub fn free_space(&self) -> Result<u64, StorageError> {
        let stat = rustix::fs::statvfs(&self.path)
            .map_err(|e| StorageError::Io(format!("statvfs {}: {e}", self.path.display())))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// **Test-only.** Arms `fault` to fire once at its step (see [`Fault`]).
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        self.faults.lock().expect("not poisoned").push(fault);
    }

    /// Takes the next armed fault if it is one of `wanted`.
    pub(crate) fn fault_fires(&self, wanted: &[Fault]) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("not poisoned");
        match faults.first() {
            Some(f) if wanted.contains(f) => Some(faults.remove(0)),
            _ => None,
        }
    }
}

fn open_db(path: &Path, memory: MemoryBudget) -> Result<DB, StorageError> {
    let cache = Cache::new_lru_cache(memory.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Whole-key Bloom filters: most reads are point reads (entries, labels, VRF proofs), and a
    // read of a key that is not there (a lookup of an unregistered identity) skips the files.
    table.set_bloom_filter(10.0, false);
    let column_family = || {
        let mut cf = Options::default();
        cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
        cf.set_block_based_table_factory(&table);
        cf.set_write_buffer_size(memory.write_buffer_bytes / 4);
        cf
    };
    let mut opts = column_family();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_db_write_buffer_size(memory.write_buffer_bytes);
    // Keep file handles bounded on small machines.
    opts.set_max_open_files(512);
    let cfs = COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, column_family()));
    Ok(DB::open_cf_descriptors(&opts, path, cfs)?)
}

impl Storage {
    /// Refuses a database of another storage format; records the format in a new one. A database
    /// without the record holds format 1 rows if it holds anything at all.
    fn check_format(&self) -> Result<(), StorageError> {
        let found = match self.meta(STORAGE_FORMAT_KEY)? {
            Some(found) => found,
            None if self.latest_checkpoint()?.is_none() && !self.has_entry_at_or_after(0)? => {
                return self.set_meta(STORAGE_FORMAT_KEY, &STORAGE_FORMAT.to_string());
            }
            None => "1".to_owned(),
        };
        if found != STORAGE_FORMAT.to_string() {
            return Err(StorageError::Format {
                path: self.path.display().to_string(),
                found,
            });
        }
        Ok(())
    }

    /// A metadata value, if set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        let db = self.db()?;
        match db.get_cf(db.cf(CF_META), key.as_bytes())? {
            None => Ok(None),
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| StorageError::Corrupt(format!("meta {key} is not UTF-8"))),
        }
    }

    /// Sets a metadata value (synced).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let db = self.db()?;
        db.put_cf_opt(db.cf(CF_META), key.as_bytes(), value.as_bytes(), &wo)?;
        Ok(())
    }

    /// The signed note of the checkpoint of `epoch`, with the witness cosignatures collected so
    /// far appended as extra signature lines (the log's signature stays first). Every answer that
    /// carries a stored checkpoint reads it here.
    pub fn checkpoint(&self, epoch: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(note) = self.log_checkpoint(epoch)? else {
            return Ok(None);
        };
        Ok(Some(with_cosignatures(note, &self.cosignatures(epoch)?)))
    }

    /// The checkpoint of `epoch` exactly as the log signed it, without cosignatures.
    pub fn log_checkpoint(&self, epoch: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let db = self.db()?;
        Ok(db.get_cf(db.cf(CF_CHECKPOINTS), u64_key(epoch))?)
    }

    /// The signed notes (without cosignatures) of the epochs from `from` on, at most `max` of them
    /// and at most `max_bytes` in all (at least one), stopping after `to`. The caller bounds
    /// `to` by the latest epoch; a gap is corruption.
    pub fn log_checkpoints(
        &self,
        from: u64,
        to: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        let mode = IteratorMode::From(&u64_key(from), Direction::Forward);
        let db = self.db()?;
        for item in db.iterator_cf(db.cf(CF_CHECKPOINTS), mode) {
            let want = from + out.len() as u64;
            if want > to || out.len() == max || (!out.is_empty() && bytes >= max_bytes) {
                break;
            }
            let (k, v) = item?;
            if *k != u64_key(want) {
                return Err(StorageError::Corrupt(format!(
                    "checkpoint of epoch {want} is missing"
                )));
            }
            bytes += v.len();
            out.push(v.to_vec());
        }
        if out.is_empty() {
            return Err(StorageError::Corrupt(format!(
                "checkpoint of epoch {from} is missing"
            )));
        }
        Ok(out)
    }

    /// The cosignature lines stored for `epoch` (without final newlines), by witness key id.
    pub fn cosignatures(&self, epoch: u64) -> Result<Vec<String>, StorageError> {
        let prefix = u64_key(epoch);
        let mode = IteratorMode::From(&prefix, Direction::Forward);
        let mut out = Vec::new();
        let db = self.db()?;
        for item in db.iterator_cf(db.cf(CF_COSIGNATURES), mode) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(String::from_utf8(v.to_vec()).map_err(|_| {
                StorageError::Corrupt(format!("a cosignature of epoch {epoch} is not UTF-8"))
            })?);
        }
        Ok(out)
    }

    /// Stores (synced) a verified cosignature line of the witness `key_id` for `epoch`,
    /// replacing an earlier one of the same witness.
    pub fn put_cosignature(&self, epoch: u64, key_id: u32, line: &str) -> Result<(), StorageError> {
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&u64_key(epoch));
        key[8..].copy_from_slice(&key_id.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let db = self.db()?;
        db.put_cf_opt(db.cf(CF_COSIGNATURES), key, line.as_bytes(), &wo)?;
        Ok(())
    }

    /// The newest stored checkpoint: `(epoch, note)`.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let db = self.db()?;
        let mut it = db.iterator_cf(db.cf(CF_CHECKPOINTS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                let epoch = <[u8; 8]>::try_from(&*k)
                    .map(u64::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt("checkpoint key is not 8 bytes".into()))?;
                Ok(Some((epoch, v.to_vec())))
            }
        }
    }

    /// The entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let db = self.db()?;
        Ok(db.get_cf(db.cf(CF_ENTRIES), u64_key(index))?)
    }

    /// The entries in `[start, end)`; the caller bounds the range. A gap is corruption.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mode = IteratorMode::From(&u64_key(start), Direction::Forward);
        let db = self.db()?;
        for item in db.iterator_cf(db.cf(CF_ENTRIES), mode) {
            let (k, v) = item?;
            let want = start + out.len() as u64;
            if want >= end {
                break;
            }
            if *k != u64_key(want) {
                return Err(StorageError::Corrupt(format!("entry {want} is missing")));
            }
            out.push(v.to_vec());
        }
        if (out.len() as u64) < end - start {
            return Err(StorageError::Corrupt(format!(
                "entry {} is missing",
                start + out.len() as u64
            )));
        }
        Ok(out)
    }

    /// Whether any entry is stored at or after `index` (used to detect entries beyond the last
    /// checkpoint, which an atomic epoch commit never leaves).
    pub fn has_entry_at_or_after(&self, index: u64) -> Result<bool, StorageError> {
        let mode = IteratorMode::From(&u64_key(index), Direction::Forward);
        let db = self.db()?;
        let found = db
            .iterator_cf(db.cf(CF_ENTRIES), mode)
            .next()
            .transpose()?
            .is_some();
        Ok(found)
    }

    /// The stored hashes of a tile (a multiple of 32 bytes, at most 256 hashes).
    pub fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let db = self.db()?;
        let v = db.get_cf(db.cf(CF_TILES), tile_key(level, index))?;
        if let Some(bytes) = &v {
            check_tile_bytes(level, index, bytes)?;
        }
        Ok(v)
    }

    /// Writes one epoch atomically and durably (fsync of the write-ahead log).
    pub fn commit_epoch(&self, write: &EpochWrite) -> Result<(), StorageError> {
        let fault = self.fault_fires(&[
            Fault::CommitFailsNotWritten,
            Fault::CommitFailsButWritten,
            Fault::CommitNoSpace,
        ]);
        match fault {
            Some(Fault::CommitFailsNotWritten) => {
                return Err(StorageError::Injected(
                    "the epoch's batch failed (not written)",
                ))
            }
            Some(Fault::CommitNoSpace) => {
                return Err(StorageError::Injected(
                    "IO error: No space left on device (not written)",
                ))
            }
            _ => {}
        }
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        for (i, entry) in write.entries.iter().enumerate() {
            batch.put_cf(
                db.cf(CF_ENTRIES),
                u64_key(write.first_index + i as u64),
                entry,
            );
        }
        for ((level, index), hashes) in &write.tiles {
            batch.put_cf(db.cf(CF_TILES), tile_key(*level, *index), hashes);
        }
        Self::add_directory_writes(&db, &mut batch, write.epoch, &write.directory);
        batch.put_cf(
            db.cf(CF_CHECKPOINTS),
            u64_key(write.epoch),
            &write.checkpoint_note,
        );
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
        if fault == Some(Fault::CommitFailsButWritten) {
            return Err(StorageError::Injected(
                "the epoch's batch reported failure (but was written)",
            ));
        }
        // Only now, and only on success: an epoch the sequencer saw fail may be written again.
        self.map_pages.committed(write.epoch);
        Ok(())
    }

    /// Test and repair hook: overwrite raw bytes of a column family. Used by tests that tamper
    /// with storage to check that corruption is detected; never called by the server.
    #[doc(hidden)]
    pub fn raw_put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let db = self.db()?;
        db.put_cf(db.cf(cf), key, value)?;
        Ok(())
    }

    /// Test hook: delete a raw key. See [`Storage::raw_put`].
    #[doc(hidden)]
    pub fn raw_delete(&self, cf: &str, key: &[u8]) -> Result<(), StorageError> {
        let db = self.db()?;
        db.delete_cf(db.cf(cf), key)?;
        Ok(())
    }
}

/// A signed note with cosignature lines appended, one per line, each ending in a newline.
pub fn with_cosignatures(mut note: Vec<u8>, lines: &[String]) -> Vec<u8> {
    for line in lines {
        note.extend_from_slice(line.as_bytes());
        note.push(b'\n');
    }
    note
}

fn check_tile_bytes(level: u8, index: u64, bytes: &[u8]) -> Result<(), StorageError> {
    if bytes.is_empty()
        || !bytes.len().is_multiple_of(HASH_SIZE)
        || bytes.len() as u64 > TILE_WIDTH * HASH_SIZE as u64
    {
        return Err(StorageError::Corrupt(format!(
            "tile {level}/{index} has {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

/// Reads Merkle nodes from tiles. A node at tree level `l` is the subtree root of `2^(l % 8)`
/// consecutive hashes of the tile at level `l / 8`. For a full tile, which never changes, these
/// roots are stored once computed (`tile_nodes`): an inclusion proof needs up to eight of them
/// from its bottom tile, and recomputing them costs up to 247 SHA-256 calls, which profiles
/// showed to be the largest cost of lookups at 10^7 users after the map (docs/performance.md).
/// Partial tiles are computed, with recently used trees kept in [`TileTrees`].
impl HashReader for Storage {
    type Error = StorageError;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StorageError> {
        let places: Vec<_> = ids.iter().map(|id| tile_for_node(*id)).collect();
        let mut keys: Vec<(u8, u64)> = places.iter().map(|p| (p.0, p.1)).collect();
        keys.sort_unstable();
        keys.dedup();
        let db = self.db()?;
        let (tiles_cf, nodes_cf) = (db.cf(CF_TILES), db.cf(CF_TILE_NODES));
        // Sorted, as big-endian keys sort like the tuples; read pinned, without copying.
        let tile_keys: Vec<[u8; 9]> = keys.iter().map(|(l, i)| tile_key(*l, *i)).collect();
        let rows = db.batched_multi_get_cf(tiles_cf, &tile_keys, true);
        let stored_nodes = db.batched_multi_get_cf(nodes_cf, &tile_keys, true);
        let mut tiles = Vec::with_capacity(keys.len());
        let mut computed = WriteBatch::default();
        for (((level, index), row), nodes) in keys.iter().zip(rows).zip(stored_nodes) {
            let row = row?
                .ok_or_else(|| StorageError::Corrupt(format!("tile {level}/{index} is missing")))?;
            check_tile_bytes(*level, *index, &row)?;
            tiles.push(match nodes? {
                Some(inner) if row.len() == FULL_TILE_BYTES => {
                    if inner.len() != FULL_TILE_BYTES - HASH_SIZE {
                        return Err(StorageError::Corrupt(format!(
                            "the inner nodes of tile {level}/{index} have {} bytes",
                            inner.len()
                        )));
                    }
                    TileNodes::Stored { row, inner }
                }
                _ => {
                    let tree = self.tile_trees.get(*level, *index, row.to_vec());
                    if let Some(nodes) = tree.inner_nodes() {
                        computed.put_cf(nodes_cf, tile_key(*level, *index), nodes);
                    }
                    TileNodes::Computed(tree)
                }
            });
        }
        if !computed.is_empty() {
            // Derived from the stored tile, so not part of any epoch: a row lost in a crash is
            // computed again, and failing to store one only costs the next read the hashing.
            let mut wo = WriteOptions::default();
            wo.disable_wal(true);
            if let Err(e) = db.write_opt(computed, &wo) {
                tracing::warn!("storing the inner nodes of full tiles: {e}");
            }
        }
        ids.iter()
            .zip(places)
            .map(|(id, (level, index, offset, count))| {
                let at = keys
                    .binary_search(&(level, index))
                    .expect("every tile was read above");
                tiles[at].node(offset, count).ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "tile {level}/{index} is too short for node {}/{}",
                        id.level, id.index
                    ))
                })
            })
            .collect()
    }
}

/// The nodes of one tile for one read: a full tile's stored row and inner nodes as RocksDB
/// holds them, or a tree computed from the row.
enum TileNodes<'a> {
    Stored {
        row: rocksdb::DBPinnableSlice<'a>,
        inner: rocksdb::DBPinnableSlice<'a>,
    },
    Computed(Arc<TileTree>),
}

impl TileNodes<'_> {
    /// The root of the `count` (a power of two) hashes from `offset`, if the tile holds them.
    fn node(&self, offset: u16, count: u16) -> Option<Hash> {
        match self {
            TileNodes::Computed(tree) => tree.node(offset, count),
            TileNodes::Stored { row, inner } => stored_node(row, inner, offset, count),
        }
    }
}

/// [`TileTree::node`] of a full tile from its row and its [`TileTree::inner_nodes`]: level `r`
/// of the tree starts after the `128 + 64 + ... + 2^(8 - r + 1)` hashes of the levels below it.
fn stored_node(row: &[u8], inner: &[u8], offset: u16, count: u16) -> Option<Hash> {
    let level = count.trailing_zeros();
    let index = usize::from(offset) >> level;
    let (hashes, at) = match level {
        0 => (row, index),
        _ => {
            let width = TILE_WIDTH as usize;
            (inner, width - (width >> (level - 1)) + index)
        }
    };
    let bytes = hashes.get(at * HASH_SIZE..(at + 1) * HASH_SIZE)?;
    Some(bytes.try_into().expect("32 bytes"))
}

impl Storage {
    /// Checks every stored inner-node row against its full tile (the full start-up check), and
    /// returns how many there are.
    pub fn check_tile_nodes(&self) -> Result<u64, StorageError> {
        let db = self.db()?;
        let mut it = db.raw_iterator_cf(db.cf(CF_TILE_NODES));
        it.seek_to_first();
        let mut rows = 0u64;
        while it.valid() {
            let key = it.key().expect("valid iterator has a key");
            let (level, index) = match <[u8; 9]>::try_from(key) {
                Ok(k) => (
                    k[0],
                    u64::from_be_bytes(k[1..].try_into().expect("8 bytes")),
                ),
                Err(_) => {
                    return Err(StorageError::Corrupt(format!(
                        "tile node key {} is not 9 bytes",
                        hex::encode(key)
                    )))
                }
            };
            let bytes = self.tile(level, index)?.unwrap_or_default();
            let computed = (bytes.len() == FULL_TILE_BYTES)
                .then(|| TileTree::new(bytes).inner_nodes())
                .flatten();
            if computed.as_deref() != it.value() {
                return Err(StorageError::Corrupt(format!(
                    "the stored inner nodes of tile {level}/{index} are not those of the tile"
                )));
            }
            rows += 1;
            it.next();
        }
        it.status()?;
        Ok(rows)
    }
}

/// Bytes of a tile of [`TILE_WIDTH`] hashes.
const FULL_TILE_BYTES: usize = TILE_WIDTH as usize * HASH_SIZE;

/// Every complete subtree root of one tile's row of hashes: `levels[r][j]` is the root of the
/// `2^r` hashes from `j·2^r`. A proof needs up to eight of them per tile it crosses, and
/// computing them from the row costs up to 247 hashes a tile, which profiles showed to be the
/// largest cost of appends and lookups (docs/performance.md).
#[derive(Debug)]
struct TileTree {
    /// The tile's bytes as read, to tell whether a cached tree is still the stored tile's.
    bytes: Vec<u8>,
    levels: Vec<Vec<Hash>>,
}

impl TileTree {
    fn new(bytes: Vec<u8>) -> TileTree {
        let row: Vec<Hash> = bytes
            .chunks_exact(HASH_SIZE)
            .map(|c| Hash::try_from(c).expect("chunks are 32 bytes"))
            .collect();
        let mut levels = vec![row];
        while levels.last().expect("one level").len() > 1 {
            let below = levels.last().expect("one level");
            let above = below
                .chunks_exact(2)
                .map(|pair| kt_core::hash::node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        TileTree { bytes, levels }
    }

    /// Levels 1 to 8 of a full tile's tree (128 + 64 + ... + 1 = 255 hashes), as stored in
    /// `tile_nodes`; `None` for a partial tile, whose tree changes as it grows.
    fn inner_nodes(&self) -> Option<Vec<u8>> {
        (self.bytes.len() == FULL_TILE_BYTES).then(|| self.levels[1..].concat().concat())
    }

    /// The root of the `count` (a power of two) hashes from `offset`, if the row holds them.
    fn node(&self, offset: u16, count: u16) -> Option<Hash> {
        let level = count.trailing_zeros() as usize;
        self.levels
            .get(level)?
            .get(usize::from(offset) >> level)
            .copied()
    }
}

/// Recently used [`TileTree`]s, by tile and width. Storage stays the source of every answer: a
/// tile is read on every call, and a cached tree is used only if its bytes are the ones just
/// read (so a tile changed on disk is never answered from memory). At most [`TILE_TREES`]
/// trees of at most 16 KiB each are kept; when full, an arbitrary one is dropped.
#[derive(Debug, Default)]
struct TileTrees {
    trees: Mutex<std::collections::HashMap<(u8, u64, usize), Arc<TileTree>>>,
}

const TILE_TREES: usize = 2048;

impl TileTrees {
    fn get(&self, level: u8, index: u64, bytes: Vec<u8>) -> Arc<TileTree> {
        let key = (level, index, bytes.len());
        if let Some(tree) = self.trees.lock().expect("not poisoned").get(&key) {
            if tree.bytes == bytes {
                return tree.clone();
            }
        }
        let tree = Arc::new(TileTree::new(bytes));
        let mut trees = self.trees.lock().expect("not poisoned");
        if trees.len() >= TILE_TREES {
            if let Some(victim) = trees.keys().next().copied() {
                trees.remove(&victim);
            }
        }
        trees.insert(key, tree.clone());
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::merkle::root_of_leaf_hashes;

    fn row(width: usize, seed: u8) -> Vec<u8> {
        (0..width)
            .flat_map(|i| kt_core::hash::sha256(&[seed, i as u8, (i >> 8) as u8]))
            .collect()
    }

    /// Every node a tile tree gives is the RFC 9162 root of its hashes, for full and partial
    /// rows; a node the row does not hold completely is refused.
    #[test]
    fn tile_tree_nodes_are_the_roots_of_their_hashes() {
        for width in [1usize, 2, 3, 200, 255, 256] {
            let bytes = row(width, 1);
            let hashes: Vec<Hash> = bytes
                .chunks_exact(HASH_SIZE)
                .map(|c| Hash::try_from(c).unwrap())
                .collect();
            let tree = TileTree::new(bytes);
            for r in 0..=8u32 {
                let count = 1usize << r;
                for offset in (0..256).step_by(count) {
                    let got = tree.node(offset as u16, count as u16);
                    if offset + count <= width {
                        let want = root_of_leaf_hashes(&hashes[offset..offset + count]);
                        assert_eq!(got, Some(want), "width {width}, node {r}/{offset}");
                    } else {
                        assert_eq!(got, None, "width {width}, node {r}/{offset}");
                    }
                }
            }
        }
    }

    /// Every node of a full tile read from its row and stored inner nodes is the node its
    /// computed tree gives; a partial tile has no inner nodes to store.
    #[test]
    fn stored_inner_nodes_give_every_node_of_a_full_tile() {
        let bytes = row(256, 4);
        let tree = TileTree::new(bytes.clone());
        let inner = tree.inner_nodes().unwrap();
        assert_eq!(inner.len(), 255 * HASH_SIZE);
        for r in 0..=8u32 {
            let count = 1u16 << r;
            for offset in (0..256u16).step_by(usize::from(count)) {
                let want = tree.node(offset, count);
                assert!(want.is_some());
                assert_eq!(
                    stored_node(&bytes, &inner, offset, count),
                    want,
                    "{r}/{offset}"
                );
            }
        }
        assert_eq!(TileTree::new(row(255, 4)).inner_nodes(), None);
    }

    /// Reading nodes of a full tile stores its inner nodes, and later reads use them (a
    /// tampered row shows in the answer, and the full check finds it); a partial tile stores
    /// nothing.
    #[test]
    fn full_tiles_keep_their_inner_nodes_once_read() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        storage
            .raw_put(CF_TILES, &tile_key(0, 0), &row(256, 5))
            .unwrap();
        storage
            .raw_put(CF_TILES, &tile_key(0, 1), &row(40, 6))
            .unwrap();
        let stored = |index| {
            let db = storage.db().unwrap();
            db.get_cf(db.cf(CF_TILE_NODES), tile_key(0, index)).unwrap()
        };
        // Level 7 is the root of 128 hashes: both halves of tile 0, a node inside it, and a
        // hash of tile 1.
        let ids = [
            NodeId { level: 7, index: 0 },
            NodeId { level: 7, index: 1 },
            NodeId {
                level: 3,
                index: 13,
            },
            NodeId {
                level: 0,
                index: 256 + 39,
            },
        ];
        let fresh = storage.read_hashes(&ids).unwrap();
        let want = TileTree::new(row(256, 5));
        assert_eq!(
            fresh[..3],
            [want.levels[7][0], want.levels[7][1], want.levels[3][13]]
        );
        assert_eq!(stored(0), want.inner_nodes());
        assert_eq!(stored(1), None, "a partial tile changes as it grows");
        assert_eq!(storage.check_tile_nodes().unwrap(), 1);
        assert_eq!(storage.read_hashes(&ids).unwrap(), fresh);

        let mut tampered = want.inner_nodes().unwrap();
        tampered[0] ^= 1; // level 1, node 0: the root of hashes 0 and 1
        storage
            .raw_put(CF_TILE_NODES, &tile_key(0, 0), &tampered)
            .unwrap();
        let read = storage
            .read_hashes(&[NodeId { level: 1, index: 0 }])
            .unwrap();
        assert_ne!(read[0], want.levels[1][0], "the stored row is what is read");
        let err = storage.check_tile_nodes().unwrap_err().to_string();
        assert!(err.contains("tile 0/0"), "{err}");
        storage
            .raw_put(CF_TILE_NODES, &tile_key(0, 0), &tampered[1..])
            .unwrap();
        let err = storage.read_hashes(&ids).unwrap_err().to_string();
        assert!(err.contains("inner nodes of tile 0/0"), "{err}");
    }

    /// A cached tree is used only for the very bytes it was built from.
    #[test]
    fn a_cached_tile_tree_is_used_only_for_the_same_bytes() {
        let trees = TileTrees::default();
        let first = trees.get(0, 7, row(100, 1));
        assert!(Arc::ptr_eq(&first, &trees.get(0, 7, row(100, 1))));
        let changed = trees.get(0, 7, row(100, 2));
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_ne!(first.node(0, 64), changed.node(0, 64));
        for i in 0..(TILE_TREES as u64 + 10) {
            trees.get(1, i, row(2, 3));
        }
        assert!(trees.trees.lock().unwrap().len() <= TILE_TREES, "bounded");
    }
}
