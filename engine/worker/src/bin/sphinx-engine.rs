//! `sphinx-engine`: every `sphinx` command, model commands included; `sphinx` hands
//! itself over to it. Parsing lives in `cli`, each subcommand in its own module; this
//! file only dispatches and sets the exit status.

use std::process::ExitCode;

use clap::Parser;
use sphinx_cli::front::exit_status;
use sphinx_worker::{cli, eval_cmd, infer_cmd, run_cmd, serve_cmd, train_cmd};

fn main() -> ExitCode {
    // Without `sphinx-render` beside it, the engine is its own render child
    // (sphinx_core::isolate).
    sphinx_core::isolate::run_child_if_requested();
    let cli = cli::Cli::parse();
    cli.log.init();
    let outcome = match cli.command {
        cli::Command::Local(command) => command.run(),
        cli::Command::Infer(args) => infer_cmd::run(args),
        cli::Command::Run(args) => run_cmd::run(args),
        cli::Command::Serve(args) => serve_cmd::run(args),
        cli::Command::Train(args) => train_cmd::run(args),
        cli::Command::Eval(args) => eval_cmd::run(args),
    };
    sphinx_core::isolate::end_pooled_children();
    exit_status(outcome)
}
