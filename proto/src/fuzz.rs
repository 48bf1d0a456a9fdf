//! Fuzzing entry point for every wire-to-core conversion (see `kt_core::fuzz` and
//! `docs/testing.md`): the bytes are decoded as each answer and request type a party receives,
//! and every conversion must return a value or a `WireError`, never panic.

use crate::directory::{answer_checkpoint, vrf_proof_from_wire};
use crate::{checkpoint_note, v1, AppendReceipt};
use kt_core::directory::{HistoryAnswer, LookupAnswer, ProvenEntry};
use kt_core::entry::Entry;
use prost::Message;

pub fn answers(data: &[u8]) {
    if let Ok(m) = v1::AppendRequest::decode(data) {
        let _ = Entry::try_from(&m);
    }
    if let Ok(m) = v1::AppendResponse::decode(data) {
        let _ = AppendReceipt::try_from(m);
    }
    if let Ok(m) = v1::GetCheckpointResponse::decode(data) {
        let _ = checkpoint_note(m);
    }
    if let Ok(m) = v1::LookupResponse::decode(data) {
        let _ = answer_checkpoint(m.checkpoint.as_ref());
        let _ = LookupAnswer::try_from(&m);
        vrf_label(&m.vrf_proof);
    }
    if let Ok(m) = v1::UpdateResponse::decode(data) {
        let _ = LookupAnswer::try_from(&m);
    }
    if let Ok(m) = v1::HistoryResponse::decode(data) {
        let _ = HistoryAnswer::try_from(&m);
    }
    if let Ok(m) = v1::ProvenEntry::decode(data) {
        let _ = ProvenEntry::try_from(&m);
    }
}

/// An answer's `vrf_proof` through the wire check and RFC 9381 verification (point and scalar
/// decoding included) for a fixed key and identifier: a label or an error, never a panic.
fn vrf_label(proof: &[u8]) {
    if let Ok(proof) = vrf_proof_from_wire(proof) {
        let key = kt_core::vrf::VrfSecretKey::from_seed([7; 32]).public();
        let _ = kt_core::directory::verify_label(&key, "alice@example.com", &proof);
    }
}
