//! Command-line surface of `sphinx`. Defaults are the SPHINX-Tiny-1k layout and the
//! production limits of `sphinx_core::limits::Limits`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sphinx_core::limits::Limits;
use sphinx_core::tiling::{Align, TileConfig};

#[derive(Debug, Parser)]
#[command(
    name = "sphinx",
    version,
    about = "Run SPHINX-X multi-modal LLMs over documents"
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug); SPHINX_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn documents into SPHINX-X page bundles (views + manifest) under <out>/work/.
    Tile(TileArgs),
    /// Generate synthetic pages with OCR, grounding and caption targets (training data).
    Synth(crate::synth_cmd::SynthArgs),
    /// Run SPHINX-X tasks (caption, ocr, grounding, ask) on one page; prints result JSON.
    Infer(crate::infer_cmd::InferArgs),
    /// The whole pipeline on this machine: tile, run the model, write results.
    Run(crate::run_cmd::RunArgs),
    /// The GPU worker: drain the SQS infer queue, write results to S3.
    Serve(crate::serve_cmd::ServeArgs),
    /// One-stage fine-tuning from a job spec; checkpoints, resume, model export.
    Train(crate::train_cmd::TrainArgs),
    /// OCR character error rate of a model on held-out conversations; prints JSON.
    Eval(crate::eval_cmd::EvalArgs),
}

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

/// Canvas and grid of the SPHINX-X high-resolution views.
#[derive(Debug, Args)]
pub struct LayoutArgs {
    /// Canvas side in pixels (SPHINX-Tiny-1k: 1024; SPHINX-Tiny: 512).
    #[arg(long, default_value_t = TileConfig::default().canvas)]
    pub canvas: u32,
    /// Cells per side of the canvas (SPHINX-Tiny-1k: 2; SPHINX-Tiny: 1).
    #[arg(long, default_value_t = TileConfig::default().grid)]
    pub grid: u32,
    /// Where the page sits on the canvas: top-left (models with skip tokens) or center
    /// (released checkpoints, as the reference's PadToSquare).
    #[arg(long, value_enum, default_value_t = AlignArg::TopLeft)]
    pub align: AlignArg,
}

/// `--align` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlignArg {
    TopLeft,
    Center,
}

impl LayoutArgs {
    pub fn config(&self) -> TileConfig {
        let align = match self.align {
            AlignArg::TopLeft => Align::TopLeft,
            AlignArg::Center => Align::Center,
        };
        TileConfig::new(self.canvas, self.grid).aligned(align)
    }
}

/// Bounds on what one upload may cost; the defaults are `Limits::default()`.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Largest input file in bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// Most pages per document.
    #[arg(long)]
    pub max_pages: Option<u32>,
    /// Most decoded pixels per page image.
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Longest side a PDF page is rendered at, in pixels.
    #[arg(long)]
    pub max_render_side: Option<u32>,
    /// Seconds one page may take to render before the document fails.
    #[arg(long)]
    pub page_timeout: Option<f64>,
    /// MiB of heap for the child process that opens and renders documents; a decoder
    /// bomb that needs more becomes a `render_memory` error.
    #[arg(long)]
    pub max_render_memory: Option<u64>,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(v) = self.max_bytes {
            limits.max_bytes = v;
        }
        if let Some(v) = self.max_pages {
            limits.max_pages = v;
        }
        if let Some(v) = self.max_pixels {
            limits.max_pixels = v;
        }
        if let Some(v) = self.max_render_side {
            limits.max_render_side = v;
        }
        if let Some(v) = self.page_timeout {
            limits.page_timeout = Duration::from_secs_f64(v);
        }
        if let Some(v) = self.max_render_memory {
            limits.render_memory = v << 20;
        }
        limits
    }
}
