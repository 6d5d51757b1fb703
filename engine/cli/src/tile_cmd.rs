//! `sphinx tile`: documents -> page bundles in a local store, laid out exactly as the
//! tiler Lambda lays them out in S3 (`work/<doc_id>/...`, `errors/<doc_id>.json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use sphinx_core::bundle;
use sphinx_core::error_record::describe;
use sphinx_core::job;
use sphinx_core::keys;
use sphinx_core::DocumentManifest;
use sphinx_core::Isolation;
use sphinx_core::LocalStore;
use sphinx_core::TileOptions;
use sphinx_core::{IngestConfig, IngestOutcome, Ingestor};
use sphinx_core::{LayoutArgs, LimitArgs};

use crate::inputs;

#[derive(Debug, Args)]
pub struct TileArgs {
    /// Files and folders to tile (folders recursively; types are sniffed from bytes).
    #[arg(required_unless_present = "extract")]
    pub inputs: Vec<PathBuf>,
    /// Output root: bundles go to <out>/work/<doc_id>/, failures to <out>/errors/.
    #[arg(long, required_unless_present = "extract")]
    pub out: Option<PathBuf>,
    /// Instead of tiling: unpack one page bundle into viewable PNGs + manifest.json.
    #[arg(long, num_args = 2, value_names = ["BUNDLE", "DIR"], conflicts_with_all = ["inputs", "out"])]
    pub extract: Option<Vec<PathBuf>>,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Documents tiled at the same time (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Open and render documents in this process instead of a child process under hard
    /// limits: only for inputs you trust (the tiling benchmark's baseline).
    #[arg(long)]
    pub render_in_process: bool,
}

/// The store name ingestion gives local documents (nothing is sent anywhere).
const LOCAL_BUCKET: &str = "local";
/// Exit status when at least one document failed (the others are still done).
const EXIT_SOME_FAILED: u8 = 2;

pub fn run(args: TileArgs) -> Result<ExitCode> {
    if let Some(pair) = &args.extract {
        let summary = bundle::extract_to_dir(&pair[0], &pair[1])
            .with_context(|| format!("cannot extract {}", pair[0].display()))?;
        crate::stdout::line(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = args
        .out
        .clone()
        .expect("clap requires --out without --extract");
    let opts = TileOptions {
        tile: args.layout.config(),
        limits: args.limits.limits(),
        isolation: if args.render_in_process {
            Isolation::InProcess
        } else {
            Isolation::this_binary()
        },
    };
    opts.tile
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid --canvas/--grid: {e}"))?;
    let (sidecars, files): (Vec<PathBuf>, Vec<PathBuf>) = inputs::collect(&args.inputs, &out)?
        .into_iter()
        .partition(|f| job::is_sidecar(&f.to_string_lossy()));
    if !sidecars.is_empty() {
        eprintln!(
            "left out {} job sidecar(s) (*{}): they name a document's tasks, which tiling \
             does not use",
            sidecars.len(),
            job::JOB_SPEC_SUFFIX
        );
    }
    if files.is_empty() {
        anyhow::bail!("no files found in the given inputs");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let store =
        Arc::new(LocalStore::new(&out).with_context(|| format!("cannot use {}", out.display()))?);
    let progress = crate::progress::bar(files.len() as u64, "documents", args.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.min(4))
        .enable_all()
        .build()?;
    let summary = runtime.block_on(tile_files(
        &files,
        &args.inputs,
        store,
        opts,
        threads,
        &progress,
    ));
    progress.finish_and_clear();
    crate::stdout::line(&summary)?;
    for failure in summary.failures.lock().unwrap().iter() {
        eprintln!("failed: {}", crate::stdout::printable(failure));
    }
    Ok(if summary.errors.load(Ordering::Relaxed) > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Totals printed at the end of a run.
#[derive(Default)]
pub struct TileTotals {
    documents: AtomicU64,
    pages: AtomicU64,
    views: AtomicU64,
    skips: AtomicU64,
    errors: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl std::fmt::Display for TileTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "documents: {}  pages: {}  views: {}  skips: {}  errors: {}",
            self.documents.load(Ordering::Relaxed),
            self.pages.load(Ordering::Relaxed),
            self.views.load(Ordering::Relaxed),
            self.skips.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Tiles every file with `threads` documents in flight, through the ingestion library
/// the tiler Lambda runs (no job queue: bundles, manifests and error records only); a
/// failed document is counted and recorded, never allowed to stop the others.
async fn tile_files(
    files: &[PathBuf],
    roots: &[PathBuf],
    store: Arc<LocalStore>,
    opts: TileOptions,
    threads: usize,
    progress: &ProgressBar,
) -> TileTotals {
    // Without a job queue the tasks are never used.
    let config = IngestConfig::local(LOCAL_BUCKET, Vec::new(), opts);
    let ingestor = Arc::new(Ingestor::new(store.clone(), None, None, config));
    let summary = TileTotals::default();
    let mut running = tokio::task::JoinSet::new();
    let mut next = files.iter().zip(inputs::names(files, roots));
    loop {
        while running.len() < threads {
            let Some((file, source)) = next.next() else {
                break;
            };
            progress.set_message(source.clone());
            let (ingestor, file) = (ingestor.clone(), file.clone());
            running.spawn(async move {
                let outcome = tile_file(&ingestor, &file, &source).await;
                (file, outcome)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (file, outcome) = match joined {
            Ok(done) => done,
            Err(e) => (
                PathBuf::from("?"),
                Err(anyhow::anyhow!("tiling task failed: {e}")),
            ),
        };
        match outcome.and_then(|o| tiled_document(&store, o)) {
            Ok(totals) => {
                summary.documents.fetch_add(1, Ordering::Relaxed);
                summary.pages.fetch_add(totals.0, Ordering::Relaxed);
                summary.views.fetch_add(totals.1, Ordering::Relaxed);
                summary.skips.fetch_add(totals.2, Ordering::Relaxed);
            }
            Err(err) => {
                summary.errors.fetch_add(1, Ordering::Relaxed);
                summary.failures.lock().unwrap().push(format!(
                    "{}: {}",
                    file.display(),
                    describe(&err)
                ));
            }
        }
        progress.inc(1);
    }
    summary
}

/// One file through [`Ingestor::ingest_bytes`]; a file over the byte limit is never
/// read whole: its error record is written under the id of its streamed hash.
async fn tile_file(ingestor: &Ingestor, file: &Path, source: &str) -> Result<IngestOutcome> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if size > ingestor.config().tile.limits.max_bytes {
        let doc_id = keys::doc_id_of_reader(std::fs::File::open(file)?)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return Ok(ingestor.reject_too_large(&doc_id, source, size).await?);
    }
    let bytes =
        Arc::new(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?);
    Ok(ingestor.ingest_bytes(source, bytes).await?)
}

/// Pages, views and skips of a tiled document (from its manifest), or why it failed.
fn tiled_document(store: &LocalStore, outcome: IngestOutcome) -> Result<(u64, u64, u64)> {
    let doc_id = match outcome {
        IngestOutcome::Enqueued { doc_id, .. } | IngestOutcome::AlreadyDone { doc_id } => doc_id,
        IngestOutcome::Rejected {
            doc_id, message, ..
        } => {
            anyhow::bail!("{}: {message}", keys::error_record(&doc_id))
        }
        IngestOutcome::Continued { doc_id, next } => {
            anyhow::bail!("{doc_id}: pages {next:?} were left untiled")
        }
        IngestOutcome::Ignored { reason } => anyhow::bail!("ignored: {reason}"),
    };
    let path = store.path_of(&keys::document_manifest(&doc_id))?;
    let manifest = DocumentManifest::from_json(&std::fs::read(&path)?)?;
    let views = manifest.pages.iter().map(|p| u64::from(p.views)).sum();
    let skips = manifest.pages.iter().map(|p| u64::from(p.skipped)).sum();
    Ok((u64::from(manifest.page_count), views, skips))
}
