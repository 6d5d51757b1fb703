//! `sphinx run <files or folders> --out <dir>`: the whole service on one machine.
//!
//! The same code as the cloud path, over a filesystem store (`<out>/`) and in-process
//! queues: inputs are linked into `<out>/inbox/` (staging.rs), the ingestion library the
//! tiler Lambda runs (`sphinx_core::ingest`) tiles them into `<out>/work/` in the
//! background and enqueues page jobs (tiling.rs), and the queue worker of `sphinx serve`
//! writes `<out>/results/<doc_id>/page-NNNN.json` and the merged
//! `<out>/results/<doc_id>.json`; report.rs says what each document became, index.rs
//! writes it to `<out>/documents.jsonl`. Keys and results are therefore those of the
//! cloud. A rerun skips finished pages, and `<out>/.sphinx-run.json` (record.rs) keeps a
//! rerun from mixing other results in.

mod index;
mod record;
mod report;
mod staging;
mod tiling;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sphinx_core::ingest::{IngestConfig, Ingestor};
use sphinx_core::isolate::Isolation;
use sphinx_core::DeviceArgs;
use sphinx_core::LimitArgs;
use sphinx_core::LocalStore;
use sphinx_core::MemoryQueue;
use sphinx_core::OutputFormats;
use sphinx_core::Task;
use sphinx_core::TileOptions;

use crate::batch::BatchOptions;
use crate::batch::DEFAULT_MAX_NEW_TOKENS;
use crate::model_source::ModelCacheArgs;
use crate::random_model;
use crate::worker::{Outputs, Poison, Shutdown, Worker, WorkerConfig};
use record::RunRecord;
pub use report::DocumentOutcome;
use sphinx_model::model_folder;
use tiling::{default_tile_threads, RunProgress};

