//! The `keytrail.v1.Directory` and `keytrail.v1.Messages` gRPC services. Handlers decode, check
//! who may call, hand entries to the sequencer, and answer with proofs built from storage; the
//! directory's rules run in the sequencer (`crate::directory_epoch`), not here.

use std::sync::Arc;

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::directory::{HistoryAnswer, KeyUpdate, Label, LookupAnswer, Message, Op, ProvenEntry};
use kt_core::entry::MAX_ENTRY_LEN;
use kt_core::map;
use kt_core::merkle;
use kt_core::note::Note;
use kt_proto::directory::{history_response, lookup_response};
use kt_proto::v1::directory_server::Directory;
use kt_proto::v1::messages_server::Messages;
use kt_proto::v1::{
    HistoryRequest, HistoryResponse, LookupRequest, LookupResponse, ReadMessagesRequest,
    ReadMessagesResponse, SendMessageRequest, SendMessageResponse, UpdateRequest, UpdateResponse,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::sequencer::SequencerHandle;
use crate::service::blocking_read;
use crate::storage::Storage;

/// Most versions one history answer carries; a label with more is refused (no user rotates
/// that often, and the bound keeps answers small).
pub const MAX_HISTORY_VERSIONS: u64 = 10_000;
/// Most messages one read returns, and the default when the request says 0.
pub const MAX_MESSAGES_PER_READ: u32 = 1_000;
const DEFAULT_MESSAGES_PER_READ: u32 = 100;

/// The secret that authenticates the identity provider for `register` and `recover`.
///
/// Kept only as its SHA-256 digest, and compared in constant time, so neither the comparison's
/// timing nor a memory dump of the comparison reveals a prefix of the token.
#[derive(Clone)]
pub struct ProviderToken(Option<[u8; 32]>);

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "ProviderToken(<redacted>)",
            None => "ProviderToken(<none>)",
        })
    }
}

impl ProviderToken {
    pub fn new(token: Option<&str>) -> Self {
        ProviderToken(token.map(|t| Sha256::digest(t.as_bytes()).into()))
    }

    /// Checks the request's `authorization: Bearer <token>` metadata.
    fn check<T>(&self, request: &Request<T>, op: Op) -> Result<(), ApiError> {
        let Some(want) = &self.0 else {
            return Err(ApiError::PermissionDenied(format!(
                "{op} needs the identity provider, and this server has no provider token configured"
            )));
        };
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| {
                ApiError::Unauthenticated(format!(
                    "{op} needs the provider's token in `authorization: Bearer <token>`"
                ))
            })?
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("authorization header is not ASCII".into()))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::Unauthenticated("authorization header must be `Bearer <token>`".into())
        })?;
        let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if bool::from(got.ct_eq(want)) {
            Ok(())
        } else {
            Err(ApiError::Unauthenticated(format!(
                "{op} refused: wrong provider token"
            )))
        }
    }
}

/// Shared state of both services.
#[derive(Debug, Clone)]
pub struct DirectoryService {
    storage: Arc<Storage>,
    sequencer: SequencerHandle,
    latest: watch::Receiver<Arc<SignedCheckpoint>>,
    provider: ProviderToken,
}

impl DirectoryService {
    pub fn new(
        storage: Arc<Storage>,
        sequencer: SequencerHandle,
        latest: watch::Receiver<Arc<SignedCheckpoint>>,
        provider: ProviderToken,
    ) -> Self {
        DirectoryService {
            storage,
            sequencer,
            latest,
            provider,
        }
    }

    fn latest(&self) -> Arc<SignedCheckpoint> {
        self.latest.borrow().clone()
    }

