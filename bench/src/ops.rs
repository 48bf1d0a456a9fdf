//! One operation of each kind over raw `kt-proto` clients, and the checks of its answer.

use std::time::{Duration, Instant};

use kt_core::checkpoint::{Checkpoint, CheckpointOpener};
use kt_core::directory::{
    verify_history, verify_label, verify_lookup, HistoryAnswer, KeyUpdate, Label, LookupAnswer, Op,
    Role, UserKey, UserSigner,
};
use kt_core::hash::{leaf_hash, Hash};
use kt_core::note::NoteVerifier;
use kt_core::vrf::VrfPublicKey;
use kt_proto::directory::{answer_checkpoint, vrf_proof_from_wire};
use kt_proto::v1::directory_client::DirectoryClient;
use kt_proto::v1::log_client::LogClient;
use kt_proto::v1::{
    AppendBatchRequest, AppendRequest, HistoryRequest, HistoryResponse, LookupRequest,
    LookupResponse, UpdateRequest,
};
use ktd::sequencer::now_ms;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::config::{KeyAlg, Target};
use crate::error::BenchError;
use crate::identities::{alg_of, is_expected_key, signer_for};
use crate::report::{OpResult, Outcome};

/// Largest answer a client decodes (a long history; the server caps answers at 4 MiB).
const MAX_DECODE: usize = 8 << 20;

/// Opens one HTTP/2 connection to the server.
pub async fn connect(server: &str) -> Result<Channel, BenchError> {
    let err = |reason: String| BenchError::Connect {
        server: server.to_owned(),
        reason,
    };
    Endpoint::from_shared(server.to_owned())
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| err(e.to_string()))
}

