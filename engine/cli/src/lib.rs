//! The `sphinx` command without libtorch. Loading libtorch (with its CUDA libraries) costs
//! every process ~0.8 s of CPU and ~470 MB before `main` runs, so `sphinx` is two
//! binaries: this front, which runs the commands that need no model (`tile`, `synth`, the
//! render child) in-process, and `sphinx-engine` (crate `sphinx-worker`), which the front
//! becomes (`exec`) for everything else. Both parse the same arguments: the engine's
//! command line flattens [`LocalCommand`] into its own.

pub mod engine;
pub mod front;
pub mod inputs;
pub mod logging;
pub mod progress;
pub mod stdout;
pub mod synth_cmd;
pub mod tile_cmd;

pub use front::LocalCommand;
pub use logging::LogArgs;
pub use synth_cmd::SynthArgs;
pub use tile_cmd::TileArgs;
