//! The single writer of the log (brief §5).
//!
//! One OS thread owns the write path: the frontier of the tree, the partial tiles and the latest
//! checkpoint. Requests reach it through a bounded channel; a full channel is back-pressure that
//! callers see as `RESOURCE_EXHAUSTED`. Each epoch, in this order:
//!
//! 1. hash the pending entries into the in-memory frontier, collecting new tile contents;
//! 2. build the next checkpoint (epoch + 1, `prev` = hash of the previous body) and sign it;
//! 3. write entries, tiles and the signed checkpoint in one synced `WriteBatch` — the commit point;
//! 4. publish the checkpoint to readers and watchers;
//! 5. answer the waiting requests; a single-entry request's answer carries its entry's inclusion
//!    proof, built from the nodes the epoch completed and the previous frontier, which hold
//!    every node such a proof needs (see [`EpochNodes`]).
//!
//! A signed checkpoint becomes visible to anyone only after step 3, so nothing is ever served
//! that is not durable. If step 3 fails the state on disk is unknown: the epoch's requests are
//! answered `UNAVAILABLE` (their entries may or may not be in the log), and appends are refused
//! while the sequencer, every second, reopens storage and reloads the write path from it as a
//! restart would. The signed epoch whose write failed is then written again, exactly as signed,
//! unless storage already holds it; so an epoch number never gets two different checkpoints.
//! Reads are unaffected. Before step 1, an epoch waits while free disk space is below the
//! configured reserve (`min_free_bytes`), so a filling disk stops appends before RocksDB fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::directory::VerifiedSignatures;
use kt_core::hash::{leaf_hash, Hash, HASH_SIZE};
use kt_core::merkle::{inclusion_proof, Frontier, HashReader, NodeId, ProofError};
use kt_core::note::NoteSigner;
use kt_core::tiles::{stored_position, TILE_HEIGHT, TILE_WIDTH};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use crate::directory_epoch::{EpochDirectory, Rejection};
use crate::directory_store::DirectoryWrite;
use crate::storage::{EpochWrite, Fault, Storage, StorageError};

/// Timing and size limits of the write path.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// How often an epoch closes when requests are waiting.
    pub epoch_interval: Duration,
    /// How often an empty epoch is published, so clients can tell a fresh log from a stalled one.
    pub heartbeat: Duration,
    /// Most entries in one epoch; a full batch closes the epoch at once.
    pub max_batch: usize,
    /// Most requests waiting for the sequencer; beyond it appends are refused.
    pub queue_depth: usize,
    /// Free bytes kept on the data directory's filesystem; below it no epoch is committed and
    /// appends are refused until space is freed (0: no reserve). RocksDB's own flushes and
    /// compactions need this headroom: when a write does hit a full disk, RocksDB refuses every
    /// later write until it is reopened.
    pub min_free_bytes: u64,
}

/// Why an append was not sequenced. None of these wrote anything.
#[derive(Debug, Clone, Error)]
pub enum SequencerError {
    #[error("the append queue is full ({0} requests waiting); retry after a short back-off")]
    QueueFull(usize),
    /// Retrying cannot help: the job is larger than the whole queue.
    #[error(
        "{entries} entries can never fit this server's append queue of {depth} (`queue_depth`); \
         send at most {depth} per call"
    )]
    LargerThanQueue { entries: usize, depth: usize },
    #[error("the sequencer is not running: {0}")]
    Stopped(String),
    #[error("{0}")]
    DiskFull(String),
    #[error("refused: {0}")]
    Rejected(#[from] Rejection),
}

/// A sequenced, durable entry and the first checkpoint that includes it.
#[derive(Debug, Clone)]
pub struct Appended {
    pub index: u64,
    pub checkpoint: Arc<SignedCheckpoint>,
    /// The entry's inclusion proof in `checkpoint`'s tree, for a single-entry request (none for
    /// a batch's entries, whose answer carries no proofs). Built from the sequencer's memory,
    /// so the answer needs no storage read.
    pub inclusion_proof: Option<Vec<Hash>>,
}

impl Appended {
    /// The entry's inclusion proof in `checkpoint`'s tree: the one the sequencer built, or,
    /// for an answer without one (a batch's entry), storage's. Taken, so it moves into the
    /// answer without a copy.
    pub fn take_inclusion_proof(
        &mut self,
        storage: &Storage,
    ) -> Result<Vec<Hash>, ProofError<StorageError>> {
        match self.inclusion_proof.take() {
            Some(proof) => Ok(proof),
            None => inclusion_proof(storage, self.index, self.checkpoint.checkpoint().size),
        }
    }
}

type Reply = oneshot::Sender<Result<Appended, SequencerError>>;

/// One entry in the queue: its canonical bytes, the signatures the request handler already
/// verified (the sequencer does not verify those again), and where its answer goes.
struct Item {
    entry: Vec<u8>,
    verified: VerifiedSignatures,
    reply: Reply,
}

/// Entries that land in the same epoch, in this order and with nothing in between, each with
/// its own answer: one `Append`, or one `AppendBatch`.
struct Job {
    items: Vec<Item>,
    /// Whether each answer carries its entry's inclusion proof.
    proofs: bool,
}