/// What every client shares: how to call the server and what to trust.
#[derive(Debug, Clone)]
pub struct Api {
    log: LogClient<Channel>,
    dir: DirectoryClient<Channel>,
    /// Each client's own: a client opens each epoch's checkpoint once, as `kt-client` does.
    checkpoints: CheckpointOpener,
    vrf_key: VrfPublicKey,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

/// A registered identity as its owning client tracks it, for the next rotation.
#[derive(Debug, Clone)]
pub struct Owned {
    pub identifier: String,
    pub label: Label,
    pub version: u64,
    pub leaf_hash: Hash,
    /// The key of `version`, kept so that the next rotation does not derive it again (deriving
    /// an Ed25519 key is a scalar multiplication, about a seventh of a rotation's client work).
    pub signer: UserSigner,
}

fn verify_failure(what: impl Into<String>, latency: Duration) -> OpResult {
    OpResult::new(Outcome::Verify(what.into()), latency)
}

/// The sizes of a read answer: all of it, and all but its checkpoint (field 1).
fn answer_sizes(msg: &impl ReadAnswer) -> (u64, u64) {
    let total = msg.encoded_len() as u64;
    let cp = msg
        .checkpoint()
        .map_or(0, |c| prost::encoding::message::encoded_len(1, c)) as u64;
    (total, total - cp)
}

impl Api {
    pub fn new(channel: Channel, target: &Target, timeout: Duration) -> Result<Api, BenchError> {
        let verifier = NoteVerifier::parse(&target.log_key)
            .map_err(|e| BenchError::Config(format!("log key: {e}")))?;
        let bearer = target
            .provider_token
            .as_ref()
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| BenchError::Config("the provider token is not ASCII".into()))
            })
            .transpose()?;
        Ok(Api {
            log: LogClient::new(channel.clone()).max_decoding_message_size(MAX_DECODE),
            dir: DirectoryClient::new(channel).max_decoding_message_size(MAX_DECODE),
            checkpoints: CheckpointOpener::new(verifier.name().as_str().to_owned(), verifier),
            vrf_key: target.vrf_key.clone(),
            bearer,
            timeout,
        })
    }

    /// A copy for one more client: the same connection, its own checkpoint memory.
    pub fn for_client(&self) -> Api {
        let checkpoints = &self.checkpoints;
        Api {
            checkpoints: CheckpointOpener::new(
                checkpoints.origin(),
                checkpoints.verifier().clone(),
            ),
            ..self.clone()
        }
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.timeout);
        req
    }

    fn open(&self, checkpoint: Option<&kt_proto::v1::Checkpoint>) -> Result<Checkpoint, String> {
        let note = answer_checkpoint(checkpoint).map_err(|e| e.to_string())?;
        self.checkpoints
            .open(&note)
            .map(|s| s.checkpoint().clone())
            .map_err(|e| format!("checkpoint: {e}"))
    }

    fn label(&self, identifier: &str, proof: &[u8]) -> Result<Label, String> {
        let proof = vrf_proof_from_wire(proof).map_err(|e| e.to_string())?;
        verify_label(&self.vrf_key, identifier, &proof).map_err(|e| e.to_string())
    }

    /// A single-entry append. Latency: the `Append` call, which answers once the entry is
    /// durable and in a signed checkpoint.
    pub async fn append(&mut self, namespace: &str, payload: Vec<u8>) -> OpResult {
        let req = self.request(AppendRequest {
            namespace: namespace.to_owned(),
            payload,
        });
        let start = Instant::now();
        let resp = self.log.append(req).await;
        let latency = start.elapsed();
        match resp {
            Err(s) => OpResult::new(Outcome::Rpc(s.code()), latency),
            // The receipt's proof is not verified here (a client would): this measures the log.
            Ok(r) if r.get_ref().checkpoint.is_none() => {
                verify_failure("append answer without a checkpoint", latency)
            }
            Ok(_) => OpResult::new(Outcome::Ok, latency),
        }
    }

    /// One `AppendBatch` of records with these payloads. Latency: the call, which answers once
    /// every record is durable and in a signed checkpoint.
    pub async fn append_batch(&mut self, namespace: &str, payloads: Vec<Vec<u8>>) -> OpResult {
        let records = payloads.len() as u64;
        let req = self.request(AppendBatchRequest {
            records: payloads
                .into_iter()
                .map(|payload| AppendRequest {
                    namespace: namespace.to_owned(),
                    payload,
                })
                .collect(),
        });
        let start = Instant::now();
        let resp = self.log.append_batch(req).await;
        let latency = start.elapsed();
        let mut result = match resp {
            Err(s) => OpResult::new(Outcome::Rpc(s.code()), latency),
            Ok(r) if r.get_ref().checkpoint.is_none() => {
                verify_failure("batch answer without a checkpoint", latency)
            }
            Ok(_) => OpResult::new(Outcome::Ok, latency),
        };
        result.records = Some(records);
        result
    }

    /// The label of `identifier` from a lookup's VRF proof (always checked: a label is needed
    /// to build an update, and an unchecked one could be anyone's). Also the state of its latest
    /// version when the lookup found one (not verified: the next update would fail if wrong).
    async fn label_and_state(
        &mut self,
        identifier: &str,
    ) -> Result<(Label, Option<(u64, Hash, Option<KeyAlg>)>), Outcome> {
        let resp = self
            .dir
            .lookup(self.request(LookupRequest {
                identifier: identifier.to_owned(),
                epoch: None,
            }))
            .await
            .map_err(|s| Outcome::Rpc(s.code()))?
            .into_inner();
        let label = self
            .label(identifier, &resp.vrf_proof)
            .map_err(|e| Outcome::Verify(format!("label of {identifier}: {e}")))?;
        let state = match &resp.entry {
            None => None,
            Some(e) => {
                let update = KeyUpdate::decode(&e.entry)
                    .map_err(|err| Outcome::Verify(format!("{identifier}: entry: {err}")))?;
                Some((
                    update.version(),
                    leaf_hash(&e.entry),
                    update.key().and_then(alg_of),
                ))
            }
        };
        Ok((label, state))
    }

    /// A registration of `identifier` with the derived key of version 1: first a lookup for its
    /// VRF label (not timed), then `Register` (timed). On success, the state for rotations.
    pub async fn register(&mut self, identifier: &str, alg: KeyAlg) -> (OpResult, Option<Owned>) {
        let label = match self.label_and_state(identifier).await {
            Ok((label, None)) => label,
            Ok((_, Some(_))) => {
                let why = format!(
                    "{identifier} is already registered (a repeated --prefix? use --skip-setup)"
                );
                return (verify_failure(why, Duration::ZERO), None);
            }
            Err(outcome) => return (OpResult::new(outcome, Duration::ZERO), None),
        };
        let signer = signer_for(identifier, 1, alg);
        let update = KeyUpdate::new(
            label,
            1,
            [0; 32],
            Op::Register,
            Some(signer.public()),
            now_ms(),
        )
        .and_then(|u| u.sign(Role::NewKey, &signer))
        .expect("a version-1 update with one signature is well-formed");
        let mut req = self.request(UpdateRequest {
            entry: update.encode(),
            identifier: identifier.to_owned(),
        });
        if let Some(bearer) = &self.bearer {
            req.metadata_mut().insert("authorization", bearer.clone());
        }
        let start = Instant::now();
        let resp = self.dir.register(req).await;
        let latency = start.elapsed();
        let owned = Owned {
            identifier: identifier.to_owned(),
            label,
            version: 1,
            leaf_hash: update.leaf_hash(),
            signer,
        };
        self.receipt(resp, &update, latency, owned)
    }

    /// Checks that a receipt names the submitted entry (its proofs are not verified: this
    /// measures the server, and lookups measure verification).
    fn receipt(
        &self,
        resp: Result<tonic::Response<kt_proto::v1::UpdateResponse>, tonic::Status>,
        update: &KeyUpdate,
        latency: Duration,
        owned: Owned,
    ) -> (OpResult, Option<Owned>) {
        match resp {
            Err(s) => (OpResult::new(Outcome::Rpc(s.code()), latency), None),
            Ok(r) => match &r.get_ref().entry {
                Some(e) if e.entry == update.encode() => {
                    (OpResult::new(Outcome::Ok, latency), Some(owned))
                }
                _ => (
                    verify_failure("the receipt is for another entry", latency),
                    None,
                ),
            },
        }
    }

    /// The state of a registered identity, from a lookup (not timed): after an earlier run
    /// (`--skip-setup`), or after a failed rotation whose fate is unknown.
    pub async fn resync(&mut self, identifier: &str) -> Result<Owned, Outcome> {
        match self.label_and_state(identifier).await? {
            (label, Some((version, leaf_hash, Some(alg)))) => Ok(Owned {
                identifier: identifier.to_owned(),
                label,
                version,
                leaf_hash,
                signer: signer_for(identifier, version, alg),
            }),
            (_, Some(_)) => Err(Outcome::Verify(format!("{identifier} has no key (revoked)"))),
            (_, None) => Err(Outcome::Verify(format!(
                "{identifier} is not registered (--skip-setup with another --prefix or fewer --users?)"
            ))),
        }
    }

    /// A rotation to the derived key of the next version in `alg`, signed by the current key and
    /// the new one. Latency: the `Rotate` call.
    pub async fn rotate(&mut self, user: &Owned, alg: KeyAlg) -> (OpResult, Option<Owned>) {
        let old = &user.signer;
        let version = user.version + 1;
        let new = signer_for(&user.identifier, version, alg);
        let update = KeyUpdate::new(
            user.label,
            version,
            user.leaf_hash,
            Op::Rotate,
            Some(new.public()),
            now_ms(),
        )
        .and_then(|u| u.sign(Role::PreviousKey, old))
        .and_then(|u| u.sign(Role::NewKey, &new))
        .expect("a rotation with two signatures is well-formed");
        // No identifier: the previous key's signature names the label, so the server need not
        // compute a VRF label for a rotation.
        let req = self.request(UpdateRequest {
            entry: update.encode(),
            identifier: String::new(),
        });
        let start = Instant::now();
        let resp = self.dir.rotate(req).await;
        let latency = start.elapsed();
        let owned = Owned {
            identifier: user.identifier.clone(),
            label: user.label,
            version,
            leaf_hash: update.leaf_hash(),
            signer: new,
        };
        self.receipt(resp, &update, latency, owned)
    }

    /// A lookup of `identifier`, which should be registered (`member`) or not. Latency: the
    /// `Lookup` call; verification (checkpoint signature, VRF label, map proof, inclusion proof,
    /// and the key being the identity's) is timed apart.
    pub async fn lookup(&mut self, identifier: &str, member: bool, verify: bool) -> OpResult {
        let req = self.request(LookupRequest {
            identifier: identifier.to_owned(),
            epoch: None,
        });
        let start = Instant::now();
        let resp = self.dir.lookup(req).await;
        let check = verify.then_some(Api::verify_lookup as Check<LookupResponse>);
        self.read_result(resp, start.elapsed(), identifier, member, check)
    }

    /// A history of `identifier`; like [`Api::lookup`], with every version verified in order
    /// (inclusion, `prev` chain, signatures by the directory's rules).
    pub async fn history(&mut self, identifier: &str, member: bool, verify: bool) -> OpResult {
        let req = self.request(HistoryRequest {
            identifier: identifier.to_owned(),
        });
        let start = Instant::now();
        let resp = self.dir.history(req).await;
        let check = verify.then_some(Api::verify_history as Check<HistoryResponse>);
        self.read_result(resp, start.elapsed(), identifier, member, check)
    }

    /// The result of a read call that took `latency`: the answer's sizes, whether it found the
    /// identity and, when `check` is given, how long checking it took and whether it passed.
    fn read_result<R: ReadAnswer>(
        &self,
        resp: Result<tonic::Response<R>, tonic::Status>,
        latency: Duration,
        identifier: &str,
        member: bool,
        check: Option<Check<R>>,
    ) -> OpResult {
        let resp = match resp {
            Ok(r) => r.into_inner(),
            Err(s) => return OpResult::new(Outcome::Rpc(s.code()), latency),
        };
        let mut result = OpResult::new(Outcome::Ok, latency);
        result.answer_bytes = Some(answer_sizes(&resp));
        result.found = Some(resp.found());
        if let Some(check) = check {
            let started = Instant::now();
            let checked = check(self, identifier, &resp);
            result.verify = Some(started.elapsed());
            if let Err(why) = checked.and_then(|found| expect(identifier, member, found)) {
                result.outcome = Outcome::Verify(why);
            }
        }
        result
    }

    /// The answer's checkpoint, opened, and the identity's label from its VRF proof.
    fn checkpoint_and_label(
        &self,
        checkpoint: Option<&kt_proto::v1::Checkpoint>,
        identifier: &str,
        vrf_proof: &[u8],
    ) -> Result<(Checkpoint, Label), String> {
        Ok((self.open(checkpoint)?, self.label(identifier, vrf_proof)?))
    }

    /// What a client checks of a lookup answer; the key and version it proves, if any.
    fn verify_lookup(&self, identifier: &str, resp: &LookupResponse) -> Result<Found, String> {
        let (cp, label) =
            self.checkpoint_and_label(resp.checkpoint.as_ref(), identifier, &resp.vrf_proof)?;
        let answer = LookupAnswer::try_from(resp).map_err(|e| e.to_string())?;
        let found = verify_lookup(&cp, &label, &answer).map_err(|e| e.to_string())?;
        found
            .map(|v| key_of(v.update.version(), v.update.key().cloned()))
            .transpose()
    }

    fn verify_history(&self, identifier: &str, resp: &HistoryResponse) -> Result<Found, String> {
        let (cp, label) =
            self.checkpoint_and_label(resp.checkpoint.as_ref(), identifier, &resp.vrf_proof)?;
        let answer = HistoryAnswer::try_from(resp).map_err(|e| e.to_string())?;
        let (versions, state) = verify_history(&cp, &label, &answer).map_err(|e| e.to_string())?;
        // Every version's key must be the identity's derived key of that version.
        for v in &versions {
            if let Some(key) = v.update.key() {
                if !is_expected_key(identifier, v.update.version(), key) {
                    return Err(format!(
                        "{identifier}: version {} has a key this run did not make",
                        v.update.version()
                    ));
                }
            }
        }
        state.map(|s| key_of(s.version, s.key)).transpose()
    }
}

