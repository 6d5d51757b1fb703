//! The queue worker behind `sphinx serve` (S3 + SQS) and `sphinx run` (local store +
//! in-process queue): receive page jobs, run them in micro-batches across documents,
//! write one result per page, and delete each message only after its result is durable.
//!
//! Guarantees, each tested end to end:
//! - **Nothing lost.** A message is deleted after its `results/<doc_id>/page-NNNN.json`
//!   is written; a worker killed at any moment leaves its messages to reappear after
//!   the visibility timeout, and the rewrite of a result is idempotent (same key).
//! - **No double work for finished pages.** A job whose result already exists is
//!   deleted without running the model (redeliveries, reruns of `sphinx run`).
//! - **Poison jobs end readable.** A job that can never succeed (corrupt bundle, layout
//!   mismatch, a page the model refuses) gets `errors/<doc_id>/page-NNNN.json`; in
//!   the cloud its message then reaches the dead-letter queue through the redrive
//!   policy, locally it is deleted. One bad page never fails its batch.
//! - **Long batches stay owned.** While a batch runs, a keeper extends the visibility
//!   of its messages, so no other worker picks them up.
//! - **Clean shutdown.** On SIGTERM polling stops, the running batch finishes if it
//!   fits in the grace period, and whatever remains is released (visibility 0).

mod complete;
pub mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use sphinx_core::keys;
use sphinx_core::queue::{Message, Queue, MAX_BATCH, MAX_WAIT};
use sphinx_core::retry::{retry, RetryPolicy};
use sphinx_core::ObjectStore;
use sphinx_core::PageBundle;
use sphinx_core::PageJob;
use sphinx_core::PageResult;
use sphinx_core::{ErrorCode, ErrorRecord};
use tokio::sync::Notify;

pub use complete::{complete_document, Completion, Outputs};
use metrics::BatchReport;

use crate::batch::{run_batch, BatchOptions, BatchStats, PreparedPage};
use sphinx_model::Loaded;

/// What happens to a job that can never succeed, after its error record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// Leave it undeleted: the queue's redrive policy moves it to the dead-letter queue
    /// after `maxReceiveCount` receives (SQS).
    DeadLetter,
    /// Delete it: a queue without a dead-letter queue (local mode) must not loop.
    Delete,
}

/// Worker settings; `Default` is the production worker's.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most pages per micro-batch.
    pub max_batch_pages: usize,
    /// After the first message arrives, how long to wait for more to fill the batch.
    pub batch_wait: Duration,
    /// Long-poll wait of an empty queue (at most 20 s).
    pub poll_wait: Duration,
    /// Visibility timeout set on receive and renewed by the keeper every third of it.
    pub visibility: Duration,
    /// Stop after this long without any message (`None`: never).
    pub idle_exit: Option<Duration>,
    /// How long a message is hidden again after a transient fault.
    pub release_backoff: Duration,
    /// Bundles downloaded at the same time.
    pub downloads: usize,
    pub poison: Poison,
    pub retry: RetryPolicy,
    pub batch: BatchOptions,
    /// The result files written when a document completes.
    pub outputs: Outputs,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_batch_pages: 16,
            batch_wait: Duration::from_secs(2),
            poll_wait: MAX_WAIT,
            visibility: Duration::from_secs(300),
            idle_exit: None,
            release_backoff: Duration::from_secs(10),
            downloads: 8,
            poison: Poison::DeadLetter,
            retry: RetryPolicy {
                attempts: 4,
                base: Duration::from_millis(200),
            },
            batch: BatchOptions::default(),
            outputs: Outputs::default(),
        }
    }
}

/// A shutdown request (SIGTERM, ctrl-c) shared by the worker and the signal handler.
#[derive(Debug, Default)]
pub struct Shutdown {
    requested: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a shutdown is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

/// Receipts of the messages this worker holds right now.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<BTreeSet<String>>);

impl InFlight {
    fn add(&self, receipt: &str) {
        self.0.lock().unwrap().insert(receipt.to_owned());
    }

    fn remove(&self, receipt: &str) {
        self.0.lock().unwrap().remove(receipt);
    }

    fn receipts(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }

