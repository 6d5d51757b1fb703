//! The `sphinx` command's library: one module per subcommand plus the pieces they
//! share (model folders, page batches, the queue worker). `main.rs` only parses and
//! dispatches, so every command is testable as plain functions.

pub mod batch;
pub mod cli;
pub mod devices;
pub mod eval_cmd;
pub mod infer_cmd;
pub mod inputs;
pub mod model_source;
pub mod overlay;
pub mod progress;
pub mod random_model;
pub mod run_cmd;
pub mod serve_cmd;
pub mod stream;
pub mod synth_cmd;
pub mod tile_cmd;
pub mod train_cmd;
pub mod worker;

// What tests, examples and `main.rs` use, at the root: each command's arguments and
// entry point, the queue worker and the page batch.
pub use batch::{run_batch, BatchOptions, BatchStats, PreparedPage};
pub use cli::{Cli, Command};
pub use eval_cmd::EvalArgs;
pub use infer_cmd::InferArgs;
pub use run_cmd::RunArgs;
pub use serve_cmd::ServeArgs;
pub use stream::{Isolation, PageStream};
pub use synth_cmd::SynthArgs;
pub use tile_cmd::TileArgs;
pub use train_cmd::TrainArgs;
pub use worker::{Worker, WorkerConfig, WorkerSummary};
