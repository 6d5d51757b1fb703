//! `sphinx run <files or folders> --out <dir>`: the whole service on one machine.
//!
//! The same code as the cloud path, over a filesystem store (`<out>/`) and in-process
//! queues: inputs are linked into `<out>/inbox/`, the ingestion library the tiler Lambda
//! runs (`sphinx_core::ingest`) tiles them into `<out>/work/` and enqueues page jobs, and the queue worker of `sphinx serve`
//! writes `<out>/results/<doc_id>/page-NNNN.json` and the merged `<out>/results/<doc_id>.json`.
//! Keys and results are therefore those of the cloud. A rerun skips finished pages.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sphinx_core::error_record::describe;
use sphinx_core::ingest::{self, IngestConfig, IngestOutcome, Ingestor};
use sphinx_core::isolate::{render_page, Isolation};
use sphinx_core::keys;
use sphinx_core::DeviceArgs;
use sphinx_core::DocumentManifest;
use sphinx_core::LimitArgs;
use sphinx_core::Limits;
use sphinx_core::MemoryQueue;
use sphinx_core::OutputFormats;
use sphinx_core::Task;
use sphinx_core::TileOptions;
use sphinx_core::{DocumentResult, PageResult};
use sphinx_core::{LocalStore, ObjectStore};

use crate::batch::BatchOptions;
use crate::batch::DEFAULT_MAX_NEW_TOKENS;
use crate::overlay;
use crate::random_model;
use crate::worker::{spawn_grace_guard, Outputs, Poison, Shutdown, Worker, WorkerConfig};
use sphinx_cli::progress::ProgressBar;
use sphinx_cli::tile_cmd::source_name;
use sphinx_model::model_folder::{self, Loaded};

/// The bucket name local mode uses in keys and events (nothing is sent anywhere).
const LOCAL_BUCKET: &str = "local";
/// Exit status when some document or page failed (the rest is done).
const EXIT_SOME_FAILED: u8 = 2;

/// Arguments of `sphinx run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Files and folders to process (folders recursively; types sniffed from bytes).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output root: inbox/, work/, results/, errors/ (and overlays/ with --overlays).
    #[arg(long)]
    pub out: PathBuf,
    /// Model folder (config.json, model.safetensors, tokenizer.json). Default: the
    /// bundled sphinx-nano if present, else a small RANDOM-weight model (says so).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Task per page; repeat for several: ocr, caption, caption:short,
    /// grounding:<query>, ask:<question>.
    #[arg(long = "task", default_value = "ocr")]
    pub tasks: Vec<Task>,
    /// Most pages received and encoded at once (their rows, and the next ones, stream
    /// through the decode slots).
    #[arg(long, default_value_t = 32)]
    pub max_batch_pages: usize,
    /// Rows decoded at once; a row that ends frees its slot for the next at once.
    #[arg(long, default_value_t = 8)]
    pub decode_slots: usize,
    /// Most tokens generated per task.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Replay each decode step from a CUDA graph (one launch per token instead of one per
    /// kernel). CUDA only; anywhere else, or where a capture fails, decoding is eager.
    #[arg(long, env = "SPHINX_CUDA_GRAPHS", value_parser = clap::builder::BoolishValueParser::new())]
    pub cuda_graphs: bool,
    /// Also draw each page's boxes into <out>/overlays/<doc_id>/page-NNNN.png.
    #[arg(long)]
    pub overlays: bool,
    /// Result files per document beside results/<doc_id>.json: a comma list of txt
    /// (plain text), hocr, alto, pdf (searchable PDF), or all. Needs the ocr task (refused
    /// up front without it).
    #[arg(long, default_value = "json")]
    pub formats: OutputFormats,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Documents tiled at the same time, each in its own render child, while the model
    /// runs. Default: the cores less one (the one left for the model's host work).
    #[arg(long)]
    pub tile_threads: Option<usize>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    #[command(flatten)]
    pub devices: DeviceArgs,
}

/// `sphinx run`.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_local(args))
}

/// What one document became.
#[derive(Debug, Clone)]
pub struct DocumentOutcome {
    pub source: String,
    pub doc_id: Option<String>,
    pub pages: u32,
    pub pages_done: u32,
    /// The reason the whole document or some of its pages failed.
    pub error: Option<String>,
    /// The start of the document's first task text.
    pub preview: String,
    /// The other result files: written (`results/<doc_id>.txt`, ...) or why not.
    pub outputs: Vec<String>,
}

