//! The tiler's business logic: a plain async type over an [`ObjectStore`] and two
//! [`Queue`]s, so tests drive it with a local store and in-memory queues and `main`
//! only wires S3/SQS clients. Tiling itself is `sphinx_core::pipeline`, unchanged.
//!
//! Per uploaded document: read it, resolve its tasks, tile it page by page (one bundle
//! object per page, written as soon as it is made), then write the document manifest
//! with a conditional create; only the invocation whose create succeeds sends the page
//! jobs, so a redelivered event rewrites the same objects and enqueues nothing twice.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use sphinx_core::error_record::{ErrorCode, ErrorRecord};
use sphinx_core::job::{self, PageJob, SidecarSpec, Task};
use sphinx_core::keys;
use sphinx_core::pipeline::{self, PageOutput, TileError};
use sphinx_core::queue::{Queue, QueueError};
use sphinx_core::store::{ObjectInfo, ObjectStore, StoreError};
use tokio::time::Instant;

use crate::config::Config;
use crate::event::{
    self, Continuation, EventError, IngestMessage, ObjectRef, SqsItem, CONTINUATION_VERSION,
};
use sphinx_core::retry::retry;

/// Finished page bundles waiting for upload; bounds memory to a few pages while
/// rendering the next page overlaps the upload of the previous one.
const UPLOAD_QUEUE_DEPTH: usize = 2;

/// Why a record must be retried (reported in `batchItemFailures`). Invalid documents
/// are not errors: they get an error record and are acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Message(#[from] EventError),
    #[error("record is for bucket {found:?} but this tiler serves {expected:?}")]
    WrongBucket { found: String, expected: String },
    #[error("no time left in this invocation to tile page {page} of {key}")]
    OutOfTime { key: String, page: u32 },
    #[error("tiling {key} failed: {reason}")]
    Tiling { key: String, reason: String },
}

/// What became of one record that needs no retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Pages and manifest written, page jobs sent by this invocation.
    Enqueued { doc_id: String, pages: u32 },
    /// Everything already existed (a redelivery): nothing sent.
    AlreadyDone { doc_id: String },
    /// Part of the pages written; the rest continue in a message on the ingest queue.
    Continued { doc_id: String, next: Range<u32> },
    /// The document is invalid: `errors/<doc_id>.json` written.
    Rejected { doc_id: String, code: ErrorCode },
    /// Nothing to do (test event, sidecar, key outside the inbox, deleted object).
    Ignored { reason: String },
}

/// One document being tiled.
struct Work {
    key: String,
    source: String,
    bytes: Arc<Vec<u8>>,
    doc_id: String,
    tasks: Vec<Task>,
    page_count: u32,
}

/// The tiler over its store and queues.
pub struct Tiler {
    store: Arc<dyn ObjectStore>,
    infer: Arc<dyn Queue>,
    ingest: Arc<dyn Queue>,
    config: Config,
}