/// The latest version an answer proves, and its key.
type Found = Option<(u64, UserKey)>;

/// A client's check of one kind of read answer.
type Check<R> = fn(&Api, &str, &R) -> Result<Found, String>;

fn key_of(version: u64, key: Option<UserKey>) -> Result<(u64, UserKey), String> {
    Ok((version, key.ok_or("the latest version has no key")?))
}

/// What the load generator reads off a lookup or history answer without verifying it.
trait ReadAnswer: prost::Message {
    /// Field 1 of the answer.
    fn checkpoint(&self) -> Option<&kt_proto::v1::Checkpoint>;
    fn found(&self) -> bool;
}

impl ReadAnswer for LookupResponse {
    fn checkpoint(&self) -> Option<&kt_proto::v1::Checkpoint> {
        self.checkpoint.as_ref()
    }
    fn found(&self) -> bool {
        self.entry.is_some()
    }
}

impl ReadAnswer for HistoryResponse {
    fn checkpoint(&self) -> Option<&kt_proto::v1::Checkpoint> {
        self.checkpoint.as_ref()
    }
    fn found(&self) -> bool {
        !self.versions.is_empty()
    }
}

/// A verified answer must show a registered identity with its derived key of the version shown,
/// and an unregistered one as absent.
fn expect(identifier: &str, member: bool, found: Found) -> Result<(), String> {
    match (member, found) {
        (true, None) => Err(format!(
            "{identifier} is registered but the answer proves it absent"
        )),
        (false, Some(_)) => Err(format!(
            "{identifier} was never registered but the answer shows a key"
        )),
        (true, Some((version, key))) if !is_expected_key(identifier, version, &key) => Err(
            format!("{identifier}: version {version}'s key is not the one this run registered"),
        ),
        _ => Ok(()),
    }
}
