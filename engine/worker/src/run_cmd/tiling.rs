//! Tiling in the background: the staged inputs go through the ingestion library the
//! tiler Lambda runs, several documents at a time, and each document's page jobs reach
//! the model's queue as soon as it is tiled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sphinx_cli::progress::ProgressBar;
use sphinx_core::error_record::describe;
use sphinx_core::ingest::{self, IngestOutcome, Ingestor};
use sphinx_core::job;
use sphinx_core::keys;
use sphinx_core::{DocumentManifest, LocalStore, MemoryQueue, ObjectStore};

use super::report::DocumentOutcome;
use super::staging::Staged;
use crate::worker::Shutdown;

/// Render children beside the model: every core but one, at least one.
pub(super) fn default_tile_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The one progress bar of a run, fed from both sides: its length grows as the tiler
/// queues page jobs, its position as the model settles pages, and its message says how
/// far tiling is and how fast the model goes.
pub(super) struct RunProgress {
    pub(super) bar: ProgressBar,
    queue: Arc<MemoryQueue>,
    documents: usize,
    tiled: AtomicUsize,
    rate: Mutex<String>,
}

impl RunProgress {
    pub(super) fn new(bar: ProgressBar, queue: Arc<MemoryQueue>, documents: usize) -> Self {
        let p = Self {
            bar,
            queue,
            documents,
            tiled: Default::default(),
            rate: Default::default(),
        };
        p.refresh();
        p
    }

    /// One more document tiled (or refused).
    fn tiled(&self) {
        self.tiled.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    /// `settled` more pages done or failed; `rate` says how fast.
    pub(super) fn pages(&self, settled: u64, rate: String) {
        *self.rate.lock().unwrap() = rate;
        self.bar.inc(settled);
        self.refresh();
    }

    fn refresh(&self) {
        self.bar
            .set_length(self.queue.sent().max(self.bar.position()));
        let tiled = self.tiled.load(Ordering::Relaxed);
        let rate = self.rate.lock().unwrap().clone();
        self.bar.set_message(if tiled < self.documents {
            format!("tiled {tiled}/{} documents  {rate}", self.documents)
        } else {
            rate
        });
    }
}

/// Tiles the staged inputs `threads` documents at a time; their page jobs go to the
/// model's queue as each is done. Outcomes come back in input order, whatever order
/// tiling finished in; after a shutdown request the documents not yet begun are reported
/// as not tiled.
pub(super) async fn tile_all(
    ingestor: Arc<Ingestor>,
    store: Arc<LocalStore>,
    staged: Vec<Staged>,
    threads: usize,
    shutdown: Arc<Shutdown>,
    progress: Arc<RunProgress>,
) -> Vec<DocumentOutcome> {
    let mut outcomes: Vec<Option<DocumentOutcome>> = vec![None; staged.len()];
    let mut running = tokio::task::JoinSet::new();
    let mut next = staged.iter().enumerate();
    loop {
        while running.len() < threads && !shutdown.requested() {
            let Some((i, input)) = next.next() else {
                break;
            };
            if let Some(problem) = &input.problem {
                let mut outcome = DocumentOutcome::new(&input.source);
                outcome.error = Some(problem.clone());
                outcomes[i] = Some(outcome);
                progress.tiled();
                continue;
            }
            let (ingestor, store, source) = (ingestor.clone(), store.clone(), input.source.clone());
            running.spawn(async move { (i, tile_one(&ingestor, store.as_ref(), &source).await) });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok((i, outcome)) => outcomes[i] = Some(outcome),
            // A panic in the ingestion library: that document fails, the rest go on.
            Err(e) => tracing::error!(error = %e, "a tiling task died"),
        }
        progress.tiled();
    }
    outcomes
        .into_iter()
        .zip(&staged)
        .map(|(outcome, input)| {
            outcome.unwrap_or_else(|| {
                let mut o = DocumentOutcome::new(&input.source);
                o.interrupted = shutdown.requested();
                o.error = Some(if o.interrupted {
                    "not tiled: the run was interrupted (the same command again finishes it)"
                        .to_string()
                } else {
                    "not tiled: its tiling task died (see the log)".to_string()
                });
                o
            })
        })
        .collect()
}

/// Tiles one staged input (a long document is finished in one call; a document tiled by
/// an earlier run gets jobs again for its pages that have no result yet).
async fn tile_one(ingestor: &Ingestor, store: &dyn ObjectStore, source: &str) -> DocumentOutcome {
    let mut outcome = DocumentOutcome::new(source);
    if job::is_sidecar(source) {
        // `x.pdf.job.json` beside `x.pdf` names x.pdf's tasks, as in the inbox.
        outcome.skipped = Some("job sidecar: the tasks of the document it is named for".into());
        return outcome;
    }
    let key = keys::upload(&ingestor.config().inbox_prefix, source);
    let doc_id = match ingestor.ingest_upload(&key, ingest::far_deadline()).await {
        Ok(IngestOutcome::Rejected { code, message, .. }) => {
            outcome.code = Some(code.to_string());
            outcome.error = Some(message);
            return outcome;
        }
        Ok(IngestOutcome::Ignored { reason }) => {
            outcome.error = Some(format!("ignored: {reason}"));
            return outcome;
        }
        Ok(
            IngestOutcome::AlreadyDone { doc_id }
            | IngestOutcome::Continued { doc_id, .. }
            | IngestOutcome::Enqueued { doc_id, .. },
        ) => doc_id,
        Err(e) => {
            outcome.error = Some(describe(&e.into()));
            return outcome;
        }
    };
    let manifest_key = keys::document_manifest(&doc_id);
    let manifest = match store.get(&manifest_key).await {
        Ok(bytes) => DocumentManifest::from_json(&bytes).map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    match manifest {
        Ok(m) => {
            outcome.pages = m.page_count;
            outcome.doc_id = Some(doc_id);
        }
        Err(e) => outcome.error = Some(format!("cannot read {manifest_key}: {}", describe(&e))),
    }
    outcome
}
