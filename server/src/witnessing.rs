//! The `keytrail.v1.Witnessing` service: configured witnesses submit cosignatures
//! (c2sp.org/tlog-cosignature v1) over checkpoints this log signed.
//!
//! A cosignature is accepted only from a configured witness key (else `PERMISSION_DENIED`), only
//! over the stored checkpoint of the epoch it names (else `INVALID_ARGUMENT`; an epoch not signed
//! yet is `NOT_FOUND`). It is stored synced under (epoch, key id), replacing that witness's
//! earlier line for the epoch, and from then on every answer carrying that checkpoint carries the
//! line: stored checkpoints through [`Storage::checkpoint`], the latest through the published
//! checkpoint, which is replaced here. Watchers are told through [`Cosigned`].

use std::sync::{Arc, Weak};

use kt_core::checkpoint::SignedCheckpoint;
use kt_core::cosignature::{Cosignature, CosignatureVerifier};
use kt_core::note::{Note, NoteVerifier};
use kt_proto::v1::witnessing_server::Witnessing;
use kt_proto::v1::{AddCosignatureRequest, AddCosignatureResponse};
use tokio::sync::{broadcast, watch, Mutex};
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::service::on_blocking_pool;
use crate::storage::Storage;

/// Epochs that just gained a cosignature, for `WatchCheckpoints` to deliver again.
pub type Cosigned = broadcast::Sender<u64>;

/// The witnessing service's state.
#[derive(Debug, Clone)]
pub struct WitnessingService {
    storage: Arc<Storage>,
    witnesses: Arc<Vec<CosignatureVerifier>>,
    origin: String,
    log_key: NoteVerifier,
    published: Weak<watch::Sender<Arc<SignedCheckpoint>>>,
    cosigned: Cosigned,
    /// One submission at a time: store, re-read and publish must not interleave, or an older
    /// read could replace a newer published note.
    lock: Arc<Mutex<()>>,
}

impl WitnessingService {
    pub fn new(
        storage: Arc<Storage>,
        witnesses: Vec<CosignatureVerifier>,
        log_key: NoteVerifier,
        published: Weak<watch::Sender<Arc<SignedCheckpoint>>>,
        cosigned: Cosigned,
    ) -> Self {
        WitnessingService {
            storage,
            witnesses: Arc::new(witnesses),
            origin: log_key.name().to_string(),
            log_key,
            published,
            cosigned,
            lock: Arc::new(Mutex::new(())),
        }
    }

    async fn add(&self, epoch: u64, line: &str) -> Result<(), ApiError> {
        let cosig = Cosignature::parse_line(line)
            .map_err(|e| ApiError::InvalidArgument(format!("cosignature: {e}")))?;
        let witness = self
            .witnesses
            .iter()
            .find(|w| w.name() == cosig.name() && w.key_id() == cosig.key_id())
            .ok_or_else(|| {
                ApiError::PermissionDenied(format!(
                    "{}+{:08x} is not a witness of this log",
                    cosig.name(),
                    cosig.key_id()
                ))
            })?
            .clone();
        let _guard = self.lock.lock().await;
        let (origin, log_key) = (self.origin.clone(), self.log_key.clone());
        let published = on_blocking_pool(&self.storage, move |s| {
            let note = s
                .log_checkpoint(epoch)?
                .ok_or_else(|| ApiError::NotFound(format!("no checkpoint for epoch {epoch}")))?;
            let parsed = Note::parse(&note)
                .map_err(|e| ApiError::Internal(format!("stored checkpoint {epoch}: {e}")))?;
            witness.verify(parsed.text(), &cosig).map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "cosignature does not verify over the checkpoint of epoch {epoch}: {e}"
                ))
            })?;
            s.put_cosignature(epoch, cosig.key_id(), &cosig.to_line())?;
            let full = s.checkpoint(epoch)?.expect("read just above");
            SignedCheckpoint::open(&full, &origin, &log_key)
                .map_err(|e| ApiError::Internal(format!("cosigned checkpoint {epoch}: {e}")))
        })
        .await?;
        tracing::debug!(epoch, "cosignature added");
        let published = Arc::new(published);
        if let Some(sender) = self.published.upgrade() {
            sender.send_if_modified(|current| {
                let same = current.checkpoint() == published.checkpoint();
                if same {
                    *current = published.clone();
                }
                same
            });
        }
        let _ = self.cosigned.send(epoch);
        Ok(())
    }
}

#[tonic::async_trait]
impl Witnessing for WitnessingService {
    #[tracing::instrument(skip_all)]
    async fn add_cosignature(
        &self,
        request: Request<AddCosignatureRequest>,
    ) -> Result<Response<AddCosignatureResponse>, Status> {
        let req = request.into_inner();
        self.add(req.epoch, &req.cosignature).await?;
        Ok(Response::new(AddCosignatureResponse {}))
    }
}