/// Refuses result formats the tasks cannot fill, before any model is loaded: text,
/// hOCR, ALTO and the PDF's text layer are all made from the OCR task's lines.
fn check_formats(args: &RunArgs) -> Result<()> {
    let archives: Vec<&str> = args.formats.archives().map(|f| f.name()).collect();
    if !archives.is_empty() && !args.tasks.contains(&Task::Ocr) {
        let tasks: Vec<String> = args.tasks.iter().map(Task::to_string).collect();
        bail!(
            "--formats {} needs the ocr task, which is not among --task {}: add --task ocr, \
             or leave --formats out for JSON only",
            archives.join(","),
            tasks.join(" --task ")
        );
    }
    Ok(())
}

impl DocumentOutcome {
    /// Nothing known yet but the name.
    fn new(source: &str) -> Self {
        Self {
            source: source.to_string(),
            doc_id: None,
            pages: 0,
            pages_done: 0,
            error: None,
            preview: String::new(),
            outputs: Vec::new(),
        }
    }
}

async fn run_local(args: RunArgs) -> Result<ExitCode> {
    check_formats(&args)?;
    let (model_dir, random) = match &args.model {
        Some(dir) => (dir.clone(), false),
        None => default_model(&args.out)?,
    };
    if random {
        eprintln!(
            "WARNING: no --model given and no trained default model is bundled: using \
             RANDOM weights ({}). Results are noise; they only show the pipeline works.",
            model_dir.display()
        );
    }
    // Checked before the (possibly long) load; recorded once the model is there.
    let record = RunRecord::new(&model_folder::model_id(&model_dir), &args);
    record.check(&args.out)?;
    let loaded = crate::devices::load(&model_dir, &args.devices, args.cpu)?;
    record.claim(&args.out)?;
    let files = sphinx_cli::inputs::collect(&args.inputs)?;
    if files.is_empty() {
        bail!("no files found in the given inputs");
    }
    let store = Arc::new(
        LocalStore::new(&args.out).with_context(|| format!("cannot use {}", args.out.display()))?,
    );
    let infer = Arc::new(MemoryQueue::new());
    let limits = args.limits.limits();
    let started = Instant::now();

    // 1. Tile, through the ingestion library the tiler Lambda runs, in the background:
    //    each document's page jobs are queued as soon as it is tiled, so the model (2.)
    //    starts on the first document instead of after the last.
    let sources = stage_inputs(&files, &args.inputs, &store)?;
    let tile = TileOptions {
        tile: loaded.tile.clone(),
        limits: limits.clone(),
        isolation: Isolation::this_binary(),
    };
    let ingestor = Arc::new(Ingestor::new(
        store.clone(),
        Some(infer.clone()),
        None,
        IngestConfig::local(LOCAL_BUCKET, args.tasks.clone(), tile),
    ));
    let shutdown = Arc::new(Shutdown::default());
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "interrupted: finishing the running batch, tiling no more documents \
                     (ctrl-c again to abort)"
                );
                shutdown.request();
                let _ = tokio::signal::ctrl_c().await;
                std::process::exit(130);
            }
        });
    }
    let progress = Arc::new(RunProgress::new(
        sphinx_cli::progress::bar(0, "pages", args.quiet),
        infer.clone(),
        sources.len(),
    ));
    let tiling = tokio::spawn(tile_all(
        ingestor,
        store.clone(),
        sources.clone(),
        args.tile_threads
            .unwrap_or_else(default_tile_threads)
            .max(1),
        shutdown.clone(),
        progress.clone(),
    ));

    // 2. Run the model over the page jobs as they come.
    let cfg = WorkerConfig {
        max_batch_pages: args.max_batch_pages.max(1),
        batch_wait: Duration::ZERO,
        poll_wait: Duration::from_secs(1),
        idle_exit: Some(Duration::ZERO),
        release_backoff: Duration::from_secs(1),
        poison: Poison::Delete,
        batch: BatchOptions {
            max_new_tokens: args.max_new_tokens,
            max_rows: args.decode_slots.max(1),
            cuda_graphs: args.cuda_graphs,
            ..BatchOptions::default()
        },
        outputs: Outputs {
            formats: args.formats.clone(),
            limits: limits.clone(),
            ..Outputs::default()
        },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(&loaded, store.clone(), infer.clone(), cfg, shutdown.clone());
    spawn_grace_guard(
        shutdown.clone(),
        worker.inflight(),
        infer.clone(),
        Duration::from_secs(60),
    );
    loop {
        worker
            .run(&mut |report| {
                let secs = report.wall.as_secs_f64().max(1e-9);
                progress.pages(
                    (report.pages_done + report.pages_failed) as u64,
                    format!(
                        "{:.2} pages/s, {:.0} tokens/s",
                        report.pages_done as f64 / secs,
                        report.stats.generated_tokens as f64 / secs
                    ),
                );
            })
            .await?;
        // The worker stops when the queue is empty (or it is released jobs to retry).
        if shutdown.requested() || (tiling.is_finished() && infer.is_empty()) {
            break;
        }
        // Everything tiled so far is done: wait for the next document's jobs.
        while infer.is_empty() && !tiling.is_finished() && !shutdown.requested() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut docs = tiling.await.context("the tiling task failed")?;
    progress.bar.finish_and_clear();

    // 3. Report per document (and draw overlays).
    let mut failed = false;
    for doc in &mut docs {
        let Some(doc_id) = doc.doc_id.clone() else {
            failed = true;
            continue;
        };
        let results = page_results(store.as_ref(), &doc_id, doc.pages).await?;
        doc.pages_done = results.len() as u32;
        if doc.pages_done < doc.pages {
            failed = true;
            let why = missing_pages(store.as_ref(), doc, &args.out, shutdown.requested()).await;
            doc.error.get_or_insert(why);
        }
        if let Ok(merged) = DocumentResult::merge(results.clone()) {
            doc.preview = merged
                .tasks
                .first()
                .map(|t| preview(&t.text))
                .unwrap_or_default();
        }
        if let Ok(written) = store.get(&keys::document_result(&doc_id)).await {
            if let Ok(merged) = DocumentResult::from_json(&written) {
                doc.outputs = merged
                    .outputs
                    .iter()
                    .map(|o| match (&o.key, &o.reason) {
                        (Some(key), _) if o.pages_without_text.is_empty() => key.clone(),
                        (Some(key), _) => {
                            format!("{key} (pages without text: {:?})", o.pages_without_text)
                        }
                        (None, reason) => format!(
                            "no {}: {}",
                            o.format,
                            reason.as_deref().unwrap_or("not made")
                        ),
                    })
                    .collect();
            }
        }
        if args.overlays {
            let file = files
                .iter()
                .zip(&sources)
                .find(|(_, s)| s.as_str() == doc.source)
                .map(|(f, _)| f.clone());
            if let Some(file) = file {
                draw_overlays(
                    &file,
                    &results,
                    &loaded,
                    &limits,
                    &args.out.join("overlays"),
                )?;
            }
        }
    }
    sphinx_cli::stdout::line(summary(
        &docs,
        &loaded,
        random,
        &args.out,
        started.elapsed(),
    ))?;
    Ok(if failed {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The bundled trained model if the checkout has one, else a random-weight nano model
/// made once under `<out>/.models/` (true = random).
fn default_model(out: &Path) -> Result<(PathBuf, bool)> {
    let bundled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/sphinx-nano");
    if bundled.join(model_folder::WEIGHTS_FILE).exists() {
        return Ok((bundled, false));
    }
    let dir = out.join(".models").join(random_model::RANDOM_MODEL_ID);
    random_model::ensure(&dir)?;
    Ok((dir, true))
}

/// What the results under an `--out` folder were made with, kept in
/// `<out>/.sphinx-run.json`. A rerun keeps every finished page and writes a document's
/// files once, so one with another model, other tasks or other formats would leave the
/// old results under the new run's name: it is refused instead.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RunRecord {
    model: String,
    /// Sorted: the order `--task` flags came in changes nothing a result holds.
    tasks: Vec<String>,
    formats: String,
}

impl RunRecord {
    const FILE: &'static str = ".sphinx-run.json";

    fn new(model: &str, args: &RunArgs) -> Self {
        let mut tasks: Vec<String> = args.tasks.iter().map(Task::to_string).collect();
        tasks.sort();
        tasks.dedup();
        Self {
            model: model.to_string(),
            tasks,
            formats: args.formats.to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "model {}, tasks {}, formats {}",
            self.model,
            self.tasks.join(" "),
            self.formats
        )
    }

    /// Refuses a run other than the one recorded in `out`; true when one is recorded.
    fn check(&self, out: &Path) -> Result<bool> {
        let path = out.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let was: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if was != *self {
            bail!(
                "{} holds the results of a run with {}; this run asks for {}. A rerun keeps \
                 finished pages as they are, so give another --out (or delete {} to start \
                 over)",
                out.display(),
                was.describe(),
                self.describe(),
                out.display()
            );
        }
        Ok(true)
    }

    /// Records this run in `out`, or checks it is the run recorded there.
    fn claim(&self, out: &Path) -> Result<()> {
        if self.check(out)? {
            return Ok(());
        }
        let path = out.join(Self::FILE);
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let json = serde_json::to_vec_pretty(self).expect("strings serialize");
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Render children beside the model: every core but one, at least one.
fn default_tile_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The one progress bar of a run, fed from both sides: its length grows as the tiler
/// queues page jobs, its position as the model settles pages, and its message says how
/// far tiling is and how fast the model goes.
struct RunProgress {
    bar: ProgressBar,
    queue: Arc<MemoryQueue>,
    documents: usize,
    tiled: std::sync::atomic::AtomicUsize,
    rate: std::sync::Mutex<String>,
}

impl RunProgress {
    fn new(bar: ProgressBar, queue: Arc<MemoryQueue>, documents: usize) -> Self {
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
        self.tiled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.refresh();
    }

    /// `settled` more pages done or failed; `rate` says how fast.
    fn pages(&self, settled: u64, rate: String) {
        *self.rate.lock().unwrap() = rate;
        self.bar.inc(settled);
        self.refresh();
    }

    fn refresh(&self) {
        self.bar
            .set_length(self.queue.sent().max(self.bar.position()));
        let tiled = self.tiled.load(std::sync::atomic::Ordering::Relaxed);
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
async fn tile_all(
    ingestor: Arc<Ingestor>,
    store: Arc<LocalStore>,
    sources: Vec<String>,
    threads: usize,
    shutdown: Arc<Shutdown>,
    progress: Arc<RunProgress>,
) -> Vec<DocumentOutcome> {
    let mut outcomes: Vec<Option<DocumentOutcome>> = vec![None; sources.len()];
    let mut running = tokio::task::JoinSet::new();
    let mut next = sources.iter().enumerate();
    loop {
        while running.len() < threads && !shutdown.requested() {
            let Some((i, source)) = next.next() else {
                break;
            };
            let (ingestor, store, source) = (ingestor.clone(), store.clone(), source.clone());
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
        .zip(&sources)
        .map(|(outcome, source)| {
            outcome.unwrap_or_else(|| {
                let mut o = DocumentOutcome::new(source);
                o.error = Some(if shutdown.requested() {
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

/// Links (or copies) each input to `<out>/inbox/<source name>`, as an S3 upload would
/// place it; returns the source names (keys below `inbox/`).
fn stage_inputs(files: &[PathBuf], roots: &[PathBuf], store: &LocalStore) -> Result<Vec<String>> {
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        let source = source_name(file, roots);
        let key = keys::upload(ingest::DEFAULT_INBOX_PREFIX, &source);
        let dest = store.path_of(&key)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Staged by an earlier run: the same file (a hard link) needs no reading; a copy
        // (inputs on another filesystem) is compared by content.
        let same = std::fs::metadata(&dest)
            .ok()
            .zip(std::fs::metadata(file).ok())
            .is_some_and(|(a, b)| {
                (a.dev() == b.dev() && a.ino() == b.ino())
                    || (a.len() == b.len() && same_bytes(&dest, file).unwrap_or(false))
            });
        if !same {
            let _ = std::fs::remove_file(&dest);
            if std::fs::hard_link(file, &dest).is_err() {
                std::fs::copy(file, &dest).with_context(|| {
                    format!("cannot copy {} to {}", file.display(), dest.display())
                })?;
            }
        }
        sources.push(source);
    }
    Ok(sources)
}

/// Whether two files of one length hold the same bytes, compared a piece at a time: an
/// input may be far larger than memory (it is refused later, by its size).
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y)? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// Tiles one staged input through the ingestion library the tiler Lambda runs (a long
/// document is finished in one call; a document tiled by an earlier run gets jobs again
/// for its pages that have no result yet).
async fn tile_one(ingestor: &Ingestor, store: &dyn ObjectStore, source: &str) -> DocumentOutcome {
    let mut outcome = DocumentOutcome::new(source);
    let key = keys::upload(&ingestor.config().inbox_prefix, source);
    let doc_id = match ingestor.ingest_upload(&key, ingest::far_deadline()).await {
        Ok(IngestOutcome::Rejected { code, message, .. }) => {
            outcome.error = Some(format!("{code}: {message}"));
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
            outcome.error = Some(e.to_string());
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

/// Why some of a document's pages have no result: those with an error record failed,
/// the others were never run (the run was interrupted before them).
async fn missing_pages(
    store: &dyn ObjectStore,
    doc: &DocumentOutcome,
    out: &Path,
    interrupted: bool,
) -> String {
    let doc_id = doc.doc_id.as_deref().unwrap_or_default();
    let mut failed = 0u32;
    for page in 0..doc.pages {
        if store.head(&keys::page_error(doc_id, page)).await.is_ok() {
            failed += 1;
        }
    }
    let not_run = (doc.pages - doc.pages_done).saturating_sub(failed);
    let mut why = Vec::new();
    if failed > 0 {
        why.push(format!(
            "{failed} of {} pages failed (see {}/errors/{doc_id}/)",
            doc.pages,
            out.display()
        ));
    }
    if not_run > 0 {
        why.push(format!(
            "{not_run} of {} pages not run{}",
            doc.pages,
            if interrupted {
                ": the run was interrupted (the same command again finishes them)"
            } else {
                ""
            }
        ));
    }
    why.join("; ")
}

async fn page_results(
    store: &dyn ObjectStore,
    doc_id: &str,
    pages: u32,
) -> Result<Vec<PageResult>> {
    let mut out = Vec::new();
    for page in 0..pages {
        if let Ok(bytes) = store.get(&keys::page_result(doc_id, page)).await {
            out.push(PageResult::from_json(&bytes)?);
        }
    }
    Ok(out)
}

/// Draws each page's boxes on a fresh render of the page.
fn draw_overlays(
    file: &Path,
    results: &[PageResult],
    loaded: &Loaded,
    limits: &Limits,
    dir: &Path,
) -> Result<()> {
    let bytes = Arc::new(std::fs::read(file)?);
    for r in results {
        let (_, page) = render_page(
            &Isolation::this_binary(),
            &bytes,
            limits,
            loaded.tile.canvas,
            r.page_index,
        )?;
        let spans: Vec<_> = r.tasks.iter().flat_map(|t| t.spans.clone()).collect();
        let img = overlay::draw(&page.image, r.frame.size_pixels, &spans)?;
        let path = dir
            .join(&r.doc_id)
            .join(format!("page-{:04}.png", r.page_index));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        overlay::write_png(&img, &path)?;
    }
    Ok(())
}

fn preview(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one_line.chars().take(70).collect();
    if one_line.chars().count() > 70 {
        p.push('…');
    }
    p
}

/// What `sphinx run` prints at the end: totals, then a line per document (with its other
/// result files, or why not).
fn summary(
    docs: &[DocumentOutcome],
    loaded: &Loaded,
    random: bool,
    out: &Path,
    took: Duration,
) -> String {
    let pages: u32 = docs.iter().map(|d| d.pages_done).sum();
    let secs = took.as_secs_f64();
    let mut lines = vec![format!(
        "{} documents, {pages} pages in {secs:.1} s ({:.2} pages/s) with model {}{}",
        docs.len(),
        f64::from(pages) / secs.max(1e-9),
        loaded.id,
        if random { " (RANDOM WEIGHTS)" } else { "" }
    )];
    for d in docs {
        lines.push(match (&d.error, &d.doc_id) {
            (None, Some(id)) => format!(
                "  ok      {}  {} pages  results/{id}.json  {:?}",
                d.source, d.pages_done, d.preview
            ),
            (Some(e), _) => format!("  FAILED  {}  {e}", d.source),
            (None, None) => format!("  ?       {}", d.source),
        });
        lines.extend(d.outputs.iter().map(|o| format!("          {o}")));
    }
    lines.push(format!("results in {}", out.join("results").display()));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page with an error record failed; one with neither a result nor a record was
    /// never run, and the summary must not send the user to an errors folder for it.
    #[test]
    fn files_are_compared_by_content_across_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        std::fs::write(&a, &body).unwrap();
        std::fs::write(&b, &body).unwrap();
        let mut other = body.clone();
        other[150_000] ^= 1; // in the third piece
        std::fs::write(&c, &other).unwrap();
        assert!(same_bytes(&a, &b).unwrap());
        assert!(!same_bytes(&a, &c).unwrap());
    }

    #[tokio::test]
    async fn pages_without_results_are_failed_or_not_run() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::new(tmp.path()).unwrap();
        let mut doc = DocumentOutcome::new("a.pdf");
        doc.doc_id = Some("d1".into());
        doc.pages = 4;
        doc.pages_done = 1;
        store
            .put(&keys::page_error("d1", 2), b"{}".to_vec())
            .await
            .unwrap();
        let out = Path::new("/results/here");
        assert_eq!(
            missing_pages(&store, &doc, out, true).await,
            "1 of 4 pages failed (see /results/here/errors/d1/); 2 of 4 pages not run: the \
             run was interrupted (the same command again finishes them)"
        );
        doc.pages_done = 3;
        assert_eq!(
            missing_pages(&store, &doc, out, false).await,
            "1 of 4 pages failed (see /results/here/errors/d1/)"
        );
    }
}