    /// Makes every held message visible again now (shutdown), returning how many.
    pub async fn release_all(&self, queue: &dyn Queue) -> usize {
        let mut released = 0;
        for receipt in self.receipts() {
            match queue.change_visibility(&receipt, Duration::ZERO).await {
                Ok(()) => released += 1,
                Err(e) => tracing::warn!(error = %e, "could not release a message"),
            }
            self.remove(&receipt);
        }
        released
    }
}

/// Totals over a worker's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    pub batches: usize,
    pub pages_done: usize,
    pub pages_failed: usize,
    pub released: usize,
    pub documents_completed: usize,
}

/// One received message and what became of it.
struct Item {
    msg: Message,
    job: PageJob,
}

/// A page after the model: its result or why it has none.
type Computed = (Item, Result<PageResult, PageFailure>);

/// Why a page could not be processed.
enum PageFailure {
    /// Will fail the same way every time: recorded, then [`Poison`] applies.
    Permanent { code: ErrorCode, message: String },
    /// May succeed later (store/queue outage): the message is released.
    Transient(String),
}

/// The worker over its store, queue and model.
pub struct Worker<'a> {
    loaded: &'a Loaded,
    store: Arc<dyn ObjectStore>,
    queue: Arc<dyn Queue>,
    cfg: WorkerConfig,
    shutdown: Arc<Shutdown>,
    inflight: Arc<InFlight>,
}

impl<'a> Worker<'a> {
    pub fn new(
        loaded: &'a Loaded,
        store: Arc<dyn ObjectStore>,
        queue: Arc<dyn Queue>,
        cfg: WorkerConfig,
        shutdown: Arc<Shutdown>,
    ) -> Self {
        Self {
            loaded,
            store,
            queue,
            cfg,
            shutdown,
            inflight: Arc::new(InFlight::default()),
        }
    }

    /// The messages held right now (for a grace-period release from a signal handler).
    pub fn inflight(&self) -> Arc<InFlight> {
        self.inflight.clone()
    }

    /// Runs until shutdown or idle exit; `on_batch` sees every batch report.
    pub async fn run(&self, on_batch: &mut dyn FnMut(&BatchReport)) -> Result<WorkerSummary> {
        let _keeper = AbortOnDrop(tokio::spawn(keep_visible(
            self.queue.clone(),
            self.inflight.clone(),
            self.cfg.visibility,
        )));
        let mut summary = WorkerSummary::default();
        let mut last_work = Instant::now();
        while !self.shutdown.requested() {
            let messages = self.gather().await;
            if messages.is_empty() {
                if self
                    .cfg
                    .idle_exit
                    .is_some_and(|idle| last_work.elapsed() >= idle)
                {
                    tracing::info!("queue idle, stopping");
                    break;
                }
                continue;
            }
            if self.shutdown.requested() {
                summary.released += self.inflight.release_all(self.queue.as_ref()).await;
                break;
            }
            let report = self.process(messages, &mut summary).await;
            summary.batches += 1;
            summary.pages_done += report.pages_done;
            summary.pages_failed += report.pages_failed;
            summary.released += report.released;
            on_batch(&report);
            last_work = Instant::now();
        }
        summary.released += self.inflight.release_all(self.queue.as_ref()).await;
        Ok(summary)
    }

