//! The tiler's event wiring: SQS batches and S3 events in, each upload or continuation
//! handed to the one ingestion library (`sphinx_core::ingest`, shared with `sphinx run`
//! and `sphinx tile`), per-record failures out as `batchItemFailures`. A plain type over
//! an [`ObjectStore`] and two [`Queue`]s, so tests drive it with a local store and
//! in-memory queues and `main` only wires S3/SQS clients.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use sphinx_core::ingest::{IngestConfig, IngestError, IngestOutcome, Ingestor, WhenTiled};
use sphinx_core::ObjectStore;
use sphinx_core::Queue;
use tokio::time::Instant;

use crate::config::Config;
use crate::event::{self, EventError, IngestMessage, ObjectRef, SqsItem};

/// Why a record must be retried (reported in `batchItemFailures`). Invalid documents
/// are not errors: they get an error record and are acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Message(#[from] EventError),
    #[error("record is for bucket {found:?} but this tiler serves {expected:?}")]
    WrongBucket { found: String, expected: String },
}

/// The tiler over its store and queues.
pub struct Tiler {
    ingestor: Ingestor,
}

impl Tiler {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        infer: Arc<dyn Queue>,
        ingest: Arc<dyn Queue>,
        config: Config,
    ) -> Self {
        let config = IngestConfig {
            bucket: config.bucket,
            inbox_prefix: config.inbox_prefix,
            default_tasks: config.default_tasks,
            pages_per_call: config.pages_per_invocation,
            time_reserve: config.time_reserve,
            retry: config.retry,
            tile: config.tile,
            // A redelivered event: its jobs were sent when the manifest was created.
            when_tiled: WhenTiled::Nothing,
        };
        Tiler {
            ingestor: Ingestor::new(store, Some(infer), Some(ingest), config),
        }
    }

    /// Handles an SQS batch: every message that must be retried is listed in the
    /// response, so one bad record never makes the good ones redeliver (the event
    /// source mapping must enable `ReportBatchItemFailures`, or Lambda would retry
    /// the whole batch on any error).
    pub async fn handle_sqs(&self, items: Vec<SqsItem>, deadline: Instant) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for item in items {
            if let Err(err) = self.handle_message(&item.body, deadline).await {
                tracing::error!(message_id = %item.message_id, error = %err, "record failed, will be retried");
                response.add_failure(item.message_id);
            }
        }
        response
    }

    /// Handles one ingest-queue message body (all its records).
    pub async fn handle_message(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<Vec<IngestOutcome>, RecordError> {
        let outcomes = match event::parse_body(body)? {
            IngestMessage::TestEvent => vec![IngestOutcome::Ignored {
                reason: "s3:TestEvent".into(),
            }],
            IngestMessage::Uploads(objects) => {
                let mut outcomes = Vec::new();
                let mut first_error = None;
                // Every record is attempted even if one fails; the message is retried
                // as a whole, and the finished records are no-ops the second time.
                for object in &objects {
                    match self.process_upload(object, deadline).await {
                        Ok(o) => outcomes.push(o),
                        Err(e) => {
                            tracing::error!(key = ?object.key, error = %e, "upload failed");
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
                outcomes
            }
            IngestMessage::Continuation(c) => vec![self.ingestor.resume(c, deadline).await?],
        };
        Ok(outcomes)
    }

    /// Handles the records of a plain S3 event; any record that must be retried
    /// makes the invocation fail (Lambda's own retry of async invocations).
    pub async fn handle_s3(
        &self,
        objects: Vec<ObjectRef>,
        deadline: Instant,
    ) -> Result<Vec<IngestOutcome>, RecordError> {
        let mut outcomes = Vec::new();
        for object in &objects {
            outcomes.push(self.process_upload(object, deadline).await?);
        }
        Ok(outcomes)
    }

    /// One uploaded object named by a notification record: it must be in this tiler's
    /// bucket; the rest is [`Ingestor::ingest_upload`].
    pub async fn process_upload(
        &self,
        object: &ObjectRef,
        deadline: Instant,
    ) -> Result<IngestOutcome, RecordError> {
        let expected = &self.ingestor.config().bucket;
        if &object.bucket != expected {
            return Err(RecordError::WrongBucket {
                found: object.bucket.clone(),
                expected: expected.clone(),
            });
        }
        Ok(self.ingestor.ingest_upload(&object.key, deadline).await?)
    }
}

/// One outcome as the S3-event response lists it: `Enqueued { doc_id: "..", pages: 3 }`
/// (the form `scripts/e2e/bench_tiler_lambda.py` reads).
pub fn describe(outcome: &IngestOutcome) -> String {
    match outcome {
        IngestOutcome::Enqueued { doc_id, pages } => {
            format!("Enqueued {{ doc_id: {doc_id:?}, pages: {pages} }}")
        }
        IngestOutcome::AlreadyDone { doc_id } => format!("AlreadyDone {{ doc_id: {doc_id:?} }}"),
        IngestOutcome::Continued { doc_id, next } => {
            format!("Continued {{ doc_id: {doc_id:?}, next: {next:?} }}")
        }
        IngestOutcome::Rejected { doc_id, code, .. } => {
            format!(
                "Rejected {{ doc_id: {doc_id:?}, code: {:?} }}",
                code.as_str()
            )
        }
        IngestOutcome::Ignored { reason } => format!("Ignored {{ reason: {reason:?} }}"),
    }
}

/// Time left until `deadline_ms` (milliseconds since the Unix epoch, as the Lambda
/// context gives it), as an instant on the tokio clock.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    /// Deadlines below this (2001-09-09 in epoch ms) are durations: the cargo-lambda
    /// emulator sends the function timeout itself (observed: 600000) instead of a time.
    const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;
    if deadline_ms < EPOCH_MS_FLOOR {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_core::error_record::ErrorCode;

    #[test]
    fn outcomes_are_described_as_before() {
        let cases = [
            (
                IngestOutcome::Enqueued {
                    doc_id: "d".into(),
                    pages: 3,
                },
                r#"Enqueued { doc_id: "d", pages: 3 }"#,
            ),
            (
                IngestOutcome::AlreadyDone { doc_id: "d".into() },
                r#"AlreadyDone { doc_id: "d" }"#,
            ),
            (
                IngestOutcome::Continued {
                    doc_id: "d".into(),
                    next: 2..5,
                },
                r#"Continued { doc_id: "d", next: 2..5 }"#,
            ),
            (
                IngestOutcome::Rejected {
                    doc_id: "d".into(),
                    code: ErrorCode::Malformed,
                    message: "m".into(),
                },
                r#"Rejected { doc_id: "d", code: "malformed" }"#,
            ),
            (
                IngestOutcome::Ignored { reason: "r".into() },
                r#"Ignored { reason: "r" }"#,
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(describe(&outcome), want);
        }
    }
}
