//! The `sphinx` command's library: one module per subcommand plus the pieces they
//! share (model folders, page batches, the queue worker). `main.rs` only parses and
//! dispatches, so every command is testable as plain functions.

pub mod batch;
pub mod cli;
pub mod eval_cmd;
pub mod infer_cmd;
pub mod inputs;
pub mod model_source;
pub mod overlay;
pub mod progress;
pub mod random_model;
pub mod run_cmd;
pub mod serve_cmd;
pub mod synth_cmd;
pub mod tile_cmd;
pub mod train_cmd;
pub mod worker;
