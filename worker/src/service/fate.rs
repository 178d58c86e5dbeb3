//! The one place that decides what happens to a message.
//!
//! Every path through the pipeline ends in `Result<Outcome, JobError>`; [`decide`] maps it to
//! ack or nack, a metrics reason and whether a "thumbnail failed" event is due. Transient
//! errors are nacked (Pub/Sub redelivers with the subscription's backoff, and a dead-letter
//! policy ends endless retries); permanent ones are acked, logged, counted and reported, since
//! the same bytes would fail the same way forever.

use super::message::Malformed;
use super::store::StoreError;

/// A message that needed no (more) work, or whose work is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every thumbnail was written (and the ready event published).
    Done { outputs: usize },
    /// Deliberately not processed; acked.
    Skipped(Skip),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A notification other than OBJECT_FINALIZE.
    EventType,
    /// An object under the output prefix in the output bucket (our own thumbnail).
    OutputObject,
    /// Thumbnails of a newer source generation exist already (a stale notification).
    Superseded,
    /// The notified generation no longer exists (overwritten or deleted since).
    StaleGeneration,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::EventType => "ignored_event_type",
            Skip::OutputObject => "ignored_output_object",
            Skip::Superseded => "superseded",
            Skip::StaleGeneration => "stale_generation",
        }
    }
}

/// Why a message could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("malformed message: {0}")]
    Malformed(#[from] Malformed),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Image(#[from] thumbd_engine::Error),
    #[error("bucket `{0}` is not one of the worker's --source-bucket")]
    ForbiddenBucket(String),
    #[error("content type `{0}` is not an image")]
    NotAnImage(String),
    #[error("file name `{0}` is not UTF-8, so it cannot name its thumbnails")]
    InvalidName(String),
    /// The decode needs more than the whole engine pool: it cannot run within this pod's budget.
    #[error("decoding needs {needed} bytes, more than this pod's engine pool of {pool} bytes")]
    TooLargeForPod { needed: u64, pool: u64 },
    #[error("publishing the event failed: {0}")]
    Event(String),
    #[error("shutting down before the work was done")]
    ShuttingDown,
}

/// What to do with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Ack,
    Nack,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Ack => "ack",
            Fate::Nack => "nack",
        }
    }
}

impl JobError {
    /// Worth a redelivery: the infrastructure failed, not the message.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Store(e) => e.is_transient(),
            JobError::Event(_) | JobError::ShuttingDown => true,
            JobError::Malformed(_)
            | JobError::Image(_)
            | JobError::ForbiddenBucket(_)
            | JobError::NotAnImage(_)
            | JobError::InvalidName(_)
            | JobError::TooLargeForPod { .. } => false,
        }
    }

    pub fn fate(&self) -> Fate {
        if self.is_transient() {
            Fate::Nack
        } else {
            Fate::Ack
        }
    }

    /// Stable snake_case name for metrics labels, logs and failure events.
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Malformed(_) => "malformed",
            JobError::Store(StoreError::NotFound) => "not_found",
            JobError::Store(StoreError::TooLarge { .. }) => "input_too_large",
            JobError::Store(StoreError::Refused(_)) => "storage_refused",
            JobError::Store(StoreError::Conflict { .. }) => "output_conflict",
            JobError::Store(StoreError::Unavailable(_)) => "storage_unavailable",
            JobError::Image(e) => e.kind().as_str(),
            JobError::ForbiddenBucket(_) => "forbidden_bucket",
            JobError::NotAnImage(_) => "unsupported",
            JobError::InvalidName(_) => "invalid_name",
            JobError::TooLargeForPod { .. } => "too_large_for_pod",
            JobError::Event(_) => "event_publish",
            JobError::ShuttingDown => "shutdown",
        }
    }
}

/// The decision for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub fate: Fate,
    pub reason: &'static str,
    /// Publish a "thumbnail failed" event before acking (permanent failures only).
    pub failure_event: bool,
}

pub fn decide(result: &Result<Outcome, JobError>) -> Decision {
    match result {
        Ok(Outcome::Done { .. }) => Decision {
            fate: Fate::Ack,
            reason: "done",
            failure_event: false,
        },
        Ok(Outcome::Skipped(skip)) => Decision {
            fate: Fate::Ack,
            reason: skip.reason(),
            failure_event: false,
        },
        Err(e) => Decision {
            fate: e.fate(),
            reason: e.reason(),
            failure_event: !e.is_transient(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_acked_with_an_event_transient_ones_nacked() {
        let corrupt = Err(JobError::Image(thumbd_engine::Error::Corrupt {
            format: "jpeg",
            detail: "x".into(),
        }));
        assert_eq!(
            decide(&corrupt),
            Decision {
                fate: Fate::Ack,
                reason: "corrupt",
                failure_event: true
            }
        );
        let missing = Err(JobError::Store(StoreError::NotFound));
        assert_eq!(decide(&missing).fate, Fate::Ack);
        let down = Err(JobError::Store(StoreError::Unavailable("503".into())));
        assert_eq!(
            decide(&down),
            Decision {
                fate: Fate::Nack,
                reason: "storage_unavailable",
                failure_event: false
            }
        );
        assert_eq!(decide(&Err(JobError::Event("x".into()))).fate, Fate::Nack);
        let too_large = Err(JobError::TooLargeForPod {
            needed: 900 << 20,
            pool: 100 << 20,
        });
        assert_eq!(
            decide(&too_large),
            Decision {
                fate: Fate::Ack,
                reason: "too_large_for_pod",
                failure_event: true
            }
        );
        assert_eq!(
            decide(&Ok(Outcome::Skipped(Skip::Superseded))),
            Decision {
                fate: Fate::Ack,
                reason: "superseded",
                failure_event: false
            }
        );
    }
}
