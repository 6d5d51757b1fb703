//! Command-line surface of `sphinx` (as `sphinx-engine` parses it: every command).
//! Defaults are the SPHINX-Tiny-1k layout and the production limits of
//! `sphinx_core::limits::Limits`.

use clap::{Parser, Subcommand};
use sphinx_cli::front::{ABOUT, NAME, VERSION};
use sphinx_cli::{LocalCommand, LogArgs};

#[derive(Debug, Parser)]
#[command(name = NAME, bin_name = NAME, version = VERSION, about = ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// tile, synth: the commands `sphinx` runs without libtorch.
    #[command(flatten)]
    Local(LocalCommand),
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
