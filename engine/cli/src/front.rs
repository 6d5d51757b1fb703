//! `sphinx` itself: runs the commands that need no model here and hands every other
//! command line (model commands, `--help`, `--version`) to the engine unchanged.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::{engine, synth_cmd, tile_cmd, LogArgs};

/// The commands that run without libtorch; the engine's command line flattens them in.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Turn documents into SPHINX-X page bundles (views + manifest) under <out>/work/.
    Tile(tile_cmd::TileArgs),
    /// Generate synthetic pages with OCR, grounding and caption targets (training data).
    Synth(synth_cmd::SynthArgs),
}

impl LocalCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            Self::Tile(args) => tile_cmd::run(args),
            Self::Synth(args) => synth_cmd::run(args),
        }
    }
}

/// The name users type, whichever binary parses the line (help and errors say `sphinx`).
pub const NAME: &str = "sphinx";
/// The version both binaries report (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The one-line description atop `sphinx --help`.
pub const ABOUT: &str = "Run SPHINX-X multi-modal LLMs over documents";

#[derive(Debug, Parser)]
#[command(name = NAME, bin_name = NAME, version = VERSION, about = ABOUT)]
struct FrontCli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: LocalCommand,
}

/// Whether a command line (without the program name) is one of [`LocalCommand`]: its
/// first word that is not a flag names it (the only flag before it can be `-v`).
pub fn runs_here(args: &[OsString]) -> bool {
    let Some(first) = args.iter().find(|a| !a.to_string_lossy().starts_with('-')) else {
        return false;
    };
    let cli = FrontCli::command();
    first
        .to_str()
        .is_some_and(|name| cli.find_subcommand(name).is_some())
}

/// The `sphinx` binary: render child, local command, or the engine.
pub fn main() -> ExitCode {
    sphinx_core::isolate::run_child_if_requested();
    let args: Vec<OsString> = std::env::args_os().collect();
    if !runs_here(args.get(1..).unwrap_or_default()) {
        return exit_status(Err(engine::exec(&args)));
    }
    let cli = FrontCli::parse_from(&args);
    cli.log.init();
    let outcome = cli.command.run();
    sphinx_core::isolate::end_pooled_children();
    exit_status(outcome)
}

/// A command's outcome as the process's exit status: its own, or 1 after printing the
/// error with its causes.
pub fn exit_status(outcome: Result<ExitCode>) -> ExitCode {
    outcome.unwrap_or_else(|err| {
        eprintln!("error: {}", sphinx_core::error_record::describe(&err));
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn tile_and_synth_run_here_everything_else_in_the_engine() {
        for line in [
            "tile a.pdf --out o",
            "-v tile --extract b d",
            "-vv synth --count 1",
        ] {
            assert!(runs_here(&words(line)), "{line}");
        }
        for line in [
            "run docs --out o",
            "-v serve",
            "--help",
            "--version",
            "help tile",
            "",
        ] {
            assert!(!runs_here(&words(line)), "{line}");
        }
    }
}