impl Job {
    fn one(entry: Vec<u8>, reply: Reply) -> Job {
        Job {
            items: vec![Item {
                entry,
                verified: VerifiedSignatures::default(),
                reply,
            }],
            proofs: false,
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    /// Answers every entry of the job with `error`.
    fn fail(self, error: impl Fn() -> SequencerError) {
        for item in self.items {
            let _ = item.reply.send(Err(error()));
        }
    }
}

/// When the epoch after one that was due at `due` and committed at `committed` is due.
///
/// Epochs close on a fixed cadence, not an interval after the last commit ended: callers
/// answered by a commit append again within the next interval, instead of waiting out the
/// commit's duration as well. An epoch that overran the interval is followed at once by the
/// next, if requests are waiting.
fn next_epoch_due(due: Instant, interval: Duration, committed: Instant) -> Instant {
    (due + interval).max(committed)
}

/// Entries in the jobs.
fn entries_in(jobs: &[Job]) -> usize {
    jobs.iter().map(Job::len).sum()
}

/// The first jobs of `pending` that fit in an epoch of `max_batch` entries; at least one, so
/// a batch larger than an epoch is still sequenced whole.
fn take_epoch(pending: &mut Vec<Job>, max_batch: usize) -> Vec<Job> {
    let mut entries = 0;
    let take = pending
        .iter()
        .take_while(|job| {
            let fits = entries == 0 || entries + job.len() <= max_batch;
            entries += job.len();
            fits
        })
        .count();
    pending.drain(..take).collect()
}

/// The sequencer's end of the queue. It counts entries (a batch is many), so `queue_depth`
/// bounds the entries waiting, whatever their grouping.
struct Queue {
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    fn taken(&self, job: Job) -> Job {
        self.queued.fetch_sub(job.len(), Ordering::SeqCst);
        job
    }

    fn try_recv(&self) -> Option<Job> {
        self.rx.try_recv().ok().map(|job| self.taken(job))
    }

    fn recv_timeout(&self, wait: Duration) -> Result<Job, RecvTimeoutError> {
        self.rx.recv_timeout(wait).map(|job| self.taken(job))
    }
}

/// **Test-only.** How [`Sequencer::commit_forged_for_tests`] breaks the directory.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// The entries skip the directory's rules; the map takes their effect as if they were allowed
    /// (the state after a key update is simply what the update says).
    SkipRules,
    /// The entries go into the log, but the map is left as it was: the checkpoint repeats the
    /// previous epoch's map root, and no label state, version or message row changes.
    StaleMap,
}

/// The cheap, cloneable handle the services use.
#[derive(Clone, Debug)]
pub struct SequencerHandle {
    tx: SyncSender<Job>,
    queue_depth: usize,
    /// Entries queued and not yet taken by the sequencer.
    queued: Arc<AtomicUsize>,
    stopped: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("entries", &self.items.len())
            .finish()
    }
}

impl SequencerHandle {
    /// Queues canonical entry bytes and waits until they are durable in a signed checkpoint.
    pub async fn append(&self, entry: Vec<u8>) -> Result<Appended, SequencerError> {
        self.append_verified(entry, VerifiedSignatures::default())
            .await
    }

    /// [`SequencerHandle::append`] of a key update whose signatures in `verified` were verified
    /// by the caller (off the sequencer's thread); the directory's rules still decide.
    pub async fn append_verified(
        &self,
        entry: Vec<u8>,
        verified: VerifiedSignatures,
    ) -> Result<Appended, SequencerError> {
        let answer = self
            .submit(vec![(entry, verified)], true)?
            .pop()
            .expect("one answer per entry");
        answer.await.unwrap_or_else(|_| Err(self.stopped_error()))
    }

    /// Queues entries that land in one epoch, consecutively and in this order (unless the
    /// directory's rules refuse one), and waits until that epoch is durable and signed. Each
    /// entry has its own outcome; the whole call fails only if nothing was queued.
    pub async fn append_batch(
        &self,
        entries: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Appended, SequencerError>>, SequencerError> {
        let answers = self.submit(
            entries
                .into_iter()
                .map(|e| (e, VerifiedSignatures::default()))
                .collect(),
            false,
        )?;
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(answer.await.unwrap_or_else(|_| Err(self.stopped_error())));
        }
        Ok(outcomes)
    }

    /// Queues one job; refused whole if its entries would take the queue past its depth.
    /// With `proofs`, each answer carries its entry's inclusion proof.
    fn submit(
        &self,
        entries: Vec<(Vec<u8>, VerifiedSignatures)>,
        proofs: bool,
    ) -> Result<Vec<oneshot::Receiver<Result<Appended, SequencerError>>>, SequencerError> {
        let n = entries.len();
        if n > self.queue_depth {
            return Err(SequencerError::LargerThanQueue {
                entries: n,
                depth: self.queue_depth,
            });
        }
        let reserved = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                (queued + n <= self.queue_depth).then_some(queued + n)
            });
        if reserved.is_err() {
            return Err(SequencerError::QueueFull(self.queue_depth));
        }
        let (items, answers): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .map(|(entry, verified)| {
                let (reply, answer) = oneshot::channel();
                let item = Item {
                    entry,
                    verified,
                    reply,
                };
                (item, answer)
            })
            .unzip();
        match self.tx.try_send(Job { items, proofs }) {
            Ok(()) => Ok(answers),
            Err(e) => {
                self.queued.fetch_sub(n, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => SequencerError::QueueFull(self.queue_depth),
                    TrySendError::Disconnected(_) => self.stopped_error(),
                })
            }
        }
    }

    fn stopped_error(&self) -> SequencerError {
        let why = self.stopped.lock().expect("not poisoned").clone();
        SequencerError::Stopped(why.unwrap_or_else(|| {
            // Shutting down finishes every queued epoch, so a reply dropped unanswered means the
            // commit of this request's epoch failed.
            "the commit of this entry's epoch failed: it may or may not be in the log; look it \
             up before retrying"
                .into()
        }))
    }
}

