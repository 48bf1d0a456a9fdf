//! The `keytrail.v1.Directory` and `keytrail.v1.Messages` gRPC services. Handlers decode, check
//! who may call, hand entries to the sequencer, and answer with proofs built from storage; the
//! directory's rules run in the sequencer (`crate::directory_epoch`), not here.
//!
//! Identifiers arrive in requests and become labels through the server's VRF key
//! (`crate::vrf_labels`); every answer about an identifier carries its VRF proof. Nothing here
//! logs or stores an identifier, and reads record nothing at all: the handlers of lookups,
//! histories and message reads are not instrumented, and no counter is kept per identifier or
//! label (`docs/threat-model.md`).

use std::sync::Arc;

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::directory::{
    HistoryAnswer, KeyUpdate, Label, LookupAnswer, Message, Op, ProvenEntry, ReadAnswer, Role,
    VerifiedSignatures,
};
use kt_core::entry::MAX_ENTRY_LEN;
use kt_core::map;
use kt_core::merkle;
use kt_core::note::Note;
use kt_proto::directory::{history_response, lookup_response, read_response};
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
use crate::storage::Storage;
use crate::vrf_labels::{LabelError, LabelProof, VrfLabels};

/// Most versions one history answer carries; a label with more is refused (no user rotates
/// that often, and the bound keeps answers small).
pub const MAX_HISTORY_VERSIONS: u64 = 3_000;
/// Messages a read returns stop once their entries pass this many bytes (the rest come with the
/// next read), so an answer of large messages stays within `MAX_GRPC_ANSWER`.
pub const MAX_READ_BYTES: usize = 2 * 1024 * 1024;
/// Most messages one read returns, and the default when the request says 0.
pub const MAX_MESSAGES_PER_READ: u32 = 1_000;
const DEFAULT_MESSAGES_PER_READ: u32 = 100;

/// What authenticates the identity provider for `register` and `recover`: the one place that
/// decides whether a caller is the provider.
///
/// The bearer token is kept only as its SHA-256 digest, and compared in constant time, so neither
/// the comparison's timing nor a memory dump of the comparison reveals a prefix of the token.
/// With the provider's mTLS (`crate::tls`), a verified client certificate also identifies it.
#[derive(Clone)]
pub struct ProviderToken {
    digest: Option<[u8; 32]>,
    client_certs: bool,
}

impl std::fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.digest {
            Some(_) => "ProviderToken(<redacted>",
            None => "ProviderToken(<none>",
        })?;
        f.write_str(if self.client_certs {
            ", client certificates)"
        } else {
            ")"
        })
    }
}

impl ProviderToken {
    pub fn new(token: Option<&str>) -> Self {
        ProviderToken {
            digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            client_certs: false,
        }
    }

    /// With `accept` (set only when the gRPC listener verifies client certificates against the
    /// provider CA), a caller whose TLS connection carries a client certificate is the provider:
    /// the handshake has already checked that it chains to that CA, and a certificate that does
    /// not never gets this far.
    pub fn with_client_certs(mut self, accept: bool) -> Self {
        self.client_certs = accept;
        self
    }

