//! Directory and message answers: wire ↔ `kt_core::directory` answer types.
//!
//! Every answer's checkpoint stays a signed note (bytes) here; the client opens it with its trusted
//! log key before any proof is looked at.

use crate::{hashes_from_wire, hashes_to_wire, v1, WireError};
use kt_core::directory::{HistoryAnswer, LookupAnswer, ProvenEntry, ReadAnswer};
use kt_core::map::MapProof;
use kt_core::vrf::PROOF_LEN;

/// The signed note of an answer's required `checkpoint` field.
pub fn answer_checkpoint(checkpoint: Option<&v1::Checkpoint>) -> Result<Vec<u8>, WireError> {
    checkpoint
        .map(|c| c.note.clone())
        .ok_or(WireError::MissingField("checkpoint"))
}

/// The `vrf_proof` field of an answer: exactly 80 bytes (RFC 9381 `Gamma || c || s`). Whether it
/// is a proof for the identifier asked about is `kt_core::directory::verify_label`'s question.
pub fn vrf_proof_from_wire(bytes: &[u8]) -> Result<[u8; PROOF_LEN], WireError> {
    if bytes.is_empty() {
        return Err(WireError::MissingField("vrf_proof"));
    }
    bytes.try_into().map_err(|_| WireError::BadLength {
        field: "vrf_proof",
        want: PROOF_LEN,
        got: bytes.len(),
    })
}

fn map_proof_from_wire(bytes: &[u8]) -> Result<MapProof, WireError> {
    MapProof::decode(bytes).map_err(|source| WireError::InvalidMapProof {
        field: "map_proof",
        source,
    })
}

impl TryFrom<&v1::ProvenEntry> for ProvenEntry {
    type Error = WireError;

    fn try_from(wire: &v1::ProvenEntry) -> Result<Self, Self::Error> {
        Ok(ProvenEntry {
            index: wire.index,
            entry: wire.entry.clone(),
            inclusion: hashes_from_wire("inclusion_proof", &wire.inclusion_proof)?,
        })
    }
}

impl From<&ProvenEntry> for v1::ProvenEntry {
    fn from(p: &ProvenEntry) -> Self {
        v1::ProvenEntry {
            index: p.index,
            entry: p.entry.clone(),
            inclusion_proof: hashes_to_wire(&p.inclusion),
        }
    }
}

fn lookup_answer(
    map_proof: &[u8],
    entry: Option<&v1::ProvenEntry>,
) -> Result<LookupAnswer, WireError> {
    Ok(LookupAnswer {
        map_proof: map_proof_from_wire(map_proof)?,
        entry: entry.map(ProvenEntry::try_from).transpose()?,
    })
}

impl TryFrom<&v1::LookupResponse> for LookupAnswer {
    type Error = WireError;

    fn try_from(wire: &v1::LookupResponse) -> Result<Self, Self::Error> {
        lookup_answer(&wire.map_proof, wire.entry.as_ref())
    }
}

impl TryFrom<&v1::UpdateResponse> for LookupAnswer {
    type Error = WireError;

    /// A receipt has the shape of a lookup answer whose entry must be present.
    fn try_from(wire: &v1::UpdateResponse) -> Result<Self, Self::Error> {
        let entry = wire
            .entry
            .as_ref()
            .ok_or(WireError::MissingField("entry"))?;
        lookup_answer(&wire.map_proof, Some(entry))
    }
}

impl TryFrom<&v1::HistoryResponse> for HistoryAnswer {
    type Error = WireError;

    fn try_from(wire: &v1::HistoryResponse) -> Result<Self, Self::Error> {
        Ok(HistoryAnswer {
            versions: wire
                .versions
                .iter()
                .map(ProvenEntry::try_from)
                .collect::<Result<_, _>>()?,
            map_proof: map_proof_from_wire(&wire.map_proof)?,
        })
    }
}

impl TryFrom<&v1::ReadMessagesResponse> for ReadAnswer {
    type Error = WireError;