/// Why an epoch could not be committed. Either way nothing was published.
#[derive(Debug, Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot sign the checkpoint: {0}")]
    Sign(#[from] kt_core::checkpoint::CheckpointError),
    #[error("cannot update the map: {0}")]
    Map(#[from] kt_core::map::MapError<StorageError>),
    #[error("refusing to sign: {0}")]
    Unverified(String),
}

/// Free space needed before storage is reopened after a failed write.
const MIN_FREE_TO_REOPEN: u64 = 16 << 20;

/// Why the sequencer could not resume after a failed commit.
#[derive(Debug, Error)]
enum ResumeError {
    /// Try again later (the disk is still full, the database did not reopen).
    #[error("{0}")]
    NotYet(String),
    /// Storage holds something this process did not commit: only an operator can sort it out.
    #[error("{0}")]
    Fatal(String),
}

/// Why the log could not be opened for writing. The server refuses to start on any of these.
#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored checkpoint of epoch {epoch} does not verify: {reason}")]
    BadCheckpoint { epoch: u64, reason: String },
    #[error("the root recomputed from storage does not match the last signed checkpoint (epoch {epoch}, size {size}): stored data was modified or lost")]
    RootMismatch { epoch: u64, size: u64 },
    #[error("storage is inconsistent with the last signed checkpoint: {0}")]
    Inconsistent(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The write-path state, owned by the sequencer thread.
pub struct Sequencer {
    storage: Arc<Storage>,
    signer: NoteSigner,
    frontier: Frontier,
    /// The incomplete right-most tile of each tile level (at most 255 hashes each).
    partial_tiles: Vec<Vec<Hash>>,
    latest: Arc<SignedCheckpoint>,
    /// Shared only weakly (see [`Sequencer::publisher`]): when the sequencer stops, the channel
    /// closes and watchers end.
    published: Arc<watch::Sender<Arc<SignedCheckpoint>>>,
    /// A signed epoch whose write reported failure. It may or may not be on disk; until it is
    /// (written again on resume), no other checkpoint is signed, so one epoch number never gets
    /// two different signed checkpoints.
    committing: Option<EpochWrite>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("size", &self.frontier.size())
            .field("epoch", &self.latest.checkpoint().epoch)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// Opens the write path on verified storage (see `crate::startup`), writing the genesis
    /// checkpoint of a new log.
    pub fn new(
        storage: Arc<Storage>,
        signer: NoteSigner,
        frontier: Frontier,
        latest: Option<SignedCheckpoint>,
    ) -> Result<(Self, watch::Receiver<Arc<SignedCheckpoint>>), RecoveryError> {
        let latest = match latest {
            Some(cp) => cp,
            None => {
                let genesis = Checkpoint::genesis(signer.name().to_string(), now_ms());
                let signed = SignedCheckpoint::sign(genesis, &signer).map_err(|e| {
                    RecoveryError::Inconsistent(format!("cannot sign genesis: {e}"))
                })?;
                storage.commit_epoch(&EpochWrite {
                    epoch: 0,
                    checkpoint_note: signed.note().as_bytes().to_vec(),
                    ..EpochWrite::default()
                })?;
                signed
            }
        };
        let partial_tiles = load_partial_tiles(&storage, frontier.size())?;
        let latest = Arc::new(latest);
        let (published, subscribed) = watch::channel(latest.clone());
        Ok((
            Sequencer {
                storage,
                signer,
                frontier,
                partial_tiles,
                latest,
                published: Arc::new(published),
                committing: None,
            },
            subscribed,
        ))
    }

    /// The sender of the published checkpoint, for the witnessing service, which replaces the
    /// latest checkpoint with the same checkpoint carrying more cosignatures.
    pub fn publisher(&self) -> std::sync::Weak<watch::Sender<Arc<SignedCheckpoint>>> {
        Arc::downgrade(&self.published)
    }

    /// Starts the sequencer thread. Setting `shutdown` makes it finish the current epoch
    /// (every request already queued is sequenced) and exit.
    pub fn spawn(
        self,
        config: SequencerConfig,
        shutdown: Arc<AtomicBool>,
    ) -> (SequencerHandle, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_depth);
        let stopped = Arc::new(Mutex::new(None));
        let queued = Arc::new(AtomicUsize::new(0));
        let handle = SequencerHandle {
            tx,
            queue_depth: config.queue_depth,
            queued: queued.clone(),
            stopped: stopped.clone(),
        };
        let queue = Queue { rx, queued };
        let thread = std::thread::Builder::new()
            .name("ktd-sequencer".into())
            .spawn(move || self.run(queue, config, shutdown, stopped))
            .expect("spawn the sequencer thread");
        (handle, thread)
    }

    fn run(
        mut self,
        rx: Queue,
        config: SequencerConfig,
        shutdown: Arc<AtomicBool>,
        stopped: Arc<Mutex<Option<String>>>,
    ) {
        let mut pending: Vec<Job> = Vec::new();
        let mut epoch_due = Instant::now() + config.epoch_interval;
        let mut last_commit = Instant::now();
        let mut disk_full = false;
        loop {
            let closing = shutdown.load(Ordering::SeqCst);
            if closing {
                // Finish the current epoch: everything already queued gets sequenced.
                while let Some(job) = rx.try_recv() {
                    pending.push(job);
                }
            }
            let now = Instant::now();
            let epoch_over = now >= epoch_due;
            let heartbeat_due = now.duration_since(last_commit) >= config.heartbeat;
            let commit_now = entries_in(&pending) >= config.max_batch
                || (epoch_over && (!pending.is_empty() || heartbeat_due))
                || (closing && !pending.is_empty());
            if commit_now {
                if let Some(why) = self.disk_below_reserve(&config) {
                    // Nothing is written, heartbeats included, until space is freed.
                    if !disk_full {
                        tracing::warn!("{why}");
                        disk_full = true;
                    }
                    for job in pending.drain(..) {
                        job.fail(|| SequencerError::DiskFull(why.clone()));
                    }
                    last_commit = Instant::now();
                    epoch_due = now + config.epoch_interval;
                    continue;
                }
                if disk_full {
                    tracing::info!("free disk space is above the reserve again: appends resume");
                    disk_full = false;
                }
                let batch = take_epoch(&mut pending, config.max_batch);
                if let Err(e) = self.commit(batch) {
                    let why = format!(
                        "the epoch commit failed ({e}); appends are refused until storage recovers"
                    );
                    tracing::error!("{why}");
                    *stopped.lock().expect("not poisoned") = Some(why.clone());
                    for job in pending.drain(..) {
                        job.fail(|| SequencerError::Stopped(why.clone()));
                    }
                    if !self.resume(&rx, &config, &shutdown, &stopped) {
                        return;
                    }
                    *stopped.lock().expect("not poisoned") = None;
                    last_commit = Instant::now();
                    continue;
                }
                last_commit = Instant::now();
                if epoch_over {
                    epoch_due = next_epoch_due(epoch_due, config.epoch_interval, last_commit);
                }
                continue;
            }
            if closing {
                tracing::info!(epoch = self.latest.checkpoint().epoch, "sequencer stopped");
                return;
            }
            if epoch_over {
                epoch_due = now + config.epoch_interval;
            }
            // Wake at the next epoch boundary, or sooner to notice shutdown.
            let wait = epoch_due
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            match rx.recv_timeout(wait) {
                Ok(job) => {
                    pending.push(job);
                    // Take whatever else is already queued without waiting.
                    while entries_in(&pending) < config.max_batch {
                        match rx.try_recv() {
                            Some(job) => pending.push(job),
                            None => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => shutdown.store(true, Ordering::SeqCst),
            }
        }
    }

    /// Whether free disk space is below the reserve, and the message appends are refused with.
    fn disk_below_reserve(&self, config: &SequencerConfig) -> Option<String> {
        if config.min_free_bytes == 0 {
            return None;
        }
        const MIB: f64 = (1 << 20) as f64;
        match self.storage.free_space() {
            Ok(free) if free < config.min_free_bytes => Some(format!(
                "the disk holding the log has {:.1} MiB free, below the reserve of {:.1} MiB: \
                 appends are refused until space is freed",
                free as f64 / MIB,
                config.min_free_bytes as f64 / MIB
            )),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free disk space");
                None
            }
        }
    }

    /// After a failed commit, whose epoch may or may not be on disk: refuses appends and, every
    /// second, tries to reload the write path from storage (see [`Sequencer::try_resume`]).
    /// Returns false when the sequencer must stop (shutdown, or storage it cannot vouch for).
    fn resume(
        &mut self,
        rx: &Queue,
        config: &SequencerConfig,
        shutdown: &AtomicBool,
        stopped: &Mutex<Option<String>>,
    ) -> bool {
        let mut attempts: u64 = 0;
        loop {
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(job) => {
                        let why = stopped.lock().expect("not poisoned").clone();
                        let why = why.unwrap_or_else(|| "storage is recovering".into());
                        job.fail(|| SequencerError::Stopped(why.clone()));
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            }
            if shutdown.load(Ordering::SeqCst) {
                return false;
            }
            attempts += 1;
            match self.try_resume(config) {
                Ok(()) => {
                    tracing::info!(
                        epoch = self.latest.checkpoint().epoch,
                        size = self.frontier.size(),
                        "storage recovered after a failed commit: appends resume"
                    );
                    return true;
                }
                Err(ResumeError::NotYet(why)) => {
                    // Every attempt at first, then once a minute.
                    if attempts <= 3 || attempts.is_multiple_of(60) {
                        tracing::warn!(attempts, "storage has not recovered yet: {why}");
                    }
                }
                Err(ResumeError::Fatal(why)) => {
                    let why =
                        format!("the sequencer stopped: {why}; a restart runs the full checks");
                    tracing::error!("{why}");
                    *stopped.lock().expect("not poisoned") = Some(why.clone());
                    while let Some(job) = rx.try_recv() {
                        job.fail(|| SequencerError::Stopped(why.clone()));
                    }
                    return false;
                }
            }
        }
    }

    /// Reopens storage (RocksDB refuses all writes after a failed one until then) and reloads
    /// the write path from it, as a restart would. If an epoch was signed but its write failed,
    /// the same signed epoch is written again unless storage already holds it, and published:
    /// so its entries end up in the log and its epoch number is never signed twice. Storage
    /// holding anything other than the last published checkpoint or that epoch is fatal.
    fn try_resume(&mut self, config: &SequencerConfig) -> Result<(), ResumeError> {
        if let Some(why) = self.disk_below_reserve(config) {
            return Err(ResumeError::NotYet(why));
        }
        // Reopening closes the database first, and opening it writes files: on a disk still
        // full it would fail and take reads down with it, so wait for some room.
        match self.storage.free_space() {
            Ok(free) if free < MIN_FREE_TO_REOPEN => {
                return Err(ResumeError::NotYet(format!(
                    "the disk holding the log has {} KiB free; waiting for at least {} MiB before reopening storage",
                    free >> 10,
                    MIN_FREE_TO_REOPEN >> 20
                )))
            }
            _ => {}
        }
        self.storage
            .reopen()
            .map_err(|e| ResumeError::NotYet(format!("reopening storage: {e}")))?;
        let mut recovered = self.reload()?;
        if let Some(write) = &self.committing {
            if recovered.1.note().as_bytes() == self.latest.note().as_bytes() {
                self.storage.commit_epoch(write).map_err(|e| {
                    ResumeError::NotYet(format!("writing epoch {} again: {e}", write.epoch))
                })?;
                recovered = self.reload()?;
            }
            if recovered.1.note().as_bytes() != write.checkpoint_note.as_slice() {
                return Err(ResumeError::Fatal(format!(
                    "storage's last checkpoint (epoch {}) is not the epoch {} whose commit failed",
                    recovered.1.checkpoint().epoch,
                    write.epoch
                )));
            }
        } else if recovered.1.note().as_bytes() != self.latest.note().as_bytes() {
            return Err(ResumeError::Fatal(format!(
                "storage's last checkpoint (epoch {}) is not the last one published (epoch {})",
                recovered.1.checkpoint().epoch,
                self.latest.checkpoint().epoch
            )));
        }
        let (frontier, stored) = recovered;
        let partial = load_partial_tiles(&self.storage, frontier.size())
            .map_err(|e| ResumeError::Fatal(e.to_string()))?;
        self.frontier = frontier;
        self.partial_tiles = partial;
        if self.committing.take().is_some() {
            self.latest = Arc::new(stored);
            self.published.send_replace(self.latest.clone());
        }
        Ok(())
    }

    /// The tree's border and the last checkpoint as storage holds them, checked as at start.
    fn reload(&self) -> Result<(Frontier, SignedCheckpoint), ResumeError> {
        let recovered = crate::startup::recover(
            &self.storage,
            self.signer.name().as_str(),
            &self.signer.verifier(),
            crate::startup::StartupCheck::Quick,
        )
        .map_err(|e| match e {
            RecoveryError::Storage(e) => ResumeError::NotYet(e.to_string()),
            other => ResumeError::Fatal(other.to_string()),
        })?;
        let stored = recovered
            .latest
            .ok_or_else(|| ResumeError::Fatal("storage holds no checkpoint".into()))?;
        Ok((recovered.frontier, stored))
    }

    /// Sequences one epoch. On error nothing was published and no request was answered.
    fn commit(&mut self, jobs: Vec<Job>) -> Result<(), CommitError> {
        self.sequence_epoch(jobs, None)
    }

    /// **Test-only: a malicious operator's write path.** Sequences `entries` as one epoch, signed
    /// with the log's key like any other, but with the directory broken as `forgery` says. It
    /// exists so that `server/tests/directory_lies.rs` can produce, on a stopped server's storage,
    /// the log an operator holding the signing key could produce, and show who catches it. The
    /// server never calls it; nothing reaches it from the network or the configuration.
    ///
    /// Returns each entry's outcome, in order (an entry that does not decode is still refused).
    #[doc(hidden)]
    pub fn commit_forged_for_tests(
        &mut self,
        entries: Vec<Vec<u8>>,
        forgery: Forgery,
    ) -> Result<Vec<Result<Appended, SequencerError>>, CommitError> {
        self.sequence_entries(entries, Some(forgery))
    }

    /// **For benchmarks.** Sequences `entries` as one epoch through the real write path (rules,
    /// map, verify before signing, sign, synced commit, publish) without the request queue, and
    /// returns each entry's outcome in order.
    #[doc(hidden)]
    pub fn commit_epoch_for_benches(
        &mut self,
        entries: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Appended, SequencerError>>, CommitError> {
        self.sequence_entries(entries, None)
    }

    /// One epoch of `entries` without the request queue: each entry's outcome, in order.
    fn sequence_entries(
        &mut self,
        entries: Vec<Vec<u8>>,
        forgery: Option<Forgery>,
    ) -> Result<Vec<Result<Appended, SequencerError>>, CommitError> {
        let (jobs, mut answers): (Vec<Job>, Vec<_>) = entries
            .into_iter()
            .map(|entry| {
                let (reply, answer) = oneshot::channel();
                (Job::one(entry, reply), answer)
            })
            .unzip();
        self.sequence_epoch(jobs, forgery)?;
        Ok(answers
            .iter_mut()
            .map(|a| {
                a.try_recv()
                    .unwrap_or_else(|_| Err(SequencerError::Stopped("no answer".into())))
            })
            .collect())
    }

    /// [`Sequencer::commit`], or with `Some(forgery)` the test-only write path of
    /// [`Sequencer::commit_forged_for_tests`].
    fn sequence_epoch(
        &mut self,
        jobs: Vec<Job>,
        forgery: Option<Forgery>,
    ) -> Result<(), CommitError> {
        let first_index = self.frontier.size();
        let mut dirty_tiles: Vec<(u8, u64)> = Vec::new();
        let mut write = EpochWrite {
            first_index,
            ..EpochWrite::default()
        };
        // Work on a copy so a failed commit leaves the in-memory state at the last durable epoch.
        let mut frontier = self.frontier.clone();
        let mut partial = self.partial_tiles.clone();
        // The entry bytes move into the batch; only the reply channels stay behind, each with
        // whether its answer carries a proof.
        let mut replies = Vec::with_capacity(jobs.len());
        let mut refused = Vec::new();
        // The epoch's time, fixed before its entries are admitted: key updates are checked
        // against exactly the time the checkpoint will carry. Never let time run backwards, even
        // if the wall clock does.
        let time_ms = now_ms().max(self.latest.checkpoint().time_ms);
        let mut directory = EpochDirectory::new(&self.storage, time_ms);
        let mut nodes = jobs
            .iter()
            .any(|job| job.proofs)
            .then(|| EpochNodes::after(&self.frontier));
        let items = jobs
            .into_iter()
            .flat_map(|job| job.items.into_iter().map(move |item| (item, job.proofs)));
        for (item, proof_wanted) in items {
            let Item {
                entry,
                verified,
                reply,
            } = item;
            let hash = leaf_hash(&entry);
            let admitted = match forgery {
                None => directory.admit(&entry, hash, frontier.size(), &verified)?,
                Some(Forgery::SkipRules) => {
                    directory.admit_without_rules_for_tests(&entry, hash, frontier.size())?
                }
                Some(Forgery::StaleMap) => kt_core::entry::Entry::decode(&entry)
                    .map(drop)
                    .map_err(Rejection::from),
            };
            if let Err(rejection) = admitted {
                // Refused by the directory's rules: only this request fails, nothing is written.
                // The answer waits for the commit point, because a refusal can rest on an earlier
                // entry of this epoch (a second register of a label): if the epoch is not
                // durable, neither is the reason, and the request is answered UNAVAILABLE.
                refused.push((reply, rejection));
                continue;
            }
            for (node, hash) in frontier.append(hash) {
                if let Some(nodes) = &mut nodes {
                    nodes.completed(node, hash);
                }
                record_tile_hash(node, hash, &mut partial, &mut write, &mut dirty_tiles);
            }
            write.entries.push(entry);
            replies.push((reply, proof_wanted));
        }
        for (level, index) in dirty_tiles {
            let hashes = &partial[level as usize];
            if !hashes.is_empty() {
                write.tiles.push(((level, index), hashes.concat()));
            }
        }
        let prev = self.latest.checkpoint();
        let (map_root, directory) = match forgery {
            Some(Forgery::StaleMap) => (prev.map_root, DirectoryWrite::default()),
            _ => directory.finish(prev.epoch)?,
        };
        write.directory = directory;
        let next = Checkpoint {
            origin: prev.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            epoch: prev.epoch + 1,
            map_root,
            prev: prev.body_hash(),
            time_ms,
        };
        self.check_before_signing(prev, &next, &write)?;
        let signed = SignedCheckpoint::sign(next, &self.signer)?;
        write.epoch = signed.checkpoint().epoch;
        write.checkpoint_note = signed.note().as_bytes().to_vec();

        // The commit point.
        if let Err(e) = self.storage.commit_epoch(&write) {
            self.committing = Some(write);
            return Err(e.into());
        }
        if self
            .storage
            .fault_fires(&[Fault::FailsAfterCommit])
            .is_some()
        {
            self.committing = Some(write);
            return Err(StorageError::Injected("failed after the commit point").into());
        }

        self.frontier = frontier;
        self.partial_tiles = partial;
        self.latest = Arc::new(signed);
        self.published.send_replace(self.latest.clone());
        tracing::debug!(
            epoch = self.latest.checkpoint().epoch,
            size = self.frontier.size(),
            entries = replies.len(),
            "epoch committed"
        );
        let size = self.frontier.size();
        for (i, (reply, proof_wanted)) in replies.into_iter().enumerate() {
            let index = first_index + i as u64;
            let proof = match &nodes {
                Some(nodes) if proof_wanted => nodes.inclusion_proof(index, size),
                _ => None,
            };
            let _ = reply.send(Ok(Appended {
                index,
                checkpoint: self.latest.clone(),
                inclusion_proof: proof,
            }));
        }
        for (reply, rejection) in refused {
            let _ = reply.send(Err(rejection.into()));
        }
        Ok(())
    }
}

impl Sequencer {
    /// Verify before signing (a bit flipped in memory before signing is what made DigiCert's
    /// Yeti 2022 log unrecoverable): the new root is rebuilt independently of the in-memory
    /// frontier, from the right border of the tree as stored (which must give the previous
    /// checkpoint's root) and the leaf hashes recomputed from the entry bytes being written; and
    /// the new checkpoint must be a valid next link of the chain. Any mismatch stops the
    /// sequencer before anything is signed; a restart recovers from storage.
    fn check_before_signing(
        &self,
        prev: &Checkpoint,
        next: &Checkpoint,
        write: &EpochWrite,
    ) -> Result<(), CommitError> {
        if self
            .storage
            .fault_fires(&[Fault::ReadBeforeSigningFails])
            .is_some()
        {
            return Err(StorageError::Injected("reading the tree's stored border failed").into());
        }
        let stored = self.storage.read_hashes(&Frontier::node_ids(prev.size))?;
        let mut check = Frontier::from_hashes(prev.size, stored)
            .map_err(|e| CommitError::Unverified(format!("stored right border: {e}")))?;
        if check.root() != prev.root {
            return Err(CommitError::Unverified(format!(
                "the stored tree of size {} does not give the root of checkpoint {}",
                prev.size, prev.epoch
            )));
        }
        for entry in &write.entries {
            check.append(leaf_hash(entry));
        }
        if check.size() != next.size || check.root() != next.root {
            return Err(CommitError::Unverified(format!(
                "the root rebuilt from storage and the epoch's entries differs from the in-memory root for size {}",
                next.size
            )));
        }
        next.follows(prev).map_err(|e| {
            CommitError::Unverified(format!("the next checkpoint does not follow: {e}"))
        })
    }
}

/// Every node an inclusion proof of an epoch's entry needs, kept in memory while the epoch is
/// sequenced so that single-entry answers need no storage read.
///
/// For a leaf `i` at or after the epoch's first index `first`, in the tree of size `n` after
/// the epoch, the proof's nodes (RFC 9162's recursion, as [`inclusion_proof`] reads them) are:
/// - left siblings `[a, a + 2^h)` of `i`'s ancestors. If `a + 2^h <= first`, that ancestor holds
///   both `first` and `i`, so bit `h` of `first` is set and the sibling is a node of the
///   frontier of size `first`; otherwise the sibling's last leaf is new, so the epoch
///   completed it;
/// - the complete subtrees of right sibling ranges, whose leaves all follow `i`: the epoch
///   completed them.
///
/// So the frontier before the epoch and the nodes [`Frontier::append`] reported during it are
/// enough; about two nodes per entry.
struct EpochNodes {
    nodes: HashMap<NodeId, Hash>,
}

impl EpochNodes {
    /// Starts from the frontier the epoch extends.
    fn after(frontier: &Frontier) -> Self {
        let ids = Frontier::node_ids(frontier.size());
        let nodes = ids.into_iter().zip(frontier.hashes().iter().copied());
        EpochNodes {
            nodes: nodes.collect(),
        }
    }

    /// Keeps a node the epoch completed.
    fn completed(&mut self, node: NodeId, hash: Hash) {
        self.nodes.insert(node, hash);
    }

    /// The inclusion proof of `index` in the tree of `size`. `None` only if a node is missing,
    /// which the argument above rules out for an entry of this epoch; the caller then reads
    /// the proof from storage instead.
    fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        match inclusion_proof(self, index, size) {
            Ok(proof) => Some(proof),
            Err(e) => {
                tracing::error!(index, size, error = ?e, "an epoch's nodes lack a proof's node");
                None
            }
        }
    }
}

/// A node an inclusion proof needs that the epoch's nodes do not hold.
#[derive(Debug, Error)]
#[error("node {level}/{index} is not among the epoch's nodes", level = .0.level, index = .0.index)]
struct MissingNode(NodeId);

impl HashReader for EpochNodes {
    type Error = MissingNode;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, MissingNode> {
        ids.iter()
            .map(|id| self.nodes.get(id).copied().ok_or(MissingNode(*id)))
            .collect()
    }
}

/// Adds a newly completed node to the tiles when it sits on a tile level (a multiple of 8).
fn record_tile_hash(
    node: NodeId,
    hash: Hash,
    partial: &mut Vec<Vec<Hash>>,
    write: &mut EpochWrite,
    dirty: &mut Vec<(u8, u64)>,
) {
    let Some((tile_level, tile_index, offset)) = stored_position(node) else {
        return;
    };
    if partial.len() <= tile_level as usize {
        partial.resize(tile_level as usize + 1, Vec::new());
    }
    let tile = &mut partial[tile_level as usize];
    debug_assert_eq!(tile.len(), offset as usize);
    tile.push(hash);
    if tile.len() as u64 == TILE_WIDTH {
        write
            .tiles
            .push(((tile_level, tile_index), std::mem::take(tile).concat()));
        dirty.retain(|d| *d != (tile_level, tile_index));
    } else if !dirty.contains(&(tile_level, tile_index)) {
        dirty.push((tile_level, tile_index));
    }
}

/// Loads the incomplete right-most tile of every level for a tree of `size` leaves.
fn load_partial_tiles(storage: &Storage, size: u64) -> Result<Vec<Vec<Hash>>, RecoveryError> {
    let mut partial = Vec::new();
    let mut level: u8 = 0;
    loop {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let nodes = if shift >= 64 { 0 } else { size >> shift };
        if nodes == 0 {
            break;
        }
        let width = (nodes % TILE_WIDTH) as usize;
        let mut hashes = Vec::new();
        if width > 0 {
            let index = nodes / TILE_WIDTH;
            let bytes = storage.tile(level, index)?.ok_or_else(|| {
                RecoveryError::Inconsistent(format!("partial tile {level}/{index} is missing"))
            })?;
            if bytes.len() < width * HASH_SIZE {
                return Err(RecoveryError::Inconsistent(format!(
                    "tile {level}/{index} holds {} hashes, want {width}",
                    bytes.len() / HASH_SIZE
                )));
            }
            hashes = bytes[..width * HASH_SIZE]
                .chunks_exact(HASH_SIZE)
                .map(|c| Hash::try_from(c).expect("32-byte chunks"))
                .collect();
        }
        partial.push(hashes);
        level += 1;
    }
    Ok(partial)
}

#[cfg(test)]
mod tests {
    //! The proofs the server builds, from the real RocksDB tile storage, all verify; this covers
    //! partial and full tiles on two tile levels (more than 65,536 entries).
    use super::*;
    use kt_core::merkle::{
        consistency_proof, inclusion_proof, root_hash, verify_consistency, verify_inclusion,
    };

    /// A small deterministic generator, so a failure is reproducible.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % bound
        }
    }

    /// A sequencer on a new RocksDB in `dir`, its storage, and its latest checkpoint.
    fn fresh(
        dir: &tempfile::TempDir,
    ) -> (
        Sequencer,
        Arc<Storage>,
        watch::Receiver<Arc<SignedCheckpoint>>,
    ) {
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let signer =
            NoteSigner::from_seed(kt_core::note::KeyName::new("test/log").unwrap(), [7; 32]);
        let (seq, latest) = Sequencer::new(storage.clone(), signer, Frontier::new(), None).unwrap();
        (seq, storage, latest)
    }

    fn commit(seq: &mut Sequencer, entries: impl Iterator<Item = Vec<u8>>) {
        let jobs = entries
            .map(|entry| Job::one(entry, oneshot::channel().0))
            .collect();
        seq.commit(jobs).unwrap();
    }

    #[test]
    fn a_corrupt_in_memory_tree_is_never_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seq, storage, latest) = fresh(&dir);
        commit(&mut seq, (0..5).map(record));
        let before = latest.borrow().checkpoint().clone();
        // Flip one bit of one right-border hash held in memory, as a memory error would.
        let mut hashes = seq.frontier.hashes().to_vec();
        hashes[0][0] ^= 1;
        seq.frontier = Frontier::from_hashes(seq.frontier.size(), hashes).unwrap();
        let (tx, _rx) = oneshot::channel();
        let err = seq.commit(vec![Job::one(record(5), tx)]).unwrap_err();
        assert!(matches!(err, CommitError::Unverified(_)), "{err}");
        // Nothing was signed, stored or published.
        assert_eq!(latest.borrow().checkpoint(), &before);
        let (epoch, _) = storage.latest_checkpoint().unwrap().unwrap();
        assert_eq!(epoch, before.epoch);
        assert!(storage.entry(5).unwrap().is_none());
    }

    /// A signature verified ahead by the request handler counts only for the key it was
    /// verified with: if the label's key changed before the sequencer reached the update, the
    /// sequencer verifies with the key it has, and refuses an update signed by the old one.
    #[test]
    fn a_signature_verified_with_a_key_since_replaced_is_verified_again() {
        use kt_core::directory::{KeyUpdate, Label, Op, Role, UserSigner};

        let dir = tempfile::tempdir().unwrap();
        let (mut seq, storage, _latest) = fresh(&dir);
        let keys: Vec<UserSigner> = (1..=3u8)
            .map(|i| UserSigner::ed25519_from_seed([i; 32]))
            .collect();
        let label = Label::from_identifier("alice@example.org").unwrap();
        let register = KeyUpdate::new(
            label,
            1,
            [0; 32],
            Op::Register,
            Some(keys[0].public()),
            now_ms(),
        )
        .unwrap()
        .sign(Role::NewKey, &keys[0])
        .unwrap();
        let rotate = |version: u64, prev: Hash, by: &UserSigner, to: &UserSigner| {
            KeyUpdate::new(
                label,
                version,
                prev,
                Op::Rotate,
                Some(to.public()),
                now_ms(),
            )
            .unwrap()
            .sign(Role::PreviousKey, by)
            .unwrap()
            .sign(Role::NewKey, to)
            .unwrap()
        };
        commit(&mut seq, std::iter::once(register.encode()));
        // Version 2 goes to key 2; a version 3 signed by key 1 was verified ahead while key 1
        // was still the label's key.
        let rotate_to_2 = rotate(2, register.leaf_hash(), &keys[0], &keys[1]);
        let stale = rotate(3, rotate_to_2.leaf_hash(), &keys[0], &keys[2]);
        let mut ahead = VerifiedSignatures::of_new_key(&stale);
        let sig = stale.signature(Role::PreviousKey).unwrap();
        assert!(ahead.verify(&keys[0].public(), stale.signed_bytes(), sig));
        commit(&mut seq, std::iter::once(rotate_to_2.encode()));

        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            items: vec![Item {
                entry: stale.encode(),
                verified: ahead,
                reply,
            }],
            proofs: true,
        };
        seq.commit(vec![job]).unwrap();
        let refused = answer.try_recv().unwrap().unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("previous-key signature does not verify"),
            "{refused}"
        );
        assert_eq!(storage.label_state(&label).unwrap().unwrap().version, 2);
    }

    /// A message-log record: the sequencer refuses bytes that are no entry.
    /// The queue bound counts entries, not calls: a batch that would take the queue past its
    /// depth is refused whole, and takes no place in it; one that fits is sequenced whole, in
    /// order, in one epoch, even when it is larger than an epoch's `max_batch`.
    #[tokio::test]
    async fn batches_count_entries_against_the_queue_and_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (seq, _storage, _latest) = fresh(&dir);
        let config = SequencerConfig {
            epoch_interval: Duration::from_millis(5),
            heartbeat: Duration::from_secs(3600),
            max_batch: 3,
            queue_depth: 5,
            min_free_bytes: 0,
        };
        let shutdown = Arc::new(AtomicBool::new(false));
        let (handle, thread) = seq.spawn(config, shutdown.clone());
        let refused = handle.append_batch((0..6).map(record).collect()).await;
        assert!(
            matches!(
                refused,
                Err(SequencerError::LargerThanQueue {
                    entries: 6,
                    depth: 5
                })
            ),
            "{refused:?}"
        );
        let landed = handle
            .append_batch((0..5).map(record).collect())
            .await
            .unwrap();
        let landed: Vec<Appended> = landed.into_iter().map(Result::unwrap).collect();
        let indexes: Vec<u64> = landed.iter().map(|a| a.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4], "whole, in order, from the start");
        assert!(landed
            .iter()
            .all(|a| a.checkpoint.checkpoint() == landed[0].checkpoint.checkpoint()));
        assert_eq!(landed[0].checkpoint.checkpoint().size, 5, "one epoch");
        let single = handle.append(record(5)).await.unwrap();
        assert_eq!(single.index, 5, "the refused batch took no index");
        shutdown.store(true, Ordering::SeqCst);
        drop(handle);
        thread.join().unwrap();
    }

    #[test]
    fn epochs_are_due_on_a_fixed_cadence() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // A commit that took 1 ms of a 5 ms interval: the next epoch is due 5 ms after this
        // one was, not 5 ms after the commit ended.
        assert_eq!(next_epoch_due(t0, ms(5), t0 + ms(1)), t0 + ms(5));
        // A commit that overran the interval: the next epoch is due at once.
        assert_eq!(next_epoch_due(t0, ms(5), t0 + ms(7)), t0 + ms(7));
    }

    fn record(i: u64) -> Vec<u8> {
        use kt_core::entry::{Entry, Namespace, Record};
        let r = Record::new(
            Namespace::new("test").unwrap(),
            format!("entry {i}").into_bytes(),
        );
        Entry::Record(r.unwrap()).encode()
    }

    /// Single-entry answers carry inclusion proofs built from the epoch's nodes in memory: at
    /// every epoch size and position (tile edges, refused entries in between, batch entries in
    /// the same epoch), each is the proof storage gives and verifies against the signed root.
    #[test]
    fn answers_carry_the_proofs_storage_would_give() {
        enum Expect {
            Refused,
            Proof(u64),
            NoProof(u64),
        }
        let dir = tempfile::tempdir().unwrap();
        let (mut seq, storage, _latest) = fresh(&dir);
        let mut rng = Lcg(7);
        let mut next = 0u64;
        let mut proofs_checked = 0;
        while next < 20_000 {
            let requests = match rng.next(20) {
                0 => 1_000 + rng.next(3_000),
                1 => 0,
                _ => 1 + rng.next(100),
            };
            let mut jobs = Vec::new();
            let mut answers = Vec::new();
            for _ in 0..requests {
                let (reply, answer) = oneshot::channel();
                let (job, expect) = match rng.next(50) {
                    // Bytes that are no entry: refused, so they take no index.
                    0 => (Job::one(b"no entry".to_vec(), reply), Expect::Refused),
                    // A batch's entry: no proof in its answer.
                    1 => (Job::one(record(next), reply), Expect::NoProof(next)),
                    _ => {
                        let job = Job {
                            proofs: true,
                            ..Job::one(record(next), reply)
                        };
                        (job, Expect::Proof(next))
                    }
                };
                if !matches!(expect, Expect::Refused) {
                    next += 1;
                }
                jobs.push(job);
                answers.push((expect, answer));
            }
            seq.commit(jobs).unwrap();
            for (expect, mut answer) in answers {
                let got = answer.try_recv().unwrap();
                let index = match expect {
                    Expect::Refused => {
                        assert!(got.is_err(), "bytes that are no entry are refused");
                        continue;
                    }
                    Expect::NoProof(index) => {
                        let got = got.unwrap();
                        assert_eq!(got.index, index);
                        assert!(got.inclusion_proof.is_none());
                        continue;
                    }
                    Expect::Proof(index) => index,
                };
                let got = got.unwrap();
                assert_eq!(got.index, index);
                let cp = got.checkpoint.checkpoint();
                let proof = got.inclusion_proof.expect("a single entry's proof");
                assert_eq!(proof, inclusion_proof(&*storage, index, cp.size).unwrap());
                verify_inclusion(&leaf_hash(&record(index)), index, cp.size, &proof, &cp.root)
                    .unwrap();
                proofs_checked += 1;
            }
        }
        assert!(proofs_checked > 15_000, "{proofs_checked}");
    }

    #[test]
    fn proofs_from_tile_storage_verify_across_tile_levels() {
        let dir = tempfile::tempdir().unwrap();
        let (mut seq, storage, latest) = fresh(&dir);
        let mut rng = Lcg(42);
        let mut leaves = Vec::new();
        let mut checkpoints = vec![latest.borrow().checkpoint().clone()];
        while leaves.len() < 70_000 {
            // Mostly small epochs with a few large ones, so tile edges fall everywhere.
            let n = if rng.next(10) == 0 {
                4_000 + rng.next(6_000)
            } else {
                1 + rng.next(300)
            };
            let start = leaves.len() as u64;
            let batch: Vec<Vec<u8>> = (start..start + n).map(record).collect();
            leaves.extend(batch.iter().map(|e| leaf_hash(e)));
            commit(&mut seq, batch.into_iter());
            checkpoints.push(latest.borrow().checkpoint().clone());
        }
        let reference = |leaves: &[Hash], size: u64| {
            kt_core::merkle::root_of_leaf_hashes(&leaves[..size as usize])
        };
        for cp in &checkpoints {
            assert_eq!(cp.size, leaves.len().min(cp.size as usize) as u64);
            assert_eq!(root_hash(&*storage, cp.size).unwrap(), cp.root);
        }
        let last = checkpoints.last().unwrap().clone();
        assert_eq!(last.root, reference(&leaves, last.size));
        for _ in 0..300 {
            let size = 1 + rng.next(last.size);
            let index = rng.next(size);
            let root = reference(&leaves, size);
            let proof = inclusion_proof(&*storage, index, size).unwrap();
            verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
            let old = 1 + rng.next(size);
            let proof = consistency_proof(&*storage, old, size).unwrap();
            verify_consistency(old, size, &proof, &reference(&leaves, old), &root).unwrap();
        }
        // Restart: the frontier and partial tiles reload from storage and appending continues.
        drop(seq);
        let key = NoteSigner::from_seed(kt_core::note::KeyName::new("test/log").unwrap(), [7; 32]);
        let recovered = crate::startup::recover(
            &storage,
            "test/log",
            &key.verifier(),
            crate::startup::StartupCheck::Full,
        )
        .unwrap();
        let (mut seq, latest) =
            Sequencer::new(storage.clone(), key, recovered.frontier, recovered.latest).unwrap();
        let more: Vec<Vec<u8>> = (0..500).map(|i| record(100_000 + i)).collect();
        leaves.extend(more.iter().map(|e| leaf_hash(e)));
        commit(&mut seq, more.into_iter());
        let cp = latest.borrow().checkpoint().clone();
        assert_eq!(cp.size, leaves.len() as u64);
        assert_eq!(cp.root, reference(&leaves, cp.size));
        assert_eq!(root_hash(&*storage, cp.size).unwrap(), cp.root);
    }
}
