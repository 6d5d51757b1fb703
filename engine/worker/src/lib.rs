//! The `sphinx` engine's library: one module per model subcommand plus the pieces they
//! share (model folders, page batches, the queue worker). `bin/sphinx-engine.rs` only
//! parses and dispatches, so every command is testable as plain functions; the commands
//! without a model (tile, synth) live in `sphinx-cli`.

pub mod aws;
pub mod batch;
pub mod cli;
pub mod devices;
pub mod eval_cmd;
pub mod infer_cmd;
pub mod model_source;
pub mod overlay;
pub mod random_model;
pub mod run_cmd;
pub mod serve_cmd;
pub mod stream;
pub mod train_cmd;
pub mod worker;

// What tests, examples and `sphinx-engine` use, at the root: each command's arguments and
// entry point, the queue worker and the page batch.
pub use batch::{BatchOptions, BatchStats, PreparedPage};
pub use cli::{Cli, Command};
pub use eval_cmd::EvalArgs;
pub use infer_cmd::InferArgs;
pub use run_cmd::RunArgs;
pub use serve_cmd::ServeArgs;
pub use stream::{run_batch, Isolation, PageStream};
pub use train_cmd::TrainArgs;
pub use worker::{Worker, WorkerConfig, WorkerSummary};