    /// Sequences a KeyUpdate sent to the method for `op`, and answers with its receipt.
    async fn update(
        &self,
        request: Request<UpdateRequest>,
        op: Op,
    ) -> Result<Response<UpdateResponse>, Status> {
        if matches!(op, Op::Register | Op::Recover) {
            self.provider.check(&request, op)?;
        }
        let bytes = request.into_inner().entry;
        check_entry_size(&bytes)?;
        let update = KeyUpdate::decode(&bytes)
            .map_err(|e| ApiError::InvalidArgument(format!("entry: {e}")))?;
        if update.op() != op {
            return Err(ApiError::InvalidArgument(format!(
                "this method takes a {op} update, the entry is a {}",
                update.op()
            ))
            .into());
        }
        let label = *update.label();
        let appended = self.sequencer.append(bytes).await.map_err(ApiError::from)?;
        let cp = appended.checkpoint.clone();
        let answer = blocking_read(&self.storage, move |s| {
            lookup_at(s, cp.checkpoint(), &label)
        })
        .await?;
        if answer.entry.as_ref().map(|e| e.index) != Some(appended.index) {
            return Err(
                ApiError::Internal("the map does not name the entry just appended".into()).into(),
            );
        }
        let wire = lookup_response(appended.checkpoint.note().as_bytes().to_vec(), &answer);
        Ok(Response::new(UpdateResponse {
            checkpoint: wire.checkpoint,
            entry: wire.entry,
            map_proof: wire.map_proof,
        }))
    }
}

fn check_entry_size(bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "entry is {} bytes, the limit is {MAX_ENTRY_LEN}",
            bytes.len()
        )));
    }
    Ok(())
}

fn label_of(identifier: &str, field: &str) -> Result<Label, ApiError> {
    Label::from_identifier(identifier)
        .map_err(|e| ApiError::InvalidArgument(format!("{field}: {e}")))
}

/// The entry at `index` with its inclusion proof in the tree of `cp`.
fn proven_entry(s: &Storage, cp: &Checkpoint, index: u64) -> Result<ProvenEntry, ApiError> {
    let entry = s
        .entry(index)?
        .ok_or_else(|| ApiError::Internal(format!("entry {index} is missing")))?;
    Ok(ProvenEntry {
        index,
        entry,
        inclusion: merkle::inclusion_proof(s, index, cp.size)?,
    })
}

/// The lookup answer for `label` under `cp`: the map proof at `cp`'s epoch and, if present, the
/// entry its value names.
fn lookup_at(s: &Storage, cp: &Checkpoint, label: &Label) -> Result<LookupAnswer, ApiError> {
    let map_proof = map::prove(&s.map_at(cp.epoch), label)?;
    let entry = match map_proof.terminal() {
        map::Terminal::Leaf { label: l, value } if l == label => {
            Some(proven_entry(s, cp, value.index)?)
        }
        _ => None,
    };
    Ok(LookupAnswer { map_proof, entry })
}

/// The checkpoint note of `epoch`, parsed. The server's own storage is trusted here: its notes
/// were verified at start-up.
fn stored_checkpoint(s: &Storage, epoch: u64) -> Result<(Vec<u8>, Checkpoint), ApiError> {
    let note = s
        .checkpoint(epoch)?
        .ok_or_else(|| ApiError::Internal(format!("checkpoint of epoch {epoch} is missing")))?;
    let parsed = Note::parse(&note)
        .map_err(|e| ApiError::Internal(format!("stored checkpoint {epoch}: {e}")))?;
    let cp = Checkpoint::parse_body(parsed.text())
        .map_err(|e| ApiError::Internal(format!("stored checkpoint {epoch}: {e}")))?;
    Ok((note, cp))
}

