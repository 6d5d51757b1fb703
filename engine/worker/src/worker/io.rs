//! The store and queue side of the worker: receiving micro-batches, downloading and
//! preparing their bundles, writing results and error records, completing documents and
//! deleting messages once their outputs are durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use sphinx_core::error_record::describe;
use sphinx_core::keys;
use sphinx_core::queue::{Message, Queue, MAX_BATCH, MAX_WAIT};
use sphinx_core::retry::retry;
use sphinx_core::ObjectStore;
use sphinx_core::PageBundle;
use sphinx_core::PageJob;
use sphinx_core::PageResult;
use sphinx_core::{ErrorCode, ErrorRecord};

use super::complete::{complete_document, Completion};
use super::config::{Poison, WorkerConfig};
use super::inflight::InFlight;
use super::metrics::BatchReport;
use super::shutdown::Shutdown;
use crate::batch::PreparedPage;

/// One received message and what became of it.
pub(super) struct Item {
    pub(super) msg: Message,
    pub(super) job: PageJob,
    /// The micro-batch it was received in (for its report).
    pub(super) batch: u64,
}

/// A page after the model: its result or why it has none.
pub(super) type Computed = (Item, Result<PageResult, PageFailure>);

/// Why a page could not be processed.
pub(super) enum PageFailure {
    /// Will fail the same way every time: recorded, then [`Poison`] applies.
    Permanent { code: ErrorCode, message: String },
    /// May succeed later (store/queue outage): the message is released.
    Transient(String),
}

/// A micro-batch received from the queue: pages ready for the model, and pages that need
/// none (finished before: deleted once their document is checked).
pub(super) struct Intake {
    pub(super) batch: u64,
    pub(super) messages: usize,
    /// As many messages as were asked for: the queue likely holds more.
    pub(super) full: bool,
    pub(super) ready: Vec<(Item, PreparedPage)>,
    pub(super) finished: Vec<Item>,
    /// Failures met on the way (already recorded or released).
    pub(super) report: BatchReport,
}

/// What writing a group of pages did, per micro-batch.
#[derive(Default)]
pub(super) struct Written {
    /// Per micro-batch: pages settled, and the counts for its report.
    pub(super) batches: BTreeMap<u64, (usize, BatchReport)>,
    pub(super) documents_completed: usize,
}

impl Written {
    pub(super) fn entry(&mut self, batch: u64) -> &mut (usize, BatchReport) {
        self.batches.entry(batch).or_default()
    }
}

/// The store and queue side of the worker: receiving, downloading, writing results and
/// deleting messages. Owned (not borrowed) so it runs in background tasks while the
/// model computes.
pub(super) struct Io {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) queue: Arc<dyn Queue>,
    pub(super) cfg: WorkerConfig,
    pub(super) shutdown: Arc<Shutdown>,
    pub(super) inflight: Arc<InFlight>,
    pub(super) tile: sphinx_core::tiling::TileConfig,
    pub(super) model_id: String,
}

/// A page out of the stream as the worker records it.
pub(super) fn computed((item, result): (Item, Result<PageResult>)) -> Computed {
    (item, result.map_err(model_failure))
}

