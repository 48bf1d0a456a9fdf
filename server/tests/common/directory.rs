//! A minimal directory client for tests: raw gRPC calls, every answer checked with the core
//! verification functions (independently of `kt-client`, so a bug there cannot hide one here).
//!
//! Labels are VRF outputs only the server can compute: [`TestDirectory::label`] looks an
//! identifier up and checks the answer's VRF proof with the server's VRF public key, as a real
//! client does, and remembers which identifier each label is for, so that [`TestDirectory::submit`]
//! can name the identifier in the register and recover requests that need it.

use std::collections::HashMap;

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::directory::{
    verify_history, verify_label, verify_lookup, verify_update_receipt, HistoryAnswer, KeyUpdate,
    Label, LabelState, LookupAnswer, Op, Role, UserSigner, VerifiedUpdate,
};
use kt_core::note::NoteVerifier;
use kt_core::vrf::VrfPublicKey;
use kt_proto::directory::{answer_checkpoint, vrf_proof_from_wire};
use kt_proto::v1::directory_client::DirectoryClient;
use kt_proto::v1::{HistoryRequest, LookupRequest, UpdateRequest};
use tonic::transport::Channel;
use tonic::{Code, Request};

#[derive(Clone)]
pub struct TestDirectory {
    pub grpc: DirectoryClient<Channel>,
    pub origin: String,
    pub verifier: NoteVerifier,
    pub token: String,
    /// The server's VRF public key, as published in `<data_dir>/vrf.pub`.
    pub vrf_key: VrfPublicKey,
    /// The identifier of every label a verified answer gave.
    names: HashMap<Label, String>,
}

/// The VRF public key a server publishes (`RunningServer::vrf_public_key`, 64 hex digits).
pub fn vrf_key_of(server: &ktd::RunningServer) -> VrfPublicKey {
    let bytes: [u8; 32] = hex::decode(&server.vrf_public_key)
        .unwrap()
        .try_into()
        .unwrap();
    VrfPublicKey::from_bytes(&bytes).unwrap()
}

/// A user's signer from a small number, cycling through the three key algorithms.
pub fn signer(n: u64) -> UserSigner {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&n.to_be_bytes());
    secret[31] = 1; // never zero, always below the secp256k1 group order
    match n % 3 {
        0 => UserSigner::ed25519_from_seed(secret),
        1 => UserSigner::secp256k1_ecdsa_from_secret(secret).unwrap(),
        _ => UserSigner::bip340_from_secret(secret).unwrap(),
    }
}

impl TestDirectory {
    pub async fn connect(server: &ktd::RunningServer, token: &str) -> TestDirectory {
        let grpc = DirectoryClient::connect(format!("http://{}", server.grpc_addr))
            .await
            .unwrap();
        TestDirectory {
            grpc,
            origin: server.origin.clone(),
            verifier: NoteVerifier::parse(&server.verifier_key).unwrap(),
            token: token.to_owned(),
            vrf_key: vrf_key_of(server),
            names: HashMap::new(),
        }
    }

    pub fn open(&self, note: &[u8]) -> Checkpoint {
        SignedCheckpoint::open(note, &self.origin, &self.verifier)
            .expect("checkpoint verifies")
            .checkpoint()
            .clone()
    }

    /// The label a VRF proof gives for `identifier`, remembered for [`Self::submit`].
    fn checked_label(&mut self, identifier: &str, proof: &[u8]) -> Label {
        let proof = vrf_proof_from_wire(proof).expect("the answer carries a VRF proof");
        let label = verify_label(&self.vrf_key, identifier, &proof).expect("VRF proof verifies");
        self.names.insert(label, identifier.to_owned());
        label
    }

    /// The label of `identifier`, from a verified lookup.
    pub async fn label(&mut self, identifier: &str) -> Label {
        let resp = self
            .grpc
            .lookup(LookupRequest {
                identifier: identifier.into(),
                epoch: None,
            })
            .await
            .unwrap()
            .into_inner();
        self.checked_label(identifier, &resp.vrf_proof)
    }