    /// Checks the caller: a verified provider certificate (see [`Self::with_client_certs`]), or
    /// the request's `authorization: Bearer <token>` metadata.
    fn check<T>(&self, request: &Request<T>, op: Op) -> Result<(), ApiError> {
        if self.client_certs && request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
            return Ok(());
        }
        let Some(want) = &self.digest else {
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
    vrf: Arc<VrfLabels>,
}

impl DirectoryService {
    pub fn new(
        storage: Arc<Storage>,
        sequencer: SequencerHandle,
        latest: watch::Receiver<Arc<SignedCheckpoint>>,
        provider: ProviderToken,
        vrf: Arc<VrfLabels>,
    ) -> Self {
        DirectoryService {
            storage,
            sequencer,
            latest,
            provider,
            vrf,
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
        let vouched = matches!(op, Op::Register | Op::Recover);
        if vouched {
            self.provider.check(&request, op)?;
        }
        let UpdateRequest {
            entry: bytes,
            identifier,
        } = request.into_inner();
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
        // The provider vouches for an identifier, so a register or recover must name it and the
        // entry must be for its label: the provider cannot be made to vouch for a label it did
        // not mean. A rotate or revoke is authorized by the label's current key; an identifier
        // given with it is checked the same way.
        if vouched && identifier.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "{op} needs the `identifier` the entry is for"
            ))
            .into());
        }
        let named = if identifier.is_empty() {
            None
        } else {
            let proof = label_of(&self.vrf, &self.storage, &identifier, "identifier")?;
            if proof.label != label {
                return Err(ApiError::InvalidArgument(
                    "the entry's label is not the VRF label of `identifier` (look the identifier \
                     up for its label)"
                        .into(),
                )
                .into());
            }
            Some(proof)
        };
        // Signatures are verified here, on whichever core runs this request, so that the one
        // sequencer thread only applies the rules: it does not verify again a signature that
        // was verified here with the same key, and verifies any other (a key that changed in
        // between) itself.
        let verified = verify_ahead(&self.storage, &update)?;
        let mut appended = self
            .sequencer
            .append_verified(bytes.clone(), verified)
            .await
            .map_err(ApiError::from)?;
        // The sequencer answered with the entry's inclusion proof: only the map proof is read.
        let appended_entry = ProvenEntry {
            index: appended.index,
            inclusion: appended
                .take_inclusion_proof(&self.storage)
                .map_err(ApiError::from)?,
            entry: bytes,
        };
        // The label is in the directory now: its proof is kept from here on.
        if let Some(proof) = &named {
            self.vrf
                .remember(&self.storage, &identifier, proof)
                .map_err(ApiError::from)?;
        }
        let s = &self.storage;
        let answer = answer_at(
            s,
            appended.checkpoint.checkpoint(),
            &label,
            Some(appended_entry),
        )?;
        if answer.entry.as_ref().map(|e| e.index) != Some(appended.index) {
            return Err(
                ApiError::Internal("the map does not name the entry just appended".into()).into(),
            );
        }
        Ok(Response::new(UpdateResponse {
            checkpoint: Some(kt_proto::v1::Checkpoint {
                note: appended.checkpoint.note().as_bytes().to_vec(),
            }),
            entry: answer.entry.as_ref().map(Into::into),
            map_proof: answer.map_proof.encode(),
            vrf_proof: named.map(|p| p.proof.to_vec()).unwrap_or_default(),
        }))
    }
}