/// The bucket name local mode uses in keys and events (nothing is sent anywhere).
const LOCAL_BUCKET: &str = "local";
/// Exit status when some document or page failed (the rest is done).
const EXIT_SOME_FAILED: u8 = 2;
/// Exit status when ctrl-c stopped the run before some document was finished (128 +
/// SIGINT, as shells report it); the same command again finishes them.
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `sphinx run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Files and folders to process (folders recursively; types sniffed from bytes).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output root: inbox/, work/, results/, errors/ (and overlays/ with --overlays).
    #[arg(long)]
    pub out: PathBuf,
    /// Model folder (config.json, model.safetensors, tokenizer.json), or
    /// s3://bucket/models/<run>/ (or .../models/latest), copied once into --model-cache.
    /// Default: the bundled sphinx-nano if present, else a small RANDOM-weight model (says
    /// so).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub models: ModelCacheArgs,
    /// Task per page; repeat for several: ocr, caption, caption:short,
    /// grounding:<query>, ask:<question>.
    #[arg(long = "task", default_value = "ocr")]
    pub tasks: Vec<Task>,
    /// Most pages received and encoded at once (their rows, and the next ones, stream
    /// through the decode slots).
    #[arg(long, value_parser = sphinx_core::settings::at_least_one, default_value_t = 32)]
    pub max_batch_pages: usize,
    /// Rows decoded at once; a row that ends frees its slot for the next at once.
    #[arg(long, value_parser = sphinx_core::settings::at_least_one, default_value_t = 8)]
    pub decode_slots: usize,
    /// Most tokens generated per task.
    #[arg(long, value_parser = sphinx_core::settings::at_least_one, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
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
    #[arg(long, value_parser = sphinx_core::settings::at_least_one)]
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

async fn run_local(args: RunArgs) -> Result<ExitCode> {
    // What the command line asks is checked before the (possibly long) model load.
    check_formats(&args)?;
    let files = sphinx_cli::inputs::collect(&args.inputs, &args.out)?;
    if files.is_empty() {
        bail!("no files found in the given inputs");
    }
    let (model_dir, random) = match &args.model {
        Some(spec) => (args.models.local_folder(spec).await?, false),
        None => default_model(&args.out)?,
    };
    if random {
        eprintln!(
            "WARNING: no --model given and no trained default model is bundled: using \
             RANDOM weights ({}). Results are noise; they only show the pipeline works.",
            model_dir.display()
        );
    }
    // Checked before the load too; recorded once the model is there.
    let record = RunRecord::new(&model_folder::model_id(&model_dir), &args);
    record.check(&args.out)?;
    let loaded = crate::devices::load(&model_dir, &args.devices, args.cpu)?;
    record.claim(&args.out)?;
    let store = Arc::new(
        LocalStore::new(&args.out).with_context(|| format!("cannot use {}", args.out.display()))?,
    );
    let infer = Arc::new(MemoryQueue::new());
    let limits = args.limits.limits();
    let started = Instant::now();

    // 1. Tile, through the ingestion library the tiler Lambda runs, in the background:
    //    each document's page jobs are queued as soon as it is tiled, so the model (2.)
    //    starts on the first document instead of after the last.
    let staged = staging::stage_inputs(&files, &args.inputs, &store);
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
    on_ctrl_c(shutdown.clone());
    let progress = Arc::new(RunProgress::new(
        sphinx_cli::progress::bar(0, "pages", args.quiet),
        infer.clone(),
        staged.len(),
    ));
    let threads = args
        .tile_threads
        .unwrap_or_else(default_tile_threads)
        .max(1);
    let tiler = tokio::spawn(tiling::tile_all(
        ingestor,
        store.clone(),
        staged,
        threads,
        shutdown.clone(),
        progress.clone(),
    ));

    // 2. Run the model over the page jobs as they come.
    let cfg = worker_config(&args, &limits);
    let worker = Worker::new(&loaded, store.clone(), infer.clone(), cfg, shutdown.clone());
    let mut ran = 0;
    loop {
        ran += worker
            .run(&mut |batch| {
                let secs = batch.wall.as_secs_f64().max(1e-9);
                progress.pages(
                    (batch.pages_done + batch.pages_failed) as u64,
                    format!(
                        "{:.2} pages/s, {:.0} tokens/s",
                        batch.pages_done as f64 / secs,
                        batch.stats.generated_tokens as f64 / secs
                    ),
                );
            })
            .await?
            .pages_done;
        // The worker stops when the queue is empty (or it is released jobs to retry).
        if shutdown.requested() || (tiler.is_finished() && infer.is_empty()) {
            break;
        }
        // Everything tiled so far is done: wait for the next document's jobs.
        while infer.is_empty() && !tiler.is_finished() && !shutdown.requested() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut docs = tiler.await.context("the tiling task failed")?;
    for (doc, file) in docs.iter_mut().zip(&files) {
        doc.input = file.display().to_string();
    }
    progress.bar.finish_and_clear();

    // 3. Report per document (and draw overlays).
    let overlays = args.overlays.then(|| report::Overlays {
        loaded: &loaded,
        limits: &limits,
        dir: args.out.join("overlays"),
    });
    let complete = report::settle(
        &mut docs,
        store.as_ref(),
        &args.out,
        shutdown.requested(),
        overlays.as_ref(),
    )
    .await?;
    let index = index::write_index(&docs, &args.out)?;
    let summary = report::summary(
        &docs,
        &loaded.id,
        random,
        u32::try_from(ran).unwrap_or(u32::MAX),
        started.elapsed(),
    );
    sphinx_cli::stdout::line(format!(
        "{summary}\nresults in {} (a line per document: {})",
        args.out.join("results").display(),
        index.display()
    ))?;
    Ok(if complete {
        ExitCode::SUCCESS
    } else if docs.iter().any(|d| d.interrupted) {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::from(EXIT_SOME_FAILED)
    })
}

/// The bundled trained model if the checkout has one, else a random-weight nano model
/// made once under `<out>/.models/` (true = random).
fn default_model(out: &Path) -> Result<(PathBuf, bool)> {
    if let Some(bundled) = crate::model_source::bundled_nano() {
        return Ok((bundled, false));
    }
    let dir = out.join(".models").join(random_model::RANDOM_MODEL_ID);
    random_model::ensure(&dir)?;
    Ok((dir, true))
}

/// The queue worker of `sphinx serve`, set for one machine: no waiting to fill a batch, no
/// idling once the queue is empty, and a job that can never succeed is deleted once its
/// error record is written (no dead-letter queue here).
fn worker_config(args: &RunArgs, limits: &sphinx_core::Limits) -> WorkerConfig {
    WorkerConfig {
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
    }
}

/// The first ctrl-c asks the run to finish the running batch and tile no more documents;
/// a second one ends the process.
fn on_ctrl_c(shutdown: Arc<Shutdown>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: finishing the running batch, tiling no more documents \
                 (ctrl-c again to abort)"
            );
            shutdown.request();
            let _ = tokio::signal::ctrl_c().await;
            crate::worker::exit_now(i32::from(EXIT_INTERRUPTED));
        }
    });
}
