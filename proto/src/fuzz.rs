//! Fuzzing entry point for every wire-to-core conversion (see `kt_core::fuzz` and
//! `docs/testing.md`): the bytes are decoded as each answer and request type a party receives,
//! and every conversion must return a value or a `WireError`, never panic.

use crate::directory::answer_checkpoint;
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