#[tonic::async_trait]
impl Directory for DirectoryService {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        self.update(request, Op::Register).await
    }

    #[tracing::instrument(skip_all)]
    async fn rotate(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        self.update(request, Op::Rotate).await
    }

    #[tracing::instrument(skip_all)]
    async fn revoke(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        self.update(request, Op::Revoke).await
    }

    #[tracing::instrument(skip_all)]
    async fn recover(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        self.update(request, Op::Recover).await
    }

    // No `instrument` on reads: who looks up whom is not recorded anywhere (brief §9).
    async fn lookup(
        &self,
        request: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        let req = request.into_inner();
        let label = label_of(&req.identifier, "identifier")?;
        let latest = self.latest();
        let latest_epoch = latest.checkpoint().epoch;
        let (note, answer) = match req.epoch {
            Some(epoch) if epoch > latest_epoch => {
                return Err(ApiError::NotFound(format!(
                    "no checkpoint for epoch {epoch}: the latest epoch is {latest_epoch}"
                ))
                .into())
            }
            Some(epoch) if epoch != latest_epoch => {
                blocking_read(&self.storage, move |s| {
                    let (note, cp) = stored_checkpoint(s, epoch)?;
                    Ok((note, lookup_at(s, &cp, &label)?))
                })
                .await?
            }
            _ => {
                let cp = latest.clone();
                let answer = blocking_read(&self.storage, move |s| {
                    lookup_at(s, cp.checkpoint(), &label)
                })
                .await?;
                (latest.note().as_bytes().to_vec(), answer)
            }
        };
        Ok(Response::new(lookup_response(note, &answer)))
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let label = label_of(&request.get_ref().identifier, "identifier")?;
        let latest = self.latest();
        let cp = latest.clone();
        let answer = blocking_read(&self.storage, move |s| {
            let cp = cp.checkpoint();
            let map_proof = map::prove(&s.map_at(cp.epoch), &label)?;
            let mut versions = Vec::new();
            if let map::Terminal::Leaf { label: l, value } = map_proof.terminal() {
                if *l == label {
                    if value.version > MAX_HISTORY_VERSIONS {
                        return Err(ApiError::OutOfRange(format!(
                            "the label has {} versions, more than the {MAX_HISTORY_VERSIONS} one answer carries",
                            value.version
                        )));
                    }
                    for version in 1..=value.version {
                        let index = s.version_index(&label, version)?.ok_or_else(|| {
                            ApiError::Internal(format!("version {version} is not indexed"))
                        })?;
                        versions.push(proven_entry(s, cp, index)?);
                    }
                }
            }
            Ok(HistoryAnswer {
                versions,
                map_proof,
            })
        })
        .await?;
        Ok(Response::new(history_response(
            latest.note().as_bytes().to_vec(),
            &answer,
        )))
    }
}

#[tonic::async_trait]
impl Messages for DirectoryService {
    #[tracing::instrument(skip_all)]
    async fn send(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let bytes = request.into_inner().entry;
        check_entry_size(&bytes)?;
        Message::decode(&bytes).map_err(|e| ApiError::InvalidArgument(format!("entry: {e}")))?;
        let appended = self.sequencer.append(bytes).await.map_err(ApiError::from)?;
        let cp = appended.checkpoint.clone();
        let index = appended.index;
        let proven = blocking_read(&self.storage, move |s| {
            proven_entry(s, cp.checkpoint(), index)
        })
        .await?;
        Ok(Response::new(SendMessageResponse {
            checkpoint: Some(kt_proto::v1::Checkpoint {
                note: appended.checkpoint.note().as_bytes().to_vec(),
            }),
            entry: Some((&proven).into()),
        }))
    }

    async fn read(
        &self,
        request: Request<ReadMessagesRequest>,
    ) -> Result<Response<ReadMessagesResponse>, Status> {
        let req = request.into_inner();
        let author = label_of(&req.author, "author")?;
        if req.from_sequence == 0 {
            return Err(ApiError::InvalidArgument(
                "from_sequence must be at least 1: messages are numbered from 1".into(),
            )
            .into());
        }
        let limit = match req.limit {
            0 => DEFAULT_MESSAGES_PER_READ,
            n if n > MAX_MESSAGES_PER_READ => {
                return Err(ApiError::InvalidArgument(format!(
                    "limit {n} is above the maximum {MAX_MESSAGES_PER_READ}"
                ))
                .into())
            }
            n => n,
        };
        let latest = self.latest();
        let cp = latest.clone();
        let messages = blocking_read(&self.storage, move |s| {
            let cp = cp.checkpoint();
            let mut out = Vec::new();
            for (_, index) in s.message_indexes(&author, req.from_sequence, limit as usize)? {
                // Rows of an epoch being committed right now are not in `cp` yet.
                if index >= cp.size {
                    break;
                }
                out.push(proven_entry(s, cp, index)?);
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(ReadMessagesResponse {
            checkpoint: Some(kt_proto::v1::Checkpoint {
                note: latest.note().as_bytes().to_vec(),
            }),
            messages: messages.iter().map(Into::into).collect(),
        }))
    }
}
