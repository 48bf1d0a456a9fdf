//! The `keytrail.v1` wire types and their conversion to `kt-core` types.
//!
//! This is the only place where protobuf meets the protocol: every `TryFrom` here turns a wire
//! message into a core value or a [`WireError`] that names the offending field. Wire types never
//! reach verification code.

use kt_core::entry::{Entry, EntryError, Namespace, Record};
use kt_core::hash::{Hash, HASH_SIZE};
use thiserror::Error;

pub mod directory;
#[doc(hidden)]
pub mod fuzz;

/// Generated code for package `keytrail.v1`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("keytrail.v1");

    /// Encoded `FileDescriptorSet`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("keytrail_v1_descriptor");
}

/// A wire message that does not convert to a protocol value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}`: hash {position} is {len} bytes, want {HASH_SIZE}")]
    BadHashLength {
        field: &'static str,
        position: usize,
        len: usize,
    },
    #[error("field `{field}`: {source}")]
    InvalidMapProof {
        field: &'static str,
        #[source]
        source: kt_core::map::MapProofError,
    },
    #[error("field `{field}` is {got} bytes, want {want}")]
    BadLength {
        field: &'static str,
        want: usize,
        got: usize,
    },
    #[error("field `{field}`: {source}")]
    InvalidEntry {
        field: &'static str,
        #[source]
        source: EntryError,
    },
}

/// Decodes a repeated 32-byte hash field.
pub fn hashes_from_wire(field: &'static str, wire: &[Vec<u8>]) -> Result<Vec<Hash>, WireError> {
    wire.iter()
        .enumerate()
        .map(|(position, h)| {
            Hash::try_from(h.as_slice()).map_err(|_| WireError::BadHashLength {
                field,
                position,
                len: h.len(),
            })
        })
        .collect()
}

/// Encodes hashes for a repeated bytes field.
pub fn hashes_to_wire(hashes: &[Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.to_vec()).collect()
}

impl TryFrom<&v1::AppendRequest> for Entry {
    type Error = WireError;

    fn try_from(req: &v1::AppendRequest) -> Result<Self, Self::Error> {
        let namespace =
            Namespace::new(req.namespace.clone()).map_err(|source| WireError::InvalidEntry {
                field: "namespace",
                source,
            })?;
        let record = Record::new(namespace, req.payload.clone()).map_err(|source| {
            WireError::InvalidEntry {
                field: "payload",
                source,
            }
        })?;
        Ok(Entry::Record(record))
    }
}

impl From<&Record> for v1::AppendRequest {
    fn from(r: &Record) -> Self {
        v1::AppendRequest {
            namespace: r.namespace().as_str().to_owned(),
            payload: r.payload().to_vec(),
        }
    }
}

/// An append answer as the server sent it; the client verifies it before trusting any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReceipt {
    pub index: u64,
    pub entry: Vec<u8>,
    pub checkpoint_note: Vec<u8>,
    pub inclusion_proof: Vec<Hash>,
}

impl TryFrom<v1::AppendResponse> for AppendReceipt {
    type Error = WireError;

    fn try_from(resp: v1::AppendResponse) -> Result<Self, Self::Error> {
        let checkpoint = resp
            .checkpoint
            .ok_or(WireError::MissingField("checkpoint"))?;
        Ok(AppendReceipt {
            index: resp.index,
            entry: resp.entry,
            checkpoint_note: checkpoint.note,
            inclusion_proof: hashes_from_wire("inclusion_proof", &resp.inclusion_proof)?,
        })
    }
}

impl From<AppendReceipt> for v1::AppendResponse {
    fn from(r: AppendReceipt) -> Self {
        v1::AppendResponse {
            index: r.index,
            entry: r.entry,
            checkpoint: Some(v1::Checkpoint {
                note: r.checkpoint_note,
            }),
            inclusion_proof: hashes_to_wire(&r.inclusion_proof),
        }
    }
}

/// The signed note of a checkpoint answer.
pub fn checkpoint_note(resp: v1::GetCheckpointResponse) -> Result<Vec<u8>, WireError> {
    resp.checkpoint
        .map(|c| c.note)
        .ok_or(WireError::MissingField("checkpoint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_fields_must_be_32_bytes() {
        let ok = hashes_from_wire("h", &[vec![1; 32], vec![2; 32]]).unwrap();
        assert_eq!(ok, vec![[1; 32], [2; 32]]);
        assert_eq!(
            hashes_from_wire("h", &[vec![1; 32], vec![2; 31]]),
            Err(WireError::BadHashLength {
                field: "h",
                position: 1,
                len: 31
            })
        );
    }

    #[test]
    fn append_request_converts_with_field_errors() {
        let req = v1::AppendRequest {
            namespace: "chat".into(),
            payload: b"hello".to_vec(),
        };
        let entry = Entry::try_from(&req).unwrap();
        let Entry::Record(r) = &entry else {
            panic!("an append request converts to a record, got {entry:?}");
        };
        assert_eq!(v1::AppendRequest::from(r), req);

        let bad_ns = v1::AppendRequest {
            namespace: String::new(),
            payload: b"x".to_vec(),
        };
        assert!(matches!(
            Entry::try_from(&bad_ns),
            Err(WireError::InvalidEntry {
                field: "namespace",
                ..
            })
        ));
        let empty_payload = v1::AppendRequest {
            namespace: "chat".into(),
            payload: vec![],
        };
        assert!(matches!(
            Entry::try_from(&empty_payload),
            Err(WireError::InvalidEntry {
                field: "payload",
                ..
            })
        ));
    }

    #[test]
    fn append_response_without_checkpoint_is_rejected() {
        let resp = v1::AppendResponse {
            index: 3,
            entry: vec![1],
            checkpoint: None,
            inclusion_proof: vec![],
        };
        assert_eq!(
            AppendReceipt::try_from(resp),
            Err(WireError::MissingField("checkpoint"))
        );
    }
}
