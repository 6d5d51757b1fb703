//! Ingestion: one upload becomes page bundles, a document manifest and page jobs, or an
//! error record. The one implementation the tiler Lambda (which adds only event wiring:
//! `functions/tiler`), `sphinx run` and `sphinx tile` all call, so every path lays out
//! byte-identical objects and sends identical jobs. Tiling itself is [`crate::pipeline`].
//!
//! Per document: resolve its tasks (object metadata, else a sidecar, else the default),
//! tile it page by page (one bundle object per page, written as soon as it is made), then
//! write the manifest with a conditional create; only the call whose create succeeds
//! sends the page jobs, so a redelivered event rewrites the same objects and enqueues
//! nothing twice. A document too long for one call (a Lambda invocation's page budget or
//! time) continues in a [`Continuation`] message when there is a continuation queue, or
//! at once in the same call when there is none (local runs).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::DocError;
use crate::error_record::{ErrorCode, ErrorRecord};
use crate::job::{self, PageJob, SidecarSpec, Task};
use crate::keys;
use crate::manifest::DocumentManifest;
use crate::pipeline::{self, PageOutput, TileError, TileOptions};
use crate::queue::{Queue, QueueError};
use crate::retry::{retry, RetryPolicy};
use crate::store::{ObjectInfo, ObjectStore, StoreError};

/// Finished page bundles waiting for upload; bounds memory to a few pages while
/// rendering the next page overlaps the upload of the previous one.
const UPLOAD_QUEUE_DEPTH: usize = 2;
/// Largest job sidecar read: [`job::MAX_TASKS`] tasks of [`job::MAX_TASK_TEXT`] characters
/// fit with room to spare.
pub const MAX_SIDECAR_BYTES: u64 = 256 << 10;
/// Version of the [`Continuation`] message schema.
pub const CONTINUATION_VERSION: u32 = 1;

/// What ingestion needs to know, whoever calls it.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// The bucket continuations name (the local store's name in local mode).
    pub bucket: String,
    /// Key prefix of uploads; the rest of the key is the document's `source`.
    pub inbox_prefix: String,
    /// Tasks for uploads whose metadata and sidecar say nothing.
    pub default_tasks: Vec<Task>,
    /// Most pages one call tiles before continuing the rest.
    pub pages_per_call: u32,
    /// Time kept free before the deadline for the manifest write and the job sends.
    pub time_reserve: Duration,
    /// Attempts per store/queue call on transient faults.
    pub retry: RetryPolicy,
    pub tile: TileOptions,
    /// What to do with a document whose manifest already exists.
    pub when_tiled: WhenTiled,
}

impl IngestConfig {
    /// Settings for one process that tiles whole documents: no page budget, one attempt
    /// per store call, `inbox/` uploads, and unfinished pages re-queued on a rerun.
    pub fn local(bucket: &str, default_tasks: Vec<Task>, tile: TileOptions) -> Self {
        IngestConfig {
            bucket: bucket.to_string(),
            inbox_prefix: DEFAULT_INBOX_PREFIX.to_string(),
            default_tasks,
            pages_per_call: u32::MAX,
            time_reserve: Duration::ZERO,
            retry: RetryPolicy {
                attempts: 1,
                base: Duration::from_millis(200),
            },
            tile,
            when_tiled: WhenTiled::RequeueUnfinished,
        }
    }
}

/// The default upload prefix (the S3 notification filter uses the same).
pub const DEFAULT_INBOX_PREFIX: &str = "inbox/";

/// A document found already tiled (its manifest exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenTiled {
    /// Nothing to do: a redelivered event (the cloud; its jobs were sent then).
    Nothing,
    /// Send jobs again for the pages that have no result yet (a rerun of `sphinx run`
    /// after an interruption; the worker skips pages that are done), or, when the
    /// manifest is of another layout than this configuration's, tile the document again.
    RequeueUnfinished,
}

/// Why ingestion must be retried. Invalid documents are not errors: they get an error
/// record and an [`IngestOutcome::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("no time left in this invocation to tile page {page} of {key}")]
    OutOfTime { key: String, page: u32 },
    #[error("tiling {key} failed: {reason}")]
    Tiling { key: String, reason: String },
}

