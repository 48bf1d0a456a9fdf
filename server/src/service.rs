//! The `keytrail.v1.Log` gRPC service. Handlers decode, call storage or the sequencer, encode;
//! the protocol lives in `kt-core`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::entry::{Entry, MAX_ENTRY_LEN};
use kt_core::merkle;
use kt_proto::v1::log_server::Log;
use kt_proto::v1::{
    AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, Checkpoint,
    GetCheckpointBodiesRequest, GetCheckpointBodiesResponse, GetCheckpointRequest,
    GetCheckpointResponse, GetConsistencyProofRequest, GetConsistencyProofResponse,
    GetEntriesRequest, GetInclusionProofRequest, GetInclusionProofResponse, LogEntry,
    WatchCheckpointsRequest,
};
use kt_proto::{hashes_to_wire, AppendReceipt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::limits::{PeerLimits, RpcClass};
use crate::sequencer::SequencerHandle;
use crate::storage::Storage;
use crate::witnessing::Cosigned;

/// Most records one `AppendBatch` call appends.
pub const MAX_BATCH_RECORDS: usize = 1_000;
/// Most entries one `GetEntries` call returns.
pub const MAX_ENTRIES_PER_CALL: u64 = 10_000;
/// Most checkpoint bodies one `GetCheckpointBodies` call returns (about 210 KB at 1,000).
pub const MAX_BODIES_PER_CALL: u64 = 1_000;
/// A `GetCheckpointBodies` answer stops once its bodies pass this many bytes (long origins).
const MAX_BODY_BYTES_PER_CALL: usize = 1024 * 1024;
/// Entries are read from storage and sent in chunks of this many.
const ENTRY_CHUNK: u64 = 256;
/// Messages buffered per server stream; a slow reader waits here without holding anything else.
const STREAM_BUFFER: usize = 32;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The log service's shared state: storage for reads, the sequencer for writes, the latest
/// published checkpoint (with the cosignatures collected so far) and the epochs that gain
/// cosignatures.
#[derive(Debug, Clone)]
pub struct LogService {
    storage: Arc<Storage>,
    sequencer: SequencerHandle,
    latest: watch::Receiver<Arc<SignedCheckpoint>>,
    cosigned: Cosigned,
    /// The per-peer limits, for the tokens a batch takes beyond the call's own.
    limits: Option<Arc<PeerLimits>>,
}

impl LogService {
    pub fn new(
        storage: Arc<Storage>,
        sequencer: SequencerHandle,
        latest: watch::Receiver<Arc<SignedCheckpoint>>,
        cosigned: Cosigned,
    ) -> Self {
        LogService {
            storage,
            sequencer,
            latest,
            cosigned,
            limits: None,
        }
    }

    /// Charges each record of a batch to the caller's write limit.
    pub fn with_limits(mut self, limits: Arc<PeerLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    fn latest(&self) -> Arc<SignedCheckpoint> {
        self.latest.borrow().clone()
    }
}

/// Runs storage work that may wait on the disk (a synced write) off the async workers.
///
/// Reads do not come here: they run on the worker that serves the request. They are served
/// from RocksDB's memtables, block cache or the OS page cache, and on 2-core VMs handing each
/// one to the blocking pool and back cost more than the read (docs/performance.md, change 14);
/// the runtime has spare workers so that a read that does wait on the disk holds up only its
/// own (see `main.rs`).
pub(crate) async fn on_blocking_pool<T, F>(storage: &Arc<Storage>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Storage) -> Result<T, ApiError> + Send + 'static,
{
    let storage = storage.clone();
    tokio::task::spawn_blocking(move || f(&storage))
        .await
        .map_err(|e| ApiError::Internal(format!("read task failed: {e}")))?
}

/// The canonical entry of a record to append, if it is well-formed and within the size limit.
fn record_entry(request: &AppendRequest) -> Result<Vec<u8>, ApiError> {
    let bytes = Entry::try_from(request).map_err(ApiError::from)?.encode();
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "entry is {} bytes, the limit is {MAX_ENTRY_LEN}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn checkpoint_message(cp: &SignedCheckpoint) -> Checkpoint {
    Checkpoint {
        note: cp.note().as_bytes().to_vec(),
    }
}

/// Checks that `size` names a tree the log has published.
fn published_size(latest: &SignedCheckpoint, size: u64, what: &str) -> Result<(), ApiError> {
    let have = latest.checkpoint().size;
    if size > have {
        return Err(ApiError::OutOfRange(format!(
            "{what} {size} is beyond the latest checkpoint's tree size {have}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Log for LogService {
    #[tracing::instrument(skip_all)]
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let bytes = record_entry(request.get_ref())?;
        let mut appended = self
            .sequencer
            .append(bytes.clone())
            .await
            .map_err(ApiError::from)?;
        let index = appended.index;
        let proof = appended
            .take_inclusion_proof(&self.storage)
            .map_err(ApiError::from)?;
        let receipt = AppendReceipt {
            index,
            entry: bytes,
            checkpoint_note: appended.checkpoint.note().as_bytes().to_vec(),
            inclusion_proof: proof,
        };
        Ok(Response::new(receipt.into()))
    }

    async fn append_batch(
        &self,
        request: Request<AppendBatchRequest>,
    ) -> Result<Response<AppendBatchResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let records = &request.get_ref().records;
        if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
            return Err(ApiError::InvalidArgument(format!(
                "records: a batch holds 1 to {MAX_BATCH_RECORDS} records, this one {}",
                records.len()
            ))
            .into());
        }
        let entries = records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                record_entry(record)
                    .map_err(|e| ApiError::InvalidArgument(format!("records[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(limits) = &self.limits {
            // At most MAX_BATCH_RECORDS, so the count fits.
            limits
                .check_batch(peer, RpcClass::Write, entries.len() as u32)
                .map_err(ApiError::from)?;
        }
        let outcomes = self
            .sequencer
            .append_batch(entries)
            .await
            .map_err(ApiError::from)?;
        // Records pass no directory rule, so a batch lands whole or not at all.
        let appended = outcomes
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::from)?;
        let first = &appended[0];
        let consecutive = appended.iter().enumerate().all(|(i, a)| {
            a.index == first.index + i as u64
                && a.checkpoint.checkpoint() == first.checkpoint.checkpoint()
        });
        if !consecutive {
            return Err(ApiError::Internal(
                "a batch was not sequenced consecutively in one epoch".into(),
            )
            .into());
        }
        Ok(Response::new(AppendBatchResponse {
            first_index: first.index,
            checkpoint: Some(checkpoint_message(&first.checkpoint)),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let checkpoint = match request.get_ref().epoch {
            None => checkpoint_message(&self.latest()),
            Some(epoch) => {
                let latest = self.latest().checkpoint().epoch;
                if epoch > latest {
                    return Err(ApiError::NotFound(format!(
                        "no checkpoint for epoch {epoch}: the latest epoch is {latest}"
                    ))
                    .into());
                }
                let note = self.storage.checkpoint(epoch).map_err(ApiError::from)?;
                let note = note.ok_or_else(|| {
                    ApiError::Internal(format!("checkpoint of epoch {epoch} is missing"))
                })?;
                Checkpoint { note }
            }
        };
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(checkpoint),
        }))
    }

    async fn get_checkpoint_bodies(
        &self,
        request: Request<GetCheckpointBodiesRequest>,
    ) -> Result<Response<GetCheckpointBodiesResponse>, Status> {
        let GetCheckpointBodiesRequest {
            from_epoch,
            to_epoch,
        } = *request.get_ref();
        if from_epoch > to_epoch {
            return Err(ApiError::InvalidArgument(format!(
                "from_epoch {from_epoch} is after to_epoch {to_epoch}"
            ))
            .into());
        }
        let latest = self.latest().checkpoint().epoch;
        if to_epoch > latest {
            return Err(ApiError::OutOfRange(format!(
                "to_epoch {to_epoch} is beyond the latest epoch {latest}"
            ))
            .into());
        }
        let notes = self
            .storage
            .log_checkpoints(
                from_epoch,
                to_epoch,
                MAX_BODIES_PER_CALL as usize,
                MAX_BODY_BYTES_PER_CALL,
            )
            .map_err(ApiError::from)?;
        let bodies = notes
            .iter()
            .map(|note| {
                kt_core::note::Note::parse(note)
                    .map(|n| n.text().as_bytes().to_vec())
                    .map_err(|e| ApiError::Internal(format!("a stored checkpoint: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(GetCheckpointBodiesResponse { bodies }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let GetInclusionProofRequest { index, tree_size } = *request.get_ref();
        published_size(&self.latest(), tree_size, "tree_size")?;
        if index >= tree_size {
            return Err(ApiError::InvalidArgument(format!(
                "index {index} is not in a tree of {tree_size} entries"
            ))
            .into());
        }
        let proof =
            merkle::inclusion_proof(&*self.storage, index, tree_size).map_err(ApiError::from)?;
        Ok(Response::new(GetInclusionProofResponse {
            hashes: hashes_to_wire(&proof),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let GetConsistencyProofRequest { old_size, new_size } = *request.get_ref();
        if old_size > new_size {
            return Err(ApiError::InvalidArgument(format!(
                "old_size {old_size} is larger than new_size {new_size}"
            ))
            .into());
        }
        published_size(&self.latest(), new_size, "new_size")?;
        let proof = merkle::consistency_proof(&*self.storage, old_size, new_size)
            .map_err(ApiError::from)?;
        Ok(Response::new(GetConsistencyProofResponse {
            hashes: hashes_to_wire(&proof),
        }))
    }

    type GetEntriesStream = BoxStream<LogEntry>;

    async fn get_entries(
        &self,
        request: Request<GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let GetEntriesRequest { start, end } = *request.get_ref();
        if start >= end {
            return Err(ApiError::InvalidArgument(format!(
                "empty range: start {start} must be below end {end}"
            ))
            .into());
        }
        if end - start > MAX_ENTRIES_PER_CALL {
            return Err(ApiError::InvalidArgument(format!(
                "at most {MAX_ENTRIES_PER_CALL} entries per call, asked for {}",
                end - start
            ))
            .into());
        }
        published_size(&self.latest(), end, "end")?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let storage = self.storage.clone();
        tokio::spawn(async move {
            let mut from = start;
            while from < end {
                let to = (from + ENTRY_CHUNK).min(end);
                let s = storage.clone();
                let chunk = tokio::task::spawn_blocking(move || s.entries(from, to)).await;
                let chunk = match chunk {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                for (i, data) in chunk.into_iter().enumerate() {
                    let entry = LogEntry {
                        index: from + i as u64,
                        data,
                    };
                    if tx.send(Ok(entry)).await.is_err() {
                        return; // the client went away
                    }
                }
                from = to;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchCheckpointsStream = BoxStream<Checkpoint>;

    async fn watch_checkpoints(
        &self,
        request: Request<WatchCheckpointsRequest>,
    ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
        let mut published = self.latest.clone();
        let latest_epoch = published.borrow().checkpoint().epoch;
        let mut next = match request.get_ref().after_epoch {
            Some(after) if after > latest_epoch => {
                return Err(ApiError::OutOfRange(format!(
                    "after_epoch {after} is beyond the latest epoch {latest_epoch}"
                ))
                .into())
            }
            Some(after) => after + 1,
            None => latest_epoch,
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let storage = self.storage.clone();
        let mut cosigned = self.cosigned.subscribe();
        tokio::spawn(async move {
            // Set when a cosignature arrived for the newest checkpoint delivered: deliver it again.
            let mut again: Option<u64> = None;
            loop {
                if let Some(epoch) = again.take() {
                    let s = storage.clone();
                    // Best effort: the checkpoint was delivered once already.
                    if let Ok(Ok(Some(note))) =
                        tokio::task::spawn_blocking(move || s.checkpoint(epoch)).await
                    {
                        if tx.send(Ok(Checkpoint { note })).await.is_err() {
                            return;
                        }
                    }
                }
                let latest = published.borrow_and_update().checkpoint().epoch;
                // Deliver every epoch in order, from storage, even if several were signed
                // while this reader was slow.
                while next <= latest {
                    let s = storage.clone();
                    let epoch = next;
                    let note = match tokio::task::spawn_blocking(move || s.checkpoint(epoch)).await
                    {
                        Ok(Ok(Some(note))) => note,
                        Ok(Ok(None)) => {
                            let msg = format!("checkpoint of epoch {epoch} is missing");
                            let _ = tx.send(Err(Status::internal(msg))).await;
                            return;
                        }
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(ApiError::from(e).into())).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return;
                        }
                    };
                    if tx.send(Ok(Checkpoint { note })).await.is_err() {
                        return;
                    }
                    next += 1;
                }
                tokio::select! {
                    changed = published.changed() => if changed.is_err() { return },
                    got = cosigned.recv() => match got {
                        Ok(epoch) if epoch + 1 == next => again = Some(epoch),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
