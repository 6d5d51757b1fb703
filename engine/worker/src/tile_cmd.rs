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
use sphinx_core::error::DocError;
use sphinx_core::error_record::ErrorRecord;
use sphinx_core::isolate::Isolation;
use sphinx_core::keys;
use sphinx_core::pipeline::{self, TileError, TileOptions};
use sphinx_core::settings::{LayoutArgs, LimitArgs};
use sphinx_core::store::LocalStore;

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

/// Exit status when at least one document failed (the others are still done).
const EXIT_SOME_FAILED: u8 = 2;

pub fn run(args: TileArgs) -> Result<ExitCode> {
    if let Some(pair) = &args.extract {
        let summary = bundle::extract_to_dir(&pair[0], &pair[1])
            .with_context(|| format!("cannot extract {}", pair[0].display()))?;
        println!("{summary}");
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
    let files = inputs::collect(&args.inputs)?;
    if files.is_empty() {
        anyhow::bail!("no files found in the given inputs");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let store = LocalStore::new(&out).with_context(|| format!("cannot use {}", out.display()))?;
    let progress = crate::progress::bar(files.len() as u64, "documents", args.quiet);
    let summary = tile_files(&files, &args.inputs, &store, &opts, threads, &progress)?;
    progress.finish_and_clear();
    println!("{summary}");
    for failure in summary.failures.lock().unwrap().iter() {
        eprintln!("failed: {failure}");
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

/// Tiles every file with `threads` documents in flight; a failed document is counted
/// and recorded, never allowed to stop the others.
fn tile_files(
    files: &[PathBuf],
    roots: &[PathBuf],
    store: &LocalStore,
    opts: &TileOptions,
    threads: usize,
    progress: &ProgressBar,
) -> Result<TileTotals> {
    let summary = TileTotals::default();
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(files.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(file) = files.get(i) else { break };
                let source = source_name(file, roots);
                progress.set_message(source.clone());
                if let Err(err) = tile_file(file, &source, store, opts, &summary) {
                    summary.errors.fetch_add(1, Ordering::Relaxed);
                    summary
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {err:#}", file.display()));
                }
                progress.inc(1);
            });
        }
    });
    Ok(summary)
}

/// The name a document is known by in manifests: its path relative to the folder it
/// was found in, or its file name when given directly (the Lambda uses the key under
/// `inbox/`), so the same upload gets the same manifest locally and in the cloud.
pub fn source_name(file: &Path, roots: &[PathBuf]) -> String {
    roots
        .iter()
        .filter(|root| root.is_dir())
        .find_map(|root| file.strip_prefix(root).ok())
        .map(|rel| rel.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            file.file_name().map_or_else(
                || file.to_string_lossy().into_owned(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
}

fn tile_file(
    file: &Path,
    source: &str,
    store: &LocalStore,
    opts: &TileOptions,
    summary: &TileTotals,
) -> Result<()> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bytes = if size > opts.limits.max_bytes {
        // Too big to read: record it under the id of its first bytes' hash would be
        // wrong, so hash the file in a streaming fashion instead of loading it.
        return record_too_large(file, source, size, store, opts);
    } else {
        Arc::new(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?)
    };
    let doc_id = keys::doc_id(&bytes);
    let mut pages = 0u64;
    let mut sink = |page: pipeline::PageOutput| -> anyhow::Result<()> {
        store.put_blocking(&page.key, &page.bundle)?;
        pages += 1;
        summary.pages.fetch_add(1, Ordering::Relaxed);
        summary
            .views
            .fetch_add(u64::from(page.views), Ordering::Relaxed);
        summary
            .skips
            .fetch_add(u64::from(page.skipped), Ordering::Relaxed);
        Ok(())
    };
    match pipeline::tile_document(bytes, source, opts, None, &mut sink) {
        Ok(manifest) => {
            store.put_blocking(&keys::document_manifest(&doc_id), &manifest.to_json())?;
            summary.documents.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(err) => {
            if err.is_invalid_input() {
                let record = ErrorRecord::from_error(&doc_id, source, &err);
                store.put_blocking(&keys::error_record(&doc_id), &record.to_json())?;
            }
            Err(anyhow::Error::new(err)).with_context(|| keys::error_record(&doc_id))
        }
    }
}

fn record_too_large(
    file: &Path,
    source: &str,
    size: u64,
    store: &LocalStore,
    opts: &TileOptions,
) -> Result<()> {
    let doc_id = keys::doc_id_of_reader(std::fs::File::open(file)?)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let err = TileError::Document(DocError::TooLarge {
        bytes: size,
        limit: opts.limits.max_bytes,
    });
    let record = ErrorRecord::from_error(&doc_id, source, &err);
    store.put_blocking(&keys::error_record(&doc_id), &record.to_json())?;
    Err(anyhow::Error::new(err))
}
