//! A minimal directory client for tests: raw gRPC calls, every answer checked with the core
//! verification functions (independently of `kt-client`, so a bug there cannot hide one here).

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::directory::{
    verify_history, verify_lookup, verify_update_receipt, HistoryAnswer, KeyUpdate, Label,
    LabelState, LookupAnswer, Op, Role, UserSigner, VerifiedUpdate,
};
use kt_core::note::NoteVerifier;
use kt_proto::directory::answer_checkpoint;
use kt_proto::v1::directory_client::DirectoryClient;
use kt_proto::v1::{HistoryRequest, LookupRequest, UpdateRequest};
use tonic::transport::Channel;
use tonic::{Code, Request};

pub struct TestDirectory {
    pub grpc: DirectoryClient<Channel>,
    pub origin: String,
    pub verifier: NoteVerifier,
    pub token: String,
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
        }
    }

    pub fn open(&self, note: &[u8]) -> Checkpoint {
        SignedCheckpoint::open(note, &self.origin, &self.verifier)
            .expect("checkpoint verifies")
            .checkpoint()
            .clone()
    }

    /// Sends `update` to the method of its op and verifies the receipt.
    pub async fn submit(&mut self, update: &KeyUpdate) -> Result<VerifiedUpdate, tonic::Status> {
        let mut req = Request::new(UpdateRequest {
            entry: update.encode(),
        });
        if matches!(update.op(), Op::Register | Op::Recover) {
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
        let label = Label::from_identifier(identifier).unwrap();
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
        let label = Label::from_identifier(identifier).unwrap();
        verify_history(&cp, &label, &answer).expect("history verifies")
    }
}

/// The next update of a label whose current state is `state` (None: not registered yet).
pub fn next_update(
    identifier: &str,
    state: Option<&LabelState>,
    op: Op,
    old: Option<&UserSigner>,
    new: Option<&UserSigner>,
) -> KeyUpdate {
    let label = Label::from_identifier(identifier).unwrap();
    let (version, prev) = state.map_or((1, [0; 32]), |s| (s.version + 1, s.leaf_hash));
    let mut update = KeyUpdate::new(
        label,
        version,
        prev,
        op,
        new.map(|s| s.public()),
        1_700_000_000_000,
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
