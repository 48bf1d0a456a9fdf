//! The one table from domain errors to gRPC statuses.

use kt_core::merkle::ProofError;
use kt_proto::WireError;
use tonic::{Code, Status};

use crate::directory_epoch::Rejection;
use crate::sequencer::SequencerError;
use crate::storage::StorageError;
use kt_core::directory::RuleError;

/// How long a client should back off after the append queue was full (the default epoch
/// interval: the queue drains at each epoch).
pub const RETRY_AFTER_MS: u64 = 500;
/// The metadata key of the back-off hint on every `RESOURCE_EXHAUSTED`: whole milliseconds, in
/// ASCII digits. The message says the same for people.
pub const RETRY_AFTER_KEY: &str = "retry-after-ms";

/// An error a handler answers with. Every variant says what was wrong in its message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Busy(String),
    /// A per-peer limit (`crate::limits`), with its own back-off.
    #[error("{0}")]
    Throttled(#[from] crate::limits::Throttled),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match &e {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::OutOfRange(_) => Code::OutOfRange,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Busy(_) | ApiError::Throttled(_) => Code::ResourceExhausted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::Aborted(_) => Code::Aborted,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Internal(_) => Code::Internal,
        };
        let retry_after_ms = match &e {
            ApiError::Throttled(t) => Some(t.retry_after().as_millis() as u64),
            ApiError::Busy(_) => Some(RETRY_AFTER_MS),
            _ => None,
        };
        let Some(ms) = retry_after_ms else {
            return Status::new(code, e.to_string());
        };
        let mut status = Status::new(code, format!("{e}; retry after {ms} ms"));
        status.metadata_mut().insert(
            RETRY_AFTER_KEY,
            ms.to_string().parse().expect("ascii digits"),
        );
        status
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage read failed");
        ApiError::Internal(e.to_string())
    }
}

impl From<SequencerError> for ApiError {
    fn from(e: SequencerError) -> Self {
        match e {
            SequencerError::QueueFull(waiting) => ApiError::Busy(format!(
                "the append queue is full ({waiting} requests waiting)"
            )),
            SequencerError::LargerThanQueue { .. } => ApiError::InvalidArgument(e.to_string()),
            SequencerError::Stopped(_) | SequencerError::DiskFull(_) => {
                ApiError::Unavailable(e.to_string())
            }
            SequencerError::Rejected(Rejection::Malformed(_)) => {
                ApiError::InvalidArgument(e.to_string())
            }
            SequencerError::Rejected(Rejection::Rule(rule)) => rule_error(rule),
            SequencerError::Rejected(Rejection::SameEpoch(_)) => ApiError::Aborted(e.to_string()),
        }
    }
}

impl From<ProofError<StorageError>> for ApiError {
    fn from(e: ProofError<StorageError>) -> Self {
        match e {
            ProofError::Read(e) => e.into(),
            other => ApiError::InvalidArgument(other.to_string()),
        }
    }
}

/// A broken directory rule, by what the caller can do about it: the label's state moved on (look
/// it up again), the caller lacks the key's authority, or the request was malformed.
fn rule_error(rule: RuleError) -> ApiError {
    let msg = format!("refused: {rule}");
    match rule {
        RuleError::AlreadyRegistered => ApiError::AlreadyExists(msg),
        RuleError::NotRegistered => ApiError::NotFound(msg),
        RuleError::Revoked
        | RuleError::SkippedVersion { .. }
        | RuleError::VersionExhausted
        | RuleError::WrongPrev { .. }
        | RuleError::SkippedSequence { .. }
        | RuleError::SequenceExhausted => ApiError::FailedPrecondition(msg),
        RuleError::BadSignature { .. } | RuleError::BadMessageSignature => {
            ApiError::PermissionDenied(msg)
        }
        RuleError::MissingKey { .. }
        | RuleError::UnexpectedKey { .. }
        | RuleError::MissingSignature { .. }
        | RuleError::UnexpectedSignature { .. }
        // The update's own time field is wrong (the client's clock is off): rebuild it.
        | RuleError::UpdateTime { .. } => ApiError::InvalidArgument(msg),
    }
}

impl From<kt_core::map::MapError<StorageError>> for ApiError {
    fn from(e: kt_core::map::MapError<StorageError>) -> Self {
        tracing::error!(error = %e, "map read failed");
        ApiError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every RESOURCE_EXHAUSTED carries its back-off, in the message and as metadata.
    #[test]
    fn resource_exhausted_says_when_to_retry() {
        let hint = |status: &Status| -> u64 {
            assert_eq!(status.code(), Code::ResourceExhausted);
            let ms: u64 = status
                .metadata()
                .get(RETRY_AFTER_KEY)
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                status
                    .message()
                    .ends_with(&format!("; retry after {ms} ms")),
                "{}",
                status.message()
            );
            ms
        };
        let full = Status::from(ApiError::from(SequencerError::QueueFull(10)));
        assert_eq!(hint(&full), RETRY_AFTER_MS);
        assert!(full
            .message()
            .starts_with("the append queue is full (10 requests waiting)"));
        let throttled = crate::limits::Throttled::Rate {
            class: crate::limits::RpcClass::Write,
            peer: crate::limits::PeerKey::Unknown,
            per_second: 1,
            burst: 2,
            retry_after: std::time::Duration::from_millis(1_234),
        };
        assert_eq!(hint(&Status::from(ApiError::from(throttled))), 1_234);
        // A batch larger than the whole queue is not told to retry.
        let never = Status::from(ApiError::from(SequencerError::LargerThanQueue {
            entries: 1_000,
            depth: 500,
        }));
        assert_eq!(never.code(), tonic::Code::InvalidArgument);
        assert!(never.metadata().get(RETRY_AFTER_KEY).is_none());
        assert!(
            never.message().contains("send at most 500 per call"),
            "{never:?}"
        );
        let other = Status::from(ApiError::NotFound("x".into()));
        assert!(other.metadata().get(RETRY_AFTER_KEY).is_none());
        assert_eq!(other.message(), "x");
    }
}
