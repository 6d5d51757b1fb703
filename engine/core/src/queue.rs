//! Message queues behind one small trait: SQS in the cloud (ingest and infer queues),
//! an in-process queue in local mode, with the same at-least-once contract.
//!
//! A received message stays invisible for its visibility timeout; the consumer deletes
//! it once its outputs are durably written, or it becomes visible again and is
//! redelivered. Consumers must therefore be idempotent.

use std::time::Duration;

use async_trait::async_trait;

mod memory;
#[cfg(feature = "aws")]
mod sqs;

pub use memory::MemoryQueue;
#[cfg(feature = "aws")]
pub use sqs::SqsQueue;

/// Most messages one SQS `SendMessageBatch` / `ReceiveMessage` call takes (an SQS limit).
pub const MAX_BATCH: usize = 10;
/// Largest message body SQS accepts, in bytes (256 KiB, an SQS limit); a batch's bodies
/// together must stay under it as well.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Longest long-poll wait of one receive (20 s, an SQS limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility timeout (12 hours, an SQS limit).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// How many times `send_batch` sends the entries a batch call did not accept.
pub const SEND_ATTEMPTS: u32 = 5;
/// First pause before re-sending rejected entries; doubles each attempt.
pub const SEND_BACKOFF: Duration = Duration::from_millis(100);

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Stable id of the message (the same on every delivery).
    pub id: String,
    /// Handle of this delivery, for [`Queue::change_visibility`] and [`Queue::delete`].
    pub receipt: String,
    /// The body as sent.
    pub body: String,
    /// How many times the message has been received, this delivery included.
    pub receive_count: u32,
}

/// Why a queue operation failed; callers retry when [`QueueError::is_transient`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The arguments cannot be sent as given (body too large, bad timeout...).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// The receipt handle is unknown or belongs to an older delivery.
    #[error("receipt {receipt:?} is not valid: {reason}")]
    InvalidReceipt { receipt: String, reason: String },
    /// Some messages of a batch were still rejected after [`SEND_ATTEMPTS`] sends.
    #[error("{failed} of {total} messages not sent: {message}")]
    PartialSend {
        failed: usize,
        total: usize,
        message: String,
        transient: bool,
    },
    /// A fault that may go away on retry: 5xx, throttling, timeouts, refused connections.
    #[error("{op} failed (transient): {message}")]
    Transient { op: &'static str, message: String },
    /// A fault that retrying will not fix (missing queue, access denied...).
    #[error("{op} failed: {message}")]
    Permanent { op: &'static str, message: String },
}

impl QueueError {
    /// True when retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Transient { .. } => true,
            QueueError::PartialSend { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// An at-least-once message queue with visibility timeouts (SQS semantics).
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends every body, [`MAX_BATCH`] per call; entries a call rejects are re-sent
    /// with backoff up to [`SEND_ATTEMPTS`] times. `Ok` means every body was accepted.
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError>;

    /// Receives up to `max` (<= [`MAX_BATCH`]) messages, waiting up to `wait`
    /// (<= [`MAX_WAIT`]) for the first; each stays invisible for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError>;

    /// Makes a received message invisible for `visibility` from now (0 = release it).
    async fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError>;

    /// Removes a received message for good.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
}

/// Checks the arguments of a receive against the SQS limits.
pub fn check_receive(max: usize, wait: Duration, visibility: Duration) -> Result<(), QueueError> {
    if max == 0 || max > MAX_BATCH {
        return Err(QueueError::Invalid {
            what: "receive count",
            reason: format!("{max} is not in 1..={MAX_BATCH}"),
        });
    }
    if wait > MAX_WAIT {
        return Err(QueueError::Invalid {
            what: "wait time",
            reason: format!("{wait:?} exceeds {MAX_WAIT:?}"),
        });
    }
    check_visibility(visibility)
}

/// Checks a visibility timeout against the SQS limit.
pub fn check_visibility(visibility: Duration) -> Result<(), QueueError> {
    if visibility > MAX_VISIBILITY {
        return Err(QueueError::Invalid {
            what: "visibility timeout",
            reason: format!("{visibility:?} exceeds {MAX_VISIBILITY:?}"),
        });
    }
    Ok(())
}

/// Splits `bodies` into send batches of at most [`MAX_BATCH`] entries and
/// [`MAX_MESSAGE_BYTES`] total, as index ranges; refuses a body that is too large alone.
pub fn batches(bodies: &[String]) -> Result<Vec<std::ops::Range<usize>>, QueueError> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::Invalid {
                what: "message body",
                reason: format!(
                    "message {i} is {} bytes, over {MAX_MESSAGE_BYTES}",
                    body.len()
                ),
            });
        }
        if i - start == MAX_BATCH || bytes + body.len() > MAX_MESSAGE_BYTES {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        out.push(start..bodies.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_size_limits() {
        let small: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
        assert_eq!(batches(&small).unwrap(), vec![0..10, 10..20, 20..23]);
        let big = "x".repeat(MAX_MESSAGE_BYTES / 2 + 1);
        let bodies = vec![big.clone(), big.clone(), big];
        assert_eq!(batches(&bodies).unwrap(), vec![0..1, 1..2, 2..3]);
        let too_big = vec!["x".repeat(MAX_MESSAGE_BYTES + 1)];
        assert!(matches!(batches(&too_big), Err(QueueError::Invalid { .. })));
        assert!(batches(&[]).unwrap().is_empty());
    }
}
