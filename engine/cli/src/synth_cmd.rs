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
    /// Smallest text em size in pixels (default 11; at most 32, or `--max-em`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(synth::LARGEST_EM_PX)))]
    pub min_em: Option<u32>,
    /// Largest text em size in pixels (default: by page size, at most 34; at most 96).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(synth::LARGEST_EM_PX)))]
    pub max_em: Option<u32>,
    /// Every page WIDTHxHEIGHT pixels (e.g. 256x64) instead of a random kind and size; such
    /// pages have no empty paragraph-break rows.
    #[arg(long, value_parser = parse_page_size)]
    pub page: Option<(u32, u32)>,
    /// No shapes on the pages.
    #[arg(long)]
    pub no_shapes: bool,
    /// Only the text-detection (OCR) turn in conversations.jsonl.
    #[arg(long)]
    pub ocr_only: bool,
    /// What the lines say: `words` (vocabulary words, numbers, punctuation) or
    /// `random-chars` (groups of 1-5 random letters and digits: nothing to guess from
    /// the language, every glyph must be read).
    #[arg(long, value_enum, default_value_t = TextArg::Words)]
    pub text: TextArg,
    /// At most this many characters per text line, spaces included.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_chars: Option<u32>,
    /// Every page in this face (default: sans, serif or mono at random).
    #[arg(long, value_enum)]
    pub face: Option<FaceArg>,
    /// Every line starts this many pixels from the left edge (no indent, no centring):
    /// with `--face mono` and one em size, each character's place on the line is the
    /// same on every page.
    #[arg(long)]
    pub line_start: Option<u32>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--text`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextArg {
    Words,
    RandomChars,
}

/// `--face`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceArg {
    Sans,
    Serif,
    Mono,
}

/// `WIDTHxHEIGHT` in pixels.
fn parse_page_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("page size {s:?} is not WIDTHxHEIGHT"))?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| synth::PAGE_SIDES.contains(v))
            .ok_or_else(|| {
                format!(
                    "page side {v:?} is not a whole number of pixels in {}..={}",
                    synth::PAGE_SIDES.start(),
                    synth::PAGE_SIDES.end()
                )
            })
    };
    Ok((side(w)?, side(h)?))
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
            max_em_px: args.max_em,
            page_size: args.page,
            no_shapes: args.no_shapes,
            ocr_only: args.ocr_only,
            text: match args.text {
                TextArg::Words => synth::TextKind::Words,
                TextArg::RandomChars => synth::TextKind::RandomChars,
            },
            max_chars: args.max_chars,
            face: args.face.map(|f| match f {
                FaceArg::Sans => synth::Face::Sans,
                FaceArg::Serif => synth::Face::Serif,
                FaceArg::Mono => synth::Face::Mono,
            }),
            line_start_px: args.line_start,
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
    crate::stdout::line(format!(
        "wrote {} pages ({} text lines, {} shapes) to {} in {:.1} s ({:.0} pages/min)",
        summary.pages,
        summary.lines,
        summary.shapes,
        args.out.display(),
        secs,
        summary.pages as f64 * 60.0 / secs.max(1e-9)
    ))?;
    Ok(ExitCode::SUCCESS)
}