    fn try_from(wire: &v1::ReadMessagesResponse) -> Result<Self, Self::Error> {
        let proven = |list: &[v1::ProvenEntry]| {
            list.iter()
                .map(ProvenEntry::try_from)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(ReadAnswer {
            messages: proven(&wire.messages)?,
            versions: proven(&wire.versions)?,
            map_proof: map_proof_from_wire(&wire.map_proof)?,
        })
    }
}

/// The server side: a read answer, the author's VRF proof and the checkpoint as a wire response.
pub fn read_response(
    checkpoint_note: Vec<u8>,
    vrf_proof: &[u8; PROOF_LEN],
    answer: &ReadAnswer,
) -> v1::ReadMessagesResponse {
    v1::ReadMessagesResponse {
        checkpoint: Some(v1::Checkpoint {
            note: checkpoint_note,
        }),
        messages: answer.messages.iter().map(v1::ProvenEntry::from).collect(),
        vrf_proof: vrf_proof.to_vec(),
        map_proof: answer.map_proof.encode(),
        versions: answer.versions.iter().map(v1::ProvenEntry::from).collect(),
    }
}

/// The server side: a lookup answer, the identifier's VRF proof and the checkpoint as a wire
/// response.
pub fn lookup_response(
    checkpoint_note: Vec<u8>,
    vrf_proof: &[u8; PROOF_LEN],
    answer: &LookupAnswer,
) -> v1::LookupResponse {
    v1::LookupResponse {
        checkpoint: Some(v1::Checkpoint {
            note: checkpoint_note,
        }),
        map_proof: answer.map_proof.encode(),
        entry: answer.entry.as_ref().map(v1::ProvenEntry::from),
        vrf_proof: vrf_proof.to_vec(),
    }
}

/// The server side: a history answer, the identifier's VRF proof and the checkpoint as a wire
/// response.
pub fn history_response(
    checkpoint_note: Vec<u8>,
    vrf_proof: &[u8; PROOF_LEN],
    answer: &HistoryAnswer,
) -> v1::HistoryResponse {
    v1::HistoryResponse {
        checkpoint: Some(v1::Checkpoint {
            note: checkpoint_note,
        }),
        versions: answer.versions.iter().map(v1::ProvenEntry::from).collect(),
        map_proof: answer.map_proof.encode(),
        vrf_proof: vrf_proof.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::map::Terminal;

    #[test]
    fn answers_round_trip_and_bad_fields_are_named() {
        let answer = LookupAnswer {
            map_proof: MapProof::new(vec![[7; 32]], Terminal::Empty),
            entry: None,
        };
        let wire = lookup_response(b"note".to_vec(), &[5; PROOF_LEN], &answer);
        assert_eq!(LookupAnswer::try_from(&wire).unwrap(), answer);
        assert_eq!(
            vrf_proof_from_wire(&wire.vrf_proof).unwrap(),
            [5; PROOF_LEN]
        );
        assert_eq!(
            vrf_proof_from_wire(&[]),
            Err(WireError::MissingField("vrf_proof"))
        );
        assert_eq!(
            vrf_proof_from_wire(&[5; 81]),
            Err(WireError::BadLength {
                field: "vrf_proof",
                want: PROOF_LEN,
                got: 81
            })
        );
        assert_eq!(
            answer_checkpoint(wire.checkpoint.as_ref()).unwrap(),
            b"note"
        );

        let mut bad = wire.clone();
        bad.map_proof.push(0);
        assert!(matches!(
            LookupAnswer::try_from(&bad),
            Err(WireError::InvalidMapProof { .. })
        ));
        bad = wire;
        bad.entry = Some(v1::ProvenEntry {
            index: 1,
            entry: vec![1],
            inclusion_proof: vec![vec![0; 31]],
        });
        assert!(matches!(
            LookupAnswer::try_from(&bad),
            Err(WireError::BadHashLength { .. })
        ));
        let receipt = v1::UpdateResponse {
            checkpoint: None,
            entry: None,
            map_proof: vec![],
            vrf_proof: vec![],
        };
        assert_eq!(
            LookupAnswer::try_from(&receipt),
            Err(WireError::MissingField("entry"))
        );
    }
}