/// What became of one upload that needs no retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Pages and manifest written, page jobs (if there is a job queue) sent by this call.
    Enqueued { doc_id: String, pages: u32 },
    /// Everything already existed (a redelivery or a rerun): see [`WhenTiled`].
    AlreadyDone { doc_id: String },
    /// Part of the pages written; the rest continue in a message on the ingest queue.
    Continued { doc_id: String, next: Range<u32> },
    /// The document is invalid: `errors/<doc_id>.json` written with this code and message.
    Rejected {
        doc_id: String,
        code: ErrorCode,
        message: String,
    },
    /// Nothing to do (sidecar, key outside the inbox, deleted object).
    Ignored { reason: String },
}

/// The rest of a document too long for one call: tile `start..end` next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    /// Marks the body as a continuation and versions its schema.
    pub sphinx_continuation: u32,
    pub bucket: String,
    pub key: String,
    /// The document the pages belong to (the upload must still hash to it).
    pub doc_id: String,
    pub start: u32,
    pub end: u32,
    pub page_count: u32,
    /// Tasks resolved for the upload, so later chunks need not resolve them again.
    pub tasks: Vec<Task>,
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

/// Ingestion over a store and, optionally, the job queue (without one, documents are
/// tiled and no jobs sent: `sphinx tile`) and the continuation queue (without one, a
/// long document is finished in the same call).
pub struct Ingestor {
    store: Arc<dyn ObjectStore>,
    jobs: Option<Arc<dyn Queue>>,
    continuations: Option<Arc<dyn Queue>>,
    config: IngestConfig,
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        jobs: Option<Arc<dyn Queue>>,
        continuations: Option<Arc<dyn Queue>>,
        config: IngestConfig,
    ) -> Self {
        Ingestor {
            store,
            jobs,
            continuations,
            config,
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// One uploaded object, from its key to its page jobs.
    pub async fn ingest_upload(
        &self,
        key: &str,
        deadline: Instant,
    ) -> Result<IngestOutcome, IngestError> {
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
        if info.size > self.config.tile.limits.max_bytes {
            // Never held whole (a hostile upload can be terabytes): hashed as it streams by.
            let doc_id = match retry(policy, "hash upload", || self.store.sha256(key)).await {
                Err(e) if e.is_not_found() => return ignored("object no longer exists".into()),
                other => other?,
            };
            return self.reject_too_large(&doc_id, &source, info.size).await;
        }
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
        self.ingest_document(key, &source, bytes, tasks, deadline)
            .await
    }

    /// A document's bytes under the name `source`, with the default tasks (`sphinx tile`:
    /// the file is not in the store).
    pub async fn ingest_bytes(
        &self,
        source: &str,
        bytes: Arc<Vec<u8>>,
    ) -> Result<IngestOutcome, IngestError> {
        let key = keys::upload(&self.config.inbox_prefix, source);
        let tasks = self.config.default_tasks.clone();
        self.ingest_document(&key, source, bytes, tasks, far_deadline())
            .await
    }

    /// A document over [`crate::limits::Limits::max_bytes`] that was never read whole:
    /// its error record under the id the bytes hash to (`doc_id`, hashed as a stream).
    pub async fn reject_too_large(
        &self,
        doc_id: &str,
        source: &str,
        bytes: u64,
    ) -> Result<IngestOutcome, IngestError> {
        let err = TileError::Document(DocError::TooLarge {
            bytes,
            limit: self.config.tile.limits.max_bytes,
        });
        self.reject(ErrorRecord::from_error(doc_id, source, &err))
            .await
    }

    /// Later pages of a long document, from a continuation message.
    pub async fn resume(
        &self,
        c: Continuation,
        deadline: Instant,
    ) -> Result<IngestOutcome, IngestError> {
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

    /// A document whose tasks are known: already tiled, or tiled now.
    async fn ingest_document(
        &self,
        key: &str,
        source: &str,
        bytes: Arc<Vec<u8>>,
        tasks: Vec<Task>,
        deadline: Instant,
    ) -> Result<IngestOutcome, IngestError> {
        let policy = self.config.retry;
        let doc_id = keys::doc_id(&bytes);
        let manifest_key = keys::document_manifest(&doc_id);
        match retry(policy, "head manifest", || self.store.head(&manifest_key)).await {
            Ok(_) if self.config.when_tiled == WhenTiled::Nothing => {
                tracing::info!(key, doc_id, "already tiled and enqueued");
                return Ok(IngestOutcome::AlreadyDone { doc_id });
            }
            Ok(_) => {
                let manifest = self.read_manifest(&manifest_key).await?;
                if manifest.tile_config == self.config.tile.tile {
                    tracing::info!(key, doc_id, "already tiled");
                    self.requeue_unfinished(&manifest, source, &tasks).await?;
                    return Ok(IngestOutcome::AlreadyDone { doc_id });
                }
                // Tiled for another model's layout (`sphinx tile` defaults, or a rerun
                // with another model): its bundles would fail every page, so tile again.
                tracing::info!(
                    key,
                    doc_id,
                    was = ?manifest.tile_config,
                    now = ?self.config.tile.tile,
                    "tiled for another layout, tiling again"
                );
                retry(policy, "delete manifest", || {
                    self.store.delete(&manifest_key)
                })
                .await?;
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
            Ok(Err(e)) => return self.reject_tiling(&doc_id, source, key, e).await,
            Err(join) => {
                return Err(IngestError::Tiling {
                    key: key.to_string(),
                    reason: join.to_string(),
                })
            }
        };
        let work = Work {
            key: key.to_string(),
            source: source.to_string(),
            bytes,
            doc_id,
            tasks,
            page_count,
        };
        self.tile_range(work, 0..page_count, deadline).await
    }

    /// Jobs for the pages of a tiled document that have no result.
    async fn read_manifest(&self, key: &str) -> Result<DocumentManifest, IngestError> {
        let bytes = retry(self.config.retry, "get manifest", || self.store.get(key)).await?;
        DocumentManifest::from_json(&bytes).map_err(|e| IngestError::Tiling {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    async fn requeue_unfinished(
        &self,
        manifest: &DocumentManifest,
        source: &str,
        tasks: &[Task],
    ) -> Result<(), IngestError> {
        let Some(jobs) = &self.jobs else {
            return Ok(());
        };
        let doc_id = &manifest.doc_id;
        let mut bodies = Vec::new();
        for page in 0..manifest.page_count {
            let result = keys::page_result(doc_id, page);
            if self.store.head(&result).await.is_err() {
                let job = PageJob::new(doc_id, source, page, manifest.page_count, tasks.to_vec());
                bodies.push(job.to_json());
            }
        }
        if !bodies.is_empty() {
            jobs.send_batch(&bodies).await?;
        }
        Ok(())
    }

    /// Tasks for an upload: object metadata, else its sidecar, else the default.
    /// The inner `Err` is a readable reason the upload's own settings are invalid.
    async fn resolve_tasks(
        &self,
        key: &str,
        info: &ObjectInfo,
    ) -> Result<Result<Vec<Task>, String>, IngestError> {
        if let Some(list) = info.metadata.get(job::TASKS_METADATA) {
            return Ok(job::parse_tasks(list)
                .map_err(|e| format!("x-amz-meta-{}: {e}", job::TASKS_METADATA)));
        }
        let sidecar = job::sidecar_key(key);
        match retry(self.config.retry, "head sidecar", || {
            self.store.head(&sidecar)
        })
        .await
        {
            // Read only when small: an uploader could make it any size.
            Ok(info) if info.size > MAX_SIDECAR_BYTES => {
                return Ok(Err(format!(
                    "{sidecar} is {} bytes; a task list needs at most {MAX_SIDECAR_BYTES}",
                    info.size
                )))
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(Ok(self.config.default_tasks.clone())),
            Err(e) => return Err(e.into()),
        }
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

    /// Tiles `range` (at most `pages_per_call` of it at a time, and only while time
    /// remains), then continues the rest or finishes.
    async fn tile_range(
        &self,
        work: Work,
        mut range: Range<u32>,
        deadline: Instant,
    ) -> Result<IngestOutcome, IngestError> {
        loop {
            match self.tile_chunk(&work, range.clone(), deadline).await? {
                Chunk::Done(outcome) => return Ok(outcome),
                Chunk::Rest(next) => match &self.continuations {
                    Some(queue) => return self.continue_later(queue.as_ref(), &work, next).await,
                    // No queue to hand the rest to: go on in this call.
                    None => range = next,
                },
            }
        }
    }

    /// One chunk of `range`: what is left of it afterwards, or the document's outcome.
    async fn tile_chunk(
        &self,
        work: &Work,
        range: Range<u32>,
        deadline: Instant,
    ) -> Result<Chunk, IngestError> {
        let end = range
            .end
            .min(range.start.saturating_add(self.config.pages_per_call));
        let stop_at = deadline
            .checked_sub(self.config.time_reserve)
            .unwrap_or(deadline)
            .into_std();
        if std::time::Instant::now() >= stop_at {
            return Err(IngestError::OutOfTime {
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
            let start = range.start;
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
                pipeline::tile_document(bytes, &source, &opts, Some(start..end), &mut sink)
            })
        };
        let policy = self.config.retry;
        let store = &self.store;
        // `move`: the receiver must drop when uploading stops, or a tiler thread
        // blocked on a full channel would wait forever.
        let start = range.start;
        let uploads = async move {
            let mut uploaded = start;
            while let Some(page) = rx.recv().await {
                let key = page.key;
                let bundle = page.bundle;
                retry(policy, "put bundle", || store.put(&key, bundle.clone())).await?;
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
                return Ok(Chunk::Rest(next..range.end));
            }
            Ok(Err(e)) if e.is_invalid_input() => {
                let outcome = self
                    .reject_tiling(&work.doc_id, &work.source, &work.key, e)
                    .await?;
                return Ok(Chunk::Done(outcome));
            }
            Ok(Err(e)) => {
                return Err(IngestError::Tiling {
                    key: work.key.clone(),
                    reason: e.to_string(),
                })
            }
            Err(join) => {
                return Err(IngestError::Tiling {
                    key: work.key.clone(),
                    reason: join.to_string(),
                })
            }
        };
        if end < range.end {
            return Ok(Chunk::Rest(end..range.end));
        }
        Ok(Chunk::Done(self.finish(work, manifest.to_json()).await?))
    }

    /// Sends a continuation for `next` to the ingest queue.
    async fn continue_later(
        &self,
        queue: &dyn Queue,
        work: &Work,
        next: Range<u32>,
    ) -> Result<IngestOutcome, IngestError> {
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
        queue.send_batch(&[body]).await?;
        tracing::info!(key = ?work.key, doc_id = %work.doc_id, start = next.start, end = next.end, "continued");
        Ok(IngestOutcome::Continued {
            doc_id: work.doc_id.clone(),
            next,
        })
    }

    /// Writes the manifest if absent and, if this call created it, sends the page jobs.
    async fn finish(&self, work: &Work, manifest: Vec<u8>) -> Result<IngestOutcome, IngestError> {
        let policy = self.config.retry;
        let manifest_key = keys::document_manifest(&work.doc_id);
        let created = retry(policy, "put manifest", || {
            self.store.put_if_absent(&manifest_key, manifest.clone())
        })
        .await?;
        if !created {
            tracing::info!(key = ?work.key, doc_id = %work.doc_id, "manifest already written, jobs already sent");
            return Ok(IngestOutcome::AlreadyDone {
                doc_id: work.doc_id.clone(),
            });
        }
        if let Some(jobs) = &self.jobs {
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
            if let Err(e) = jobs.send_batch(&bodies).await {
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
        }
        tracing::info!(key = ?work.key, doc_id = %work.doc_id, pages = work.page_count, "enqueued");
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
    ) -> Result<IngestOutcome, IngestError> {
        if !e.is_invalid_input() {
            return Err(IngestError::Tiling {
                key: key.to_string(),
                reason: e.to_string(),
            });
        }
        self.reject(ErrorRecord::from_error(doc_id, source, &e))
            .await
    }

    /// Writes `errors/<doc_id>.json`; the upload is then acknowledged, not retried.
    async fn reject(&self, record: ErrorRecord) -> Result<IngestOutcome, IngestError> {
        let key = keys::error_record(&record.doc_id);
        let body = record.to_json();
        retry(self.config.retry, "put error record", || {
            self.store.put(&key, body.clone())
        })
        .await?;
        tracing::warn!(doc_id = %record.doc_id, source = ?record.source, code = %record.code, message = %record.message, "rejected");
        Ok(IngestOutcome::Rejected {
            doc_id: record.doc_id,
            code: record.code,
            message: record.message,
        })
    }
}

/// What one chunk left.
enum Chunk {
    Done(IngestOutcome),
    Rest(Range<u32>),
}

/// A deadline no local run reaches (a day away).
pub fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

/// Sink signal: the invocation's time is nearly spent; `next` is the first page not made.
#[derive(Debug, thiserror::Error)]
#[error("stopping before page {next}: invocation time nearly spent")]
struct StopEarly {
    next: u32,
}