    /// Receives up to `max_batch_pages` messages: a long poll for the first, then at most
    /// `batch_wait` more to fill the batch. Receive faults are logged and retried later.
    async fn gather(&self) -> Vec<Message> {
        let mut got: Vec<Message> = Vec::new();
        let mut fill_until = None;
        loop {
            let want = (self.cfg.max_batch_pages - got.len()).min(MAX_BATCH);
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
                    if got.len() >= self.cfg.max_batch_pages
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

    /// One micro-batch: parse, skip finished pages, download, run, write, complete, delete.
    async fn process(&self, messages: Vec<Message>, summary: &mut WorkerSummary) -> BatchReport {
        let started = Instant::now();
        let mut report = BatchReport::default();
        let mut items = Vec::new();
        for msg in messages {
            match PageJob::from_json(&msg.body) {
                Ok(job) => items.push(Item { msg, job }),
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

        let (computed, stats) = self.compute(ready);
        report.stats = stats;
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
                Err(f) => self.fail(Some(&item.job), &item.msg, f, &mut report).await,
            }
        }

        // Results are durable: complete documents, then delete the messages.
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
                    summary.documents_completed += 1;
                    tracing::info!(doc_id, "document complete, merged result written");
                }
                Ok(other) => tracing::debug!(doc_id, ?other, "document completion"),
                // The pages are durable; the next page of this document (or a redelivery)
                // tries again, so the messages may still be deleted.
                Err(e) => tracing::warn!(doc_id, error = %e, "completion check failed"),
            }
        }
        for item in finished {
            report.pages_done += 1;
            self.delete(&item.msg).await;
        }
        report.wall = started.elapsed();
        report
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
        PreparedPage::from_bundle(&bundle, job, &self.loaded.tile, &self.loaded.id).map_err(|e| {
            PageFailure::Permanent {
                code: ErrorCode::BadBundle,
                message: format!("{e:#}"),
            }
        })
    }

    /// Runs the batch; if it fails as a whole, each page alone, so one page the model
    /// refuses fails only itself.
    fn compute(&self, ready: Vec<(Item, PreparedPage)>) -> (Vec<Computed>, BatchStats) {
        if ready.is_empty() {
            return (Vec::new(), BatchStats::default());
        }
        let (items, pages): (Vec<Item>, Vec<PreparedPage>) = ready.into_iter().unzip();
        let batch = tokio::task::block_in_place(|| run_batch(self.loaded, &pages, &self.cfg.batch));
        match batch {
            Ok((results, stats)) => (
                items.into_iter().zip(results.into_iter().map(Ok)).collect(),
                stats,
            ),
            Err(e) if pages.len() > 1 => {
                tracing::warn!(error = %format!("{e:#}"), pages = pages.len(), "batch failed, retrying page by page");
                let mut stats = BatchStats::default();
                let mut out = Vec::new();
                for (item, page) in items.into_iter().zip(pages) {
                    let one = tokio::task::block_in_place(|| {
                        run_batch(self.loaded, std::slice::from_ref(&page), &self.cfg.batch)
                    });
                    out.push((
                        item,
                        match one {
                            Ok((mut r, s)) => {
                                add_stats(&mut stats, &s);
                                Ok(r.remove(0))
                            }
                            Err(e) => Err(model_failure(e)),
                        },
                    ));
                }
                (out, stats)
            }
            Err(e) => (
                items
                    .into_iter()
                    .map(|item| (item, Err(model_failure(e.clone_display()))))
                    .collect(),
                BatchStats::default(),
            ),
        }
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
        message: format!("{e:#}"),
    }
}

trait CloneDisplay {
    fn clone_display(&self) -> anyhow::Error;
}

impl CloneDisplay for anyhow::Error {
    fn clone_display(&self) -> anyhow::Error {
        anyhow::anyhow!("{self:#}")
    }
}

fn add_stats(total: &mut BatchStats, s: &BatchStats) {
    total.pages += s.pages;
    total.views += s.views;
    total.rows += s.rows;
    total.generated_tokens += s.generated_tokens;
    total.encode += s.encode;
    total.prefill += s.prefill;
    total.decode += s.decode;
}

/// Renews the visibility of every held message every third of `visibility`.
async fn keep_visible(queue: Arc<dyn Queue>, inflight: Arc<InFlight>, visibility: Duration) {
    let every = (visibility / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        for receipt in inflight.receipts() {
            if let Err(e) = queue.change_visibility(&receipt, visibility).await {
                tracing::warn!(error = %e, "could not extend visibility");
            }
        }
    }
}

/// Aborts a background task when the owner goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// After a shutdown request, gives the worker `grace` to finish its batch; then releases
/// what it still holds and exits the process (a Spot reclaim will not wait longer).
pub fn spawn_grace_guard(
    shutdown: Arc<Shutdown>,
    inflight: Arc<InFlight>,
    queue: Arc<dyn Queue>,
    grace: Duration,
) {
    tokio::spawn(async move {
        shutdown.wait().await;
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutdown requested, finishing the batch"
        );
        tokio::time::sleep(grace).await;
        let released = inflight.release_all(queue.as_ref()).await;
        tracing::warn!(released, "grace period over, released unfinished messages");
        std::process::exit(0);
    });
}
