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
mod config;
mod inflight;
mod io;
pub mod metrics;
mod shutdown;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use sphinx_core::queue::Queue;
use sphinx_core::ObjectStore;
use sphinx_model::Loaded;

pub use complete::{complete_document, Completion, Outputs};
pub use config::{Poison, WorkerConfig};
pub use inflight::InFlight;
pub use shutdown::{exit_now, spawn_grace_guard, Shutdown};

use crate::stream::{Isolation, PageStream};
use inflight::Keeper;
use io::{computed, Computed, Intake, Io, Item, Written};
use metrics::BatchReport;

/// Totals over a worker's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    pub batches: usize,
    pub pages_done: usize,
    pub pages_failed: usize,
    pub released: usize,
    pub documents_completed: usize,
}

/// A micro-batch whose pages are not all settled yet.
struct Open {
    left: usize,
    started: Instant,
    report: BatchReport,
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
        let _keeper = Keeper::spawn(io.queue.clone(), io.inflight.clone(), io.cfg.visibility);
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
