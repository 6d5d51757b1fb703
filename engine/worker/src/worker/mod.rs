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

use crate::batch::{BatchOptions, PreparedPage};
use crate::stream::{Isolation, PageStream};
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
    /// The micro-batch it was received in (for its report).
    batch: u64,
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

/// A micro-batch received from the queue: pages ready for the model, and pages that need
/// none (finished before: deleted once their document is checked).
struct Intake {
    batch: u64,
    messages: usize,
    /// As many messages as were asked for: the queue likely holds more.
    full: bool,
    ready: Vec<(Item, PreparedPage)>,
    finished: Vec<Item>,
    /// Failures met on the way (already recorded or released).
    report: BatchReport,
}

/// What writing a group of pages did, per micro-batch.
#[derive(Default)]
struct Written {
    /// Per micro-batch: pages settled, and the counts for its report.
    batches: BTreeMap<u64, (usize, BatchReport)>,
    documents_completed: usize,
}

impl Written {
    fn entry(&mut self, batch: u64) -> &mut (usize, BatchReport) {
        self.batches.entry(batch).or_default()
    }
}

/// A micro-batch whose pages are not all settled yet.
struct Open {
    left: usize,
    started: Instant,
    report: BatchReport,
}

/// The store and queue side of the worker: receiving, downloading, writing results and
/// deleting messages. Owned (not borrowed) so it runs in background tasks while the
/// model computes.
struct Io {
    store: Arc<dyn ObjectStore>,
    queue: Arc<dyn Queue>,
    cfg: WorkerConfig,
    shutdown: Arc<Shutdown>,
    inflight: Arc<InFlight>,
    tile: sphinx_core::tiling::TileConfig,
    model_id: String,
}

/// The worker over its store, queue and model.
pub struct Worker<'a> {
    loaded: &'a Loaded,
    io: Arc<Io>,
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
            io: Arc::new(Io {
                store,
                queue,
                cfg,
                shutdown,
                inflight: Arc::new(InFlight::default()),
                tile: loaded.tile.clone(),
                model_id: loaded.id.clone(),
            }),
        }
    }

    /// The messages held right now (for a grace-period release from a signal handler).
    pub fn inflight(&self) -> Arc<InFlight> {
        self.io.inflight.clone()
    }

    /// Runs until shutdown or idle exit; `on_batch` sees the report of every micro-batch
    /// once all its pages are settled.
    ///
    /// Pages stream through the model ([`PageStream`]): while it decodes, the next
    /// micro-batch is received and downloaded in the background and its pages join the
    /// running decode as slots free; results are written and messages deleted in the
    /// background too. When the model has nothing to do, the worker long-polls.
    pub async fn run(&self, on_batch: &mut dyn FnMut(&BatchReport)) -> Result<WorkerSummary> {
        let io = &self.io;
        let _keeper = AbortOnDrop(tokio::spawn(keep_visible(
            io.queue.clone(),
            io.inflight.clone(),
            io.cfg.visibility,
        )));
        let mut stream = PageStream::new(self.loaded, &io.cfg.batch, Isolation::PageByPage)?;
        let mut summary = WorkerSummary::default();
        let mut open: BTreeMap<u64, Open> = BTreeMap::new();
        let mut receiving: Option<tokio::task::JoinHandle<Intake>> = None;
        let mut writing: tokio::task::JoinSet<Written> = tokio::task::JoinSet::new();
        let mut next_batch = 0u64;
        let mut last_work = Instant::now();
        loop {
            while let Some(joined) = writing.try_join_next() {
                settle(joined, &mut open, &mut stream, &mut summary, on_batch);
                last_work = Instant::now();
            }
            if stream.is_idle() {
                let intake = match receiving.take() {
                    Some(handle) => handle.await.ok(),
                    None if io.shutdown.requested() => break,
                    None => {
                        next_batch += 1;
                        let want = io.cfg.max_batch_pages;
                        let messages = io.gather(want).await;
                        Some(io.clone().intake(next_batch, want, messages).await)
                    }
                };
                let Some(intake) = intake else { continue };
                if intake.messages == 0 {
                    let idle = io.cfg.idle_exit.is_some_and(|t| last_work.elapsed() >= t);
                    if io.shutdown.requested() || (idle && writing.is_empty()) {
                        if idle {
                            tracing::info!("queue idle, stopping");
                        }
                        break;
                    }
                    if idle {
                        // Results still being written: wait for them before exiting.
                        if let Some(joined) = writing.join_next().await {
                            settle(joined, &mut open, &mut stream, &mut summary, on_batch);
                        }
                    }
                    continue;
                }
                last_work = Instant::now();
                self.accept(intake, &mut stream, &mut open, &mut writing)
                    .await;
                continue;
            }

            // The model is busy: fetch the next micro-batch meanwhile, if there is room.
            if receiving.is_none() && !io.shutdown.requested() {
                let want = stream.room().min(io.cfg.max_batch_pages);
                if want > 0 {
                    next_batch += 1;
                    let (io, batch) = (io.clone(), next_batch);
                    receiving = Some(tokio::spawn(async move {
                        let messages = io.gather(want).await;
                        io.intake(batch, want, messages).await
                    }));
                }
            }
            if receiving.as_ref().is_some_and(|h| h.is_finished()) {
                // Finished: this await does not wait.
                if let Some(handle) = receiving.take() {
                    if let Ok(intake) = handle.await {
                        if intake.messages > 0 {
                            last_work = Instant::now();
                            self.accept(intake, &mut stream, &mut open, &mut writing)
                                .await;
                        }
                    }
                }
            }
            let done = tokio::task::block_in_place(|| stream.advance());
            if !done.is_empty() {
                let io = io.clone();
                writing
                    .spawn(async move { io.write(done.into_iter().map(computed).collect()).await });
            }
        }
        while let Some(joined) = writing.join_next().await {
            settle(joined, &mut open, &mut stream, &mut summary, on_batch);
        }
        summary.released += io.inflight.release_all(io.queue.as_ref()).await;
        Ok(summary)
    }

    /// Opens a received micro-batch: pages for the model go into the stream (or back to
    /// the queue after a shutdown request); finished ones and failures are settled.
    async fn accept(
        &self,
        intake: Intake,
        stream: &mut PageStream<'_, Item>,
        open: &mut BTreeMap<u64, Open>,
        writing: &mut tokio::task::JoinSet<Written>,
    ) {
        let io = &self.io;
        let Intake {
            batch,
            full,
            mut ready,
            finished,
            mut report,
            ..
        } = intake;
        // A full micro-batch means a backlog: a decoder made now gets slots for the next.
        stream.expect(if full { io.cfg.max_batch_pages } else { 0 });
        if io.shutdown.requested() {
            for (item, _) in ready.drain(..) {
                io.release(&item.msg, Duration::ZERO).await;
                report.released += 1;
            }
        }
        open.insert(
            batch,
            Open {
                left: ready.len() + finished.len(),
                started: Instant::now(),
                report,
            },
        );
        let mut settled: Vec<Computed> = Vec::new();
        let failed = tokio::task::block_in_place(|| stream.submit(ready));
        settled.extend(failed.into_iter().map(computed));
        let io2 = io.clone();
        writing.spawn(async move {
            let mut written = io2.write(settled).await;
            // Present even when empty, so a micro-batch with nothing to write is reported.
            written.entry(batch);
            written.documents_completed += io2.settle_finished(finished, &mut written).await;
            written
        });
    }
}