impl Io {
    /// Receives up to `max` messages: a long poll for the first, then at most
    /// `batch_wait` more to fill the batch. While the model is busy this runs in the
    /// background, so waiting on the queue costs the model nothing and an empty queue
    /// is not polled in a loop. Receive faults are logged and retried later.
    pub(super) async fn gather(&self, max: usize) -> Vec<Message> {
        let mut got: Vec<Message> = Vec::new();
        let mut fill_until = None;
        loop {
            let want = (max - got.len()).min(MAX_BATCH);
            let wait = match fill_until {
                None => self.cfg.poll_wait,
                Some(t) => {
                    let left: Duration = t - Instant::now().min(t);
                    // SQS waits in whole seconds; 0 is a short poll.
                    Duration::from_secs(left.as_secs())
                }
            };
            let received = tokio::select! {
                r = self.queue.receive(want, wait.min(MAX_WAIT), self.cfg.visibility) => r,
                _ = self.shutdown.wait(), if got.is_empty() => return got,
            };
            match received {
                Ok(batch) => {
                    for m in &batch {
                        self.inflight.add(&m.receipt);
                    }
                    let empty = batch.is_empty();
                    got.extend(batch);
                    if got.is_empty() {
                        return got;
                    }
                    let until = *fill_until.get_or_insert(Instant::now() + self.cfg.batch_wait);
                    if got.len() >= max
                        || Instant::now() >= until
                        || (empty && wait.is_zero())
                        || self.shutdown.requested()
                    {
                        return got;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    if !got.is_empty() {
                        return got;
                    }
                    tokio::time::sleep(self.cfg.release_backoff.min(Duration::from_secs(5))).await;
                    return got;
                }
            }
        }
    }

    /// Parses the messages, sets aside pages finished before, downloads and prepares
    /// the rest.
    pub(super) async fn intake(
        self: Arc<Self>,
        batch: u64,
        asked: usize,
        messages: Vec<Message>,
    ) -> Intake {
        let mut report = BatchReport::default();
        let count = messages.len();
        let mut items = Vec::new();
        for msg in messages {
            match PageJob::from_json(&msg.body) {
                Ok(job) => items.push(Item { msg, job, batch }),
                Err(e) => {
                    let failure = PageFailure::Permanent {
                        code: ErrorCode::InvalidJob,
                        message: format!("message {}: {e}", msg.id),
                    };
                    self.fail(None, &msg, failure, &mut report).await;
                }
            }
        }

        // Pages finished before (redelivery after a crash, a rerun): no model work.
        let mut todo = Vec::new();
        let mut finished = Vec::new();
        for item in items {
            let key = keys::page_result(&item.job.doc_id, item.job.page_index);
            match retry(self.cfg.retry, "head page result", || self.store.head(&key)).await {
                Ok(_) => finished.push(item),
                Err(e) if e.is_not_found() => todo.push(item),
                Err(e) => {
                    let f = PageFailure::Transient(e.to_string());
                    self.fail(Some(&item.job), &item.msg, f, &mut report).await;
                }
            }
        }

        let mut ready = Vec::new();
        for (item, fetched) in self.download(todo).await {
            match fetched.and_then(|bundle| self.prepare(&item.job, bundle)) {
                Ok(page) => ready.push((item, page)),
                Err(f) => self.fail(Some(&item.job), &item.msg, f, &mut report).await,
            }
        }
        Intake {
            batch,
            messages: count,
            full: count >= asked,
            ready,
            finished,
            report,
        }
    }

    /// Writes each page's result (or records its failure), completes the documents whose
    /// pages are now all durable, then deletes the messages of the pages written.
    pub(super) async fn write(&self, computed: Vec<Computed>) -> Written {
        let mut written = Written::default();
        let mut finished = Vec::new();
        for (item, outcome) in computed {
            let write = match outcome {
                Ok(result) => match result.to_json() {
                    Ok(body) => {
                        let key = keys::page_result(&item.job.doc_id, item.job.page_index);
                        retry(self.cfg.retry, "write page result", || {
                            self.store.put(&key, body.clone())
                        })
                        .await
                        .map_err(|e| PageFailure::Transient(e.to_string()))
                    }
                    Err(e) => Err(PageFailure::Permanent {
                        code: ErrorCode::ResultEncoding,
                        message: e.to_string(),
                    }),
                },
                Err(f) => Err(f),
            };
            match write {
                Ok(()) => finished.push(item),
                Err(f) => {
                    let entry = written.entry(item.batch);
                    entry.0 += 1;
                    self.fail(Some(&item.job), &item.msg, f, &mut entry.1).await;
                }
            }
        }
        written.documents_completed += self.settle_finished(finished, &mut written).await;
        written
    }

    /// Pages whose results are durable: complete their documents, then delete their
    /// messages. Returns the documents completed.
    pub(super) async fn settle_finished(
        &self,
        finished: Vec<Item>,
        written: &mut Written,
    ) -> usize {
        let mut completed = 0;
        let mut docs = BTreeMap::new();
        for item in &finished {
            docs.insert(
                item.job.doc_id.clone(),
                (item.job.source.clone(), item.job.page_count),
            );
        }
        for (doc_id, (source, page_count)) in docs {
            let done = complete_document(
                self.store.as_ref(),
                &doc_id,
                &source,
                page_count,
                self.cfg.retry,
                &self.cfg.outputs,
            );
            match done.await {
                Ok(Completion::Written) => {
                    completed += 1;
                    tracing::info!(doc_id, "document complete, merged result written");
                }
                Ok(other) => tracing::debug!(doc_id, ?other, "document completion"),
                // The pages are durable; the next page of this document (or a redelivery)
                // tries again, so the messages may still be deleted.
                Err(e) => tracing::warn!(doc_id, error = %e, "completion check failed"),
            }
        }
        for item in finished {
            let entry = written.entry(item.batch);
            entry.0 += 1;
            entry.1.pages_done += 1;
            self.delete(&item.msg).await;
        }
        completed
    }

    /// Downloads the bundles of `items`, `downloads` at a time, keeping their order.
    async fn download(&self, items: Vec<Item>) -> Vec<(Item, Result<Vec<u8>, PageFailure>)> {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.cfg.downloads.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let (store, key, policy) = (
                self.store.clone(),
                item.job.bundle_key.clone(),
                self.cfg.retry,
            );
            let semaphore = semaphore.clone();
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let got = retry(policy, "get bundle", || store.get(&key)).await;
                (i, got)
            });
        }
        let mut fetched: Vec<Option<Result<Vec<u8>, PageFailure>>> =
            items.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let Ok((i, got)) = joined else { continue };
            fetched[i] = Some(got.map_err(|e| {
                if e.is_not_found() {
                    PageFailure::Permanent {
                        code: ErrorCode::MissingBundle,
                        message: e.to_string(),
                    }
                } else {
                    PageFailure::Transient(e.to_string())
                }
            }));
        }
        items
            .into_iter()
            .zip(fetched)
            .map(|(item, got)| {
                let got = got.unwrap_or_else(|| {
                    Err(PageFailure::Transient(
                        "download task did not finish".into(),
                    ))
                });
                (item, got)
            })
            .collect()
    }

    fn prepare(&self, job: &PageJob, bytes: Vec<u8>) -> Result<PreparedPage, PageFailure> {
        let bundle = PageBundle::decode(bytes).map_err(|e| PageFailure::Permanent {
            code: ErrorCode::BadBundle,
            message: format!("{}: {e}", job.bundle_key),
        })?;
        PreparedPage::from_bundle(&bundle, job, &self.tile, &self.model_id).map_err(|e| {
            PageFailure::Permanent {
                code: ErrorCode::BadBundle,
                message: describe(&e),
            }
        })
    }

    /// Records a failure and applies the poison policy or releases the message.
    async fn fail(
        &self,
        job: Option<&PageJob>,
        msg: &Message,
        failure: PageFailure,
        report: &mut BatchReport,
    ) {
        match failure {
            PageFailure::Transient(reason) => {
                tracing::warn!(message_id = %msg.id, %reason, "transient failure, releasing");
                let backoff = self.cfg.release_backoff;
                if let Err(e) = self.queue.change_visibility(&msg.receipt, backoff).await {
                    tracing::warn!(error = %e, "could not release a message");
                }
                self.inflight.remove(&msg.receipt);
                report.released += 1;
            }
            PageFailure::Permanent { code, message } => {
                report.pages_failed += 1;
                let (key, record) = match job {
                    Some(job) => (
                        keys::page_error(&job.doc_id, job.page_index),
                        ErrorRecord::new(
                            &job.doc_id,
                            &job.source,
                            code,
                            message.clone(),
                            Some(job.page_index),
                        ),
                    ),
                    None => (
                        keys::job_error(&msg.id),
                        ErrorRecord::new(
                            "",
                            &format!("infer queue message {}", msg.id),
                            code,
                            message.clone(),
                            None,
                        ),
                    ),
                };
                tracing::error!(message_id = %msg.id, code = code.as_str(), %message, key, "page failed for good");
                let body = record.to_json();
                let written = retry(self.cfg.retry, "write error record", || {
                    self.store.put(&key, body.clone())
                })
                .await;
                match (written, self.cfg.poison) {
                    (Err(e), _) => {
                        // Without its record the failure would be silent: keep the message.
                        tracing::warn!(error = %e, "could not write the error record");
                        self.inflight.remove(&msg.receipt);
                    }
                    (Ok(()), Poison::Delete) => self.delete(msg).await,
                    (Ok(()), Poison::DeadLetter) => {
                        let backoff = self.cfg.release_backoff;
                        if let Err(e) = self.queue.change_visibility(&msg.receipt, backoff).await {
                            tracing::warn!(error = %e, "could not release a poison message");
                        }
                        self.inflight.remove(&msg.receipt);
                    }
                }
                if let Some(job) = job {
                    let _ = complete_document(
                        self.store.as_ref(),
                        &job.doc_id,
                        &job.source,
                        job.page_count,
                        self.cfg.retry,
                        &self.cfg.outputs,
                    )
                    .await;
                }
            }
        }
    }

    /// Makes a held message visible again after `after`.
    pub(super) async fn release(&self, msg: &Message, after: Duration) {
        if let Err(e) = self.queue.change_visibility(&msg.receipt, after).await {
            tracing::warn!(error = %e, "could not release a message");
        }
        self.inflight.remove(&msg.receipt);
    }

    async fn delete(&self, msg: &Message) {
        if let Err(e) = retry(self.cfg.retry, "delete message", || {
            self.queue.delete(&msg.receipt)
        })
        .await
        {
            // The result is durable; a redelivery finds it and deletes then.
            tracing::warn!(message_id = %msg.id, error = %e, "could not delete a finished message");
        }
        self.inflight.remove(&msg.receipt);
    }
}

fn model_failure(e: anyhow::Error) -> PageFailure {
    PageFailure::Permanent {
        code: ErrorCode::ModelError,
        message: describe(&e),
    }
}