/// The signatures of `update` that verify: the new key's, and the previous key's by the label's
/// key as last committed. The sequencer decides with the state it has then, so a key changed in
/// between only means that it verifies that signature itself.
fn verify_ahead(s: &Storage, update: &KeyUpdate) -> Result<VerifiedSignatures, ApiError> {
    let mut verified = VerifiedSignatures::of_new_key(update);
    if let Some(sig) = update.signature(Role::PreviousKey) {
        if let Some(key) = s.label_state(update.label())?.and_then(|state| state.key) {
            verified.verify(&key, update.signed_bytes(), sig);
        }
    }
    Ok(verified)
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

/// The label and VRF proof of `identifier` (a request's `field`).
fn label_of(
    vrf: &VrfLabels,
    s: &Storage,
    identifier: &str,
    field: &str,
) -> Result<LabelProof, ApiError> {
    vrf.label(s, identifier).map_err(|e| match e {
        LabelError::Identifier(e) => ApiError::InvalidArgument(format!("{field}: {e}")),
        LabelError::Storage(e) => e.into(),
    })
}

/// Keeps the proof of an identifier a read found registered without a stored proof (the row
/// was lost, or the label was registered without naming it). Identifiers that are not in the
/// directory leave nothing behind.
fn keep_if_registered(
    vrf: &VrfLabels,
    s: &Storage,
    identifier: &str,
    proof: &LabelProof,
) -> Result<(), ApiError> {
    if !proof.stored && s.label_state(&proof.label)?.is_some() {
        vrf.remember(s, identifier, proof)?;
    }
    Ok(())
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
    answer_at(s, cp, label, None)
}

/// [`lookup_at`], with the entry and inclusion proof in `known` used instead of storage's when
/// the map names that entry.
fn answer_at(
    s: &Storage,
    cp: &Checkpoint,
    label: &Label,
    known: Option<ProvenEntry>,
) -> Result<LookupAnswer, ApiError> {
    let map_proof = map::prove(&s.map_at(cp.epoch), label)?;
    let entry = match map_proof.terminal() {
        map::Terminal::Leaf { label: l, value } if l == label => match known {
            Some(known) if known.index == value.index => Some(known),
            _ => Some(proven_entry(s, cp, value.index)?),
        },
        _ => None,
    };
    Ok(LookupAnswer { map_proof, entry })
}

/// The history answer for `label` under `cp`: the map proof at `cp`'s epoch and every version
/// up to the one its value names.
fn history_at(s: &Storage, cp: &Checkpoint, label: &Label) -> Result<HistoryAnswer, ApiError> {
    let map_proof = map::prove(&s.map_at(cp.epoch), label)?;
    let mut versions = Vec::new();
    if let map::Terminal::Leaf { label: l, value } = map_proof.terminal() {
        if l == label {
            if value.version > MAX_HISTORY_VERSIONS {
                return Err(ApiError::OutOfRange(format!(
                    "the label has {} versions, more than the {MAX_HISTORY_VERSIONS} one answer carries",
                    value.version
                )));
            }
            for version in 1..=value.version {
                let index = s.version_index(label, version)?.ok_or_else(|| {
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
        let LookupRequest { identifier, epoch } = request.into_inner();
        let latest = self.latest();
        let latest_epoch = latest.checkpoint().epoch;
        if let Some(epoch) = epoch.filter(|e| *e > latest_epoch) {
            return Err(ApiError::NotFound(format!(
                "no checkpoint for epoch {epoch}: the latest epoch is {latest_epoch}"
            ))
            .into());
        }
        let (s, vrf) = (&*self.storage, &self.vrf);
        let proof = label_of(vrf, s, &identifier, "identifier")?;
        keep_if_registered(vrf, s, &identifier, &proof)?;
        let (note, answer) = match epoch {
            Some(epoch) if epoch != latest_epoch => {
                let (note, cp) = stored_checkpoint(s, epoch)?;
                (note, lookup_at(s, &cp, &proof.label)?)
            }
            _ => (
                latest.note().as_bytes().to_vec(),
                lookup_at(s, latest.checkpoint(), &proof.label)?,
            ),
        };
        Ok(Response::new(lookup_response(note, &proof.proof, &answer)))
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let identifier = request.into_inner().identifier;
        let latest = self.latest();
        let (s, vrf) = (&*self.storage, &self.vrf);
        let proof = label_of(vrf, s, &identifier, "identifier")?;
        keep_if_registered(vrf, s, &identifier, &proof)?;
        let answer = history_at(s, latest.checkpoint(), &proof.label)?;
        Ok(Response::new(history_response(
            latest.note().as_bytes().to_vec(),
            &proof.proof,
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
        let mut appended = self
            .sequencer
            .append(bytes.clone())
            .await
            .map_err(ApiError::from)?;
        let proven = ProvenEntry {
            index: appended.index,
            inclusion: appended
                .take_inclusion_proof(&self.storage)
                .map_err(ApiError::from)?,
            entry: bytes,
        };
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
        let (s, vrf) = (&*self.storage, &self.vrf);
        let proof = label_of(vrf, s, &req.author, "author")?;
        keep_if_registered(vrf, s, &req.author, &proof)?;
        let author = proof.label;
        let cp = latest.checkpoint();
        // The author's key history and map proof, at the same checkpoint as the messages: the
        // map's message count is exactly the author's messages in `cp`'s log.
        let HistoryAnswer {
            versions,
            map_proof,
        } = history_at(s, cp, &author)?;
        let mut messages: Vec<ProvenEntry> = Vec::new();
        let mut bytes = versions
            .iter()
            .map(|v| v.entry.len() + 32 * v.inclusion.len())
            .sum::<usize>();
        let indexes = s
            .message_indexes(&author, req.from_sequence, limit as usize)
            .map_err(ApiError::from)?;
        for (_, index) in indexes {
            // Rows of an epoch being committed right now are not in `cp` yet. At least one
            // message goes out if there is one: an empty answer says there is none.
            if index >= cp.size || (bytes >= MAX_READ_BYTES && !messages.is_empty()) {
                break;
            }
            let proven = proven_entry(s, cp, index)?;
            bytes += proven.entry.len() + 32 * proven.inclusion.len();
            messages.push(proven);
        }
        let answer = ReadAnswer {
            messages,
            versions,
            map_proof,
        };
        Ok(Response::new(read_response(
            latest.note().as_bytes().to_vec(),
            &proof.proof,
            &answer,
        )))
    }
}