/// A page out of the stream as the worker records it.
fn computed((item, result): (Item, Result<PageResult>)) -> Computed {
    (item, result.map_err(model_failure))
}

/// Folds what a writer did into the open micro-batches; reports the ones now settled.
fn settle(
    joined: Result<Written, tokio::task::JoinError>,
    open: &mut BTreeMap<u64, Open>,
    stream: &mut PageStream<'_, Item>,
    summary: &mut WorkerSummary,
    on_batch: &mut dyn FnMut(&BatchReport),
) {
    let written = match joined {
        Ok(w) => w,
        Err(e) => {
            // Its messages stay held until the visibility timeout: redelivered, not lost.
            tracing::error!(error = %e, "a result writer died");
            return;
        }
    };
    summary.documents_completed += written.documents_completed;
    for (batch, (pages, part)) in written.batches {
        let Some(o) = open.get_mut(&batch) else {
            continue;
        };
        o.left = o.left.saturating_sub(pages);
        o.report.pages_done += part.pages_done;
        o.report.pages_failed += part.pages_failed;
        o.report.released += part.released;
        if o.left == 0 {
            let mut o = open.remove(&batch).expect("looked up above");
            o.report.stats = stream.take_stats();
            o.report.wall = o.started.elapsed();
            summary.batches += 1;
            summary.pages_done += o.report.pages_done;
            summary.pages_failed += o.report.pages_failed;
            summary.released += o.report.released;
            on_batch(&o.report);
        }
    }
}

impl Io {
    /// Receives up to `max` messages: a long poll for the first, then at most
    /// `batch_wait` more to fill the batch. While the model is busy this runs in the
    /// background, so waiting on the queue costs the model nothing and an empty queue
    /// is not polled in a loop. Receive faults are logged and retried later.
    async fn gather(&self, max: usize) -> Vec<Message> {
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
    async fn intake(self: Arc<Self>, batch: u64, asked: usize, messages: Vec<Message>) -> Intake {
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
    async fn write(&self, computed: Vec<Computed>) -> Written {
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
    async fn settle_finished(&self, finished: Vec<Item>, written: &mut Written) -> usize {
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
                message: format!("{e:#}"),
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
    async fn release(&self, msg: &Message, after: Duration) {
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
        message: format!("{e:#}"),
    }
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
