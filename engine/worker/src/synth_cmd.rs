//! `sphinx synth`: writes a synthetic document dataset (pages, annotations and training
//! conversations) that is a pure function of the seed and the page range; see
//! `sphinx_core::synth` and docs/synth.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sphinx_core::synth::{self, SynthConfig};

/// Arguments of `sphinx synth`.
#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// Seed of the dataset: same seed and range, byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of pages to write.
    #[arg(long)]
    pub count: u64,
    /// Output directory (created; images/, annotations.jsonl, conversations.jsonl are
    /// overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Index of the first page. Pages depend only on (seed, index), so a held-out
    /// evaluation set is a range the training set did not use, e.g. `--first-index 100000`.
    #[arg(long, default_value_t = 0)]
    pub first_index: u64,
    /// Add light scan noise to every page and blur half of them (boxes then include the
    /// blur's one-pixel spread).
    #[arg(long)]
    pub noise: bool,
    /// At most this many text lines per page (default: as many as fit).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_lines: Option<u32>,
    /// Smallest text em size in pixels (default 11; at most 32).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(synth::MAX_MIN_EM_PX)))]
    pub min_em: Option<u32>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `sphinx synth`.
pub fn run(args: SynthArgs) -> Result<ExitCode> {
    let cfg = SynthConfig {
        seed: args.seed,
        first_index: args.first_index,
        count: args.count,
        noise: args.noise,
        bounds: synth::TextBounds {
            max_lines: args.max_lines,
            min_em_px: args.min_em,
        },
    };
    let progress = if args.quiet {
        ProgressBar::with_draw_target(Some(args.count), ProgressDrawTarget::hidden())
    } else {
        let bar = ProgressBar::new(args.count);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} pages {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let start = Instant::now();
    let summary = synth::generate(&cfg, &args.out, |_| progress.inc(1))
        .with_context(|| format!("sphinx synth into {}", args.out.display()))?;
    progress.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} pages ({} text lines, {} shapes) to {} in {:.1} s ({:.0} pages/min)",
        summary.pages,
        summary.lines,
        summary.shapes,
        args.out.display(),
        secs,
        summary.pages as f64 * 60.0 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