    /// Sends `update` to the method of its op and verifies the receipt. A register or recover
    /// names the identifier of the update's label (which an earlier verified answer gave).
    pub async fn submit(&mut self, update: &KeyUpdate) -> Result<VerifiedUpdate, tonic::Status> {
        let vouched = matches!(update.op(), Op::Register | Op::Recover);
        let identifier = if vouched {
            self.names
                .get(update.label())
                .expect("look the identifier up (TestDirectory::label) before registering it")
                .clone()
        } else {
            String::new()
        };
        let mut req = Request::new(UpdateRequest {
            entry: update.encode(),
            identifier: identifier.clone(),
        });
        if vouched {
            let value = format!("Bearer {}", self.token).parse().unwrap();
            req.metadata_mut().insert("authorization", value);
        }
        let resp = match update.op() {
            Op::Register => self.grpc.register(req).await,
            Op::Rotate => self.grpc.rotate(req).await,
            Op::Revoke => self.grpc.revoke(req).await,
            Op::Recover => self.grpc.recover(req).await,
        }?
        .into_inner();
        if vouched {
            assert_eq!(
                self.checked_label(&identifier, &resp.vrf_proof),
                *update.label(),
                "the receipt's VRF proof gives the entry's label"
            );
        }
        let cp = self.open(&answer_checkpoint(resp.checkpoint.as_ref()).unwrap());
        let answer = LookupAnswer::try_from(&resp).unwrap();
        Ok(verify_update_receipt(&cp, update, &answer).expect("receipt verifies"))
    }

    /// A verified lookup: the checkpoint and the label's latest update, if any.
    pub async fn lookup(
        &mut self,
        identifier: &str,
        epoch: Option<u64>,
    ) -> (Checkpoint, Option<VerifiedUpdate>) {
        let resp = self
            .grpc
            .lookup(LookupRequest {
                identifier: identifier.into(),
                epoch,
            })
            .await
            .unwrap()
            .into_inner();
        let cp = self.open(&answer_checkpoint(resp.checkpoint.as_ref()).unwrap());
        if let Some(epoch) = epoch {
            assert_eq!(cp.epoch, epoch, "answer is for the epoch asked");
        }
        let answer = LookupAnswer::try_from(&resp).unwrap();
        let label = self.checked_label(identifier, &resp.vrf_proof);
        let found = verify_lookup(&cp, &label, &answer).expect("lookup verifies");
        (cp, found)
    }

    /// A verified history: every version and the state they lead to.
    pub async fn history(&mut self, identifier: &str) -> (Vec<VerifiedUpdate>, Option<LabelState>) {
        let resp = self
            .grpc
            .history(HistoryRequest {
                identifier: identifier.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let cp = self.open(&answer_checkpoint(resp.checkpoint.as_ref()).unwrap());
        let answer = HistoryAnswer::try_from(&resp).unwrap();
        let label = self.checked_label(identifier, &resp.vrf_proof);
        verify_history(&cp, &label, &answer).expect("history verifies")
    }
}

/// The next update of `label` whose current state is `state` (None: not registered yet).
pub fn next_update(
    label: &Label,
    state: Option<&LabelState>,
    op: Op,
    old: Option<&UserSigner>,
    new: Option<&UserSigner>,
) -> KeyUpdate {
    let (version, prev) = state.map_or((1, [0; 32]), |s| (s.version + 1, s.leaf_hash));
    let mut update = KeyUpdate::new(
        *label,
        version,
        prev,
        op,
        new.map(|s| s.public()),
        // The log refuses a time far from its epoch's (`MAX_UPDATE_SKEW_MS`).
        ktd::sequencer::now_ms(),
    )
    .unwrap();
    if let Some(old) = old {
        update = update.sign(Role::PreviousKey, old).unwrap();
    }
    if let Some(new) = new {
        update = update.sign(Role::NewKey, new).unwrap();
    }
    update
}

/// State after a verified update, as the client tracks it.
pub fn state_after(v: &VerifiedUpdate) -> LabelState {
    LabelState {
        version: v.update.version(),
        leaf_hash: v.leaf_hash,
        index: v.index,
        key: v.update.key().cloned(),
        recovered: v.update.op() == Op::Recover,
    }
}

pub fn code(r: Result<VerifiedUpdate, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(s) => s.code(),
    }
}