impl Tiler {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        infer: Arc<dyn Queue>,
        ingest: Arc<dyn Queue>,
        config: Config,
    ) -> Self {
        Tiler {
            store,
            infer,
            ingest,
            config,
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
                            tracing::error!(key = %object.key, error = %e, "upload failed");
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
                outcomes
            }
            IngestMessage::Continuation(c) => vec![self.process_continuation(c, deadline).await?],
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

    /// One uploaded object, from its notification record to its page jobs.
    pub async fn process_upload(
        &self,
        object: &ObjectRef,
        deadline: Instant,
    ) -> Result<IngestOutcome, RecordError> {
        if object.bucket != self.config.bucket {
            return Err(RecordError::WrongBucket {
                found: object.bucket.clone(),
                expected: self.config.bucket.clone(),
            });
        }
        let key = object.key.as_str();
        let ignored = |reason: String| {
            tracing::info!(key, %reason, "ignored");
            Ok(IngestOutcome::Ignored { reason })
        };
        if job::is_sidecar(key) {
            return ignored("job sidecar, read with its document".into());
        }
        let source = match key.strip_prefix(&self.config.inbox_prefix) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return ignored(format!("outside {}", self.config.inbox_prefix)),
        };
        let policy = self.config.retry;
        let info = match retry(policy, "head upload", || self.store.head(key)).await {
            Err(e) if e.is_not_found() => return ignored("object no longer exists".into()),
            other => other?,
        };
        let bytes = match retry(policy, "get upload", || self.store.get(key)).await {
            Err(e) if e.is_not_found() => return ignored("object no longer exists".into()),
            other => Arc::new(other?),
        };
        let doc_id = keys::doc_id(&bytes);
        let tasks = match self.resolve_tasks(key, &info).await? {
            Ok(tasks) => tasks,
            Err(reason) => {
                let record =
                    ErrorRecord::new(&doc_id, &source, ErrorCode::InvalidTasks, reason, None);
                return self.reject(record).await;
            }
        };
        let manifest_key = keys::document_manifest(&doc_id);
        match retry(policy, "head manifest", || self.store.head(&manifest_key)).await {
            Ok(_) => {
                tracing::info!(key, doc_id, "already tiled and enqueued");
                return Ok(IngestOutcome::AlreadyDone { doc_id });
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let opts = self.config.tile.clone();
        let counted = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || pipeline::page_count(bytes, &opts)).await
        };
        let page_count = match counted {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return self.reject_tiling(&doc_id, &source, key, e).await,
            Err(join) => {
                return Err(RecordError::Tiling {
                    key: key.to_string(),
                    reason: join.to_string(),
                })
            }
        };
        let work = Work {
            key: key.to_string(),
            source,
            bytes,
            doc_id,
            tasks,
            page_count,
        };
        self.tile_range(work, 0..page_count, deadline).await
    }

    /// Later pages of a long document, from a continuation message.
    async fn process_continuation(
        &self,
        c: Continuation,
        deadline: Instant,
    ) -> Result<IngestOutcome, RecordError> {
        let policy = self.config.retry;
        let bytes = match retry(policy, "get upload", || self.store.get(&c.key)).await {
            Err(e) if e.is_not_found() => {
                return Ok(IngestOutcome::Ignored {
                    reason: format!(
                        "{} was deleted before its pages {}..{} were tiled",
                        c.key, c.start, c.end
                    ),
                })
            }
            other => Arc::new(other?),
        };
        let doc_id = keys::doc_id(&bytes);
        if doc_id != c.doc_id {
            // Replaced by another upload, which has its own notification.
            return Ok(IngestOutcome::Ignored {
                reason: format!("{} no longer holds document {}", c.key, c.doc_id),
            });
        }
        let source = c
            .key
            .strip_prefix(&self.config.inbox_prefix)
            .unwrap_or(&c.key)
            .to_string();
        let work = Work {
            key: c.key,
            source,
            bytes,
            doc_id,
            tasks: c.tasks,
            page_count: c.page_count,
        };
        self.tile_range(work, c.start..c.end, deadline).await
    }

    /// Tasks for an upload: object metadata, else its sidecar, else the stack default.
    /// The inner `Err` is a readable reason the upload's own settings are invalid.
    async fn resolve_tasks(
        &self,
        key: &str,
        info: &ObjectInfo,
    ) -> Result<Result<Vec<Task>, String>, RecordError> {
        if let Some(list) = info.metadata.get(job::TASKS_METADATA) {
            return Ok(job::parse_tasks(list)
                .map_err(|e| format!("x-amz-meta-{}: {e}", job::TASKS_METADATA)));
        }
        let sidecar = job::sidecar_key(key);
        match retry(self.config.retry, "get sidecar", || {
            self.store.get(&sidecar)
        })
        .await
        {
            Ok(bytes) => Ok(SidecarSpec::from_json(&bytes)
                .map(|spec| spec.tasks)
                .map_err(|e| format!("{sidecar}: {e}"))),
            Err(e) if e.is_not_found() => Ok(Ok(self.config.default_tasks.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Tiles `range` (at most `pages_per_invocation` of it, and only while time
    /// remains), then either continues the rest on the ingest queue or finishes.
    async fn tile_range(
        &self,
        work: Work,
        range: Range<u32>,
        deadline: Instant,
    ) -> Result<IngestOutcome, RecordError> {
        let end = range
            .end
            .min(range.start.saturating_add(self.config.pages_per_invocation));
        let stop_at = deadline
            .checked_sub(self.config.time_reserve)
            .unwrap_or(deadline)
            .into_std();
        if std::time::Instant::now() >= stop_at {
            return Err(RecordError::OutOfTime {
                key: work.key.clone(),
                page: range.start,
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<PageOutput>(UPLOAD_QUEUE_DEPTH);
        let tiling = {
            let (bytes, source, opts) = (
                work.bytes.clone(),
                work.source.clone(),
                self.config.tile.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let mut sink = |page: PageOutput| -> anyhow::Result<()> {
                    let next = page.index + 1;
                    tx.blocking_send(page)
                        .map_err(|_| anyhow::anyhow!("page upload stopped"))?;
                    if next < end && std::time::Instant::now() >= stop_at {
                        return Err(StopEarly { next }.into());
                    }
                    Ok(())
                };
                pipeline::tile_document(bytes, &source, &opts, Some(range.start..end), &mut sink)
            })
        };
        let policy = self.config.retry;
        // `move`: the receiver must drop when uploading stops, or a tiler thread
        // blocked on a full channel would wait forever.
        let uploads = async move {
            let mut uploaded = range.start;
            while let Some(page) = rx.recv().await {
                let key = page.key;
                let bundle = page.bundle;
                retry(policy, "put bundle", || {
                    self.store.put(&key, bundle.clone())
                })
                .await?;
                uploaded = page.index + 1;
            }
            Ok::<u32, StoreError>(uploaded)
        };
        let (tiled, uploaded) = tokio::join!(tiling, uploads);
        let uploaded = uploaded?;
        let manifest = match tiled {
            Ok(Ok(manifest)) => manifest,
            Ok(Err(TileError::Sink(e))) if e.downcast_ref::<StopEarly>().is_some() => {
                // The sink stops only after a page and never after the last one of
                // the chunk, so `next` is inside the range and every page before it
                // is stored (the upload loop drained the channel).
                let next = e.downcast_ref::<StopEarly>().expect("checked").next;
                debug_assert_eq!(next, uploaded);
                return self.continue_later(&work, next..range.end).await;
            }
            Ok(Err(e)) if e.is_invalid_input() => {
                return self
                    .reject_tiling(&work.doc_id, &work.source, &work.key, e)
                    .await
            }
            Ok(Err(e)) => {
                return Err(RecordError::Tiling {
                    key: work.key.clone(),
                    reason: e.to_string(),
                })
            }
            Err(join) => {
                return Err(RecordError::Tiling {
                    key: work.key.clone(),
                    reason: join.to_string(),
                })
            }
        };
        if end < range.end {
            return self.continue_later(&work, end..range.end).await;
        }
        self.finish(&work, manifest.to_json()).await
    }

    /// Sends a continuation for `next` to the ingest queue.
    async fn continue_later(
        &self,
        work: &Work,
        next: Range<u32>,
    ) -> Result<IngestOutcome, RecordError> {
        let c = Continuation {
            sphinx_continuation: CONTINUATION_VERSION,
            bucket: self.config.bucket.clone(),
            key: work.key.clone(),
            doc_id: work.doc_id.clone(),
            start: next.start,
            end: next.end,
            page_count: work.page_count,
            tasks: work.tasks.clone(),
        };
        let body = serde_json::to_string(&c).expect("continuation serializes");
        self.ingest.send_batch(&[body]).await?;
        tracing::info!(key = %work.key, doc_id = %work.doc_id, start = next.start, end = next.end, "continued");
        Ok(IngestOutcome::Continued {
            doc_id: work.doc_id.clone(),
            next,
        })
    }

    /// Writes the manifest if absent and, if this call created it, sends the page jobs.
    async fn finish(&self, work: &Work, manifest: Vec<u8>) -> Result<IngestOutcome, RecordError> {
        let policy = self.config.retry;
        let manifest_key = keys::document_manifest(&work.doc_id);
        let created = retry(policy, "put manifest", || {
            self.store.put_if_absent(&manifest_key, manifest.clone())
        })
        .await?;
        if !created {
            tracing::info!(key = %work.key, doc_id = %work.doc_id, "manifest already written, jobs already sent");
            return Ok(IngestOutcome::AlreadyDone {
                doc_id: work.doc_id.clone(),
            });
        }
        let bodies: Vec<String> = (0..work.page_count)
            .map(|i| {
                PageJob::new(
                    &work.doc_id,
                    &work.source,
                    i,
                    work.page_count,
                    work.tasks.clone(),
                )
                .to_json()
            })
            .collect();
        // Not wrapped in `retry`: send_batch already re-sends only the rejected entries.
        if let Err(e) = self.infer.send_batch(&bodies).await {
            // Undo the claim so the redelivery sends the jobs; without it the manifest
            // would say "done" for a document with no jobs.
            if let Err(undo) = retry(policy, "delete manifest", || {
                self.store.delete(&manifest_key)
            })
            .await
            {
                tracing::error!(doc_id = %work.doc_id, error = %undo, "could not withdraw manifest after failed send");
            }
            return Err(e.into());
        }
        tracing::info!(key = %work.key, doc_id = %work.doc_id, pages = work.page_count, "enqueued");
        Ok(IngestOutcome::Enqueued {
            doc_id: work.doc_id.clone(),
            pages: work.page_count,
        })
    }

    async fn reject_tiling(
        &self,
        doc_id: &str,
        source: &str,
        key: &str,
        e: TileError,
    ) -> Result<IngestOutcome, RecordError> {
        if !e.is_invalid_input() {
            return Err(RecordError::Tiling {
                key: key.to_string(),
                reason: e.to_string(),
            });
        }
        self.reject(ErrorRecord::from_error(doc_id, source, &e))
            .await
    }

    /// Writes `errors/<doc_id>.json`; the record is then acknowledged, not retried.
    async fn reject(&self, record: ErrorRecord) -> Result<IngestOutcome, RecordError> {
        let key = keys::error_record(&record.doc_id);
        let body = record.to_json();
        retry(self.config.retry, "put error record", || {
            self.store.put(&key, body.clone())
        })
        .await?;
        tracing::warn!(doc_id = %record.doc_id, source = %record.source, code = %record.code, message = %record.message, "rejected");
        Ok(IngestOutcome::Rejected {
            doc_id: record.doc_id,
            code: record.code,
        })
    }
}

/// Sink signal: the invocation's time is nearly spent; `next` is the first page not made.
#[derive(Debug, thiserror::Error)]
#[error("stopping before page {next}: invocation time nearly spent")]
struct StopEarly {
    next: u32,
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
