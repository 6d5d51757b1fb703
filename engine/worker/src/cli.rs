//! Command-line surface of `sphinx`. Defaults are the SPHINX-Tiny-1k layout and the
//! production limits of `sphinx_core::limits::Limits`.

use clap::{Parser, Subcommand};

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
    Tile(crate::tile_cmd::TileArgs),
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
