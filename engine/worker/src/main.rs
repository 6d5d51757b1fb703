//! `sphinx`: the one command for local and cloud work. Parsing lives in `cli`, each
//! subcommand in its own module; this file only dispatches and sets the exit status.

use std::process::ExitCode;

use clap::Parser;
use sphinx_worker::{cli, infer_cmd, synth_cmd, tile_cmd};

fn main() -> ExitCode {
    // `sphinx` renders hostile documents in a child process of itself (sphinx_core::isolate).
    sphinx_core::isolate::run_child_if_requested();
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    let outcome = match cli.command {
        cli::Command::Tile(args) => tile_cmd::run(args),
        cli::Command::Synth(args) => synth_cmd::run(args),
        cli::Command::Infer(args) => infer_cmd::run(args),
        cli::Command::Run(args) => sphinx_worker::run_cmd::run(args),
        cli::Command::Serve(args) => sphinx_worker::serve_cmd::run(args),
        cli::Command::Train(args) => sphinx_worker::train_cmd::run(args),
        cli::Command::Eval(args) => sphinx_worker::eval_cmd::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPHINX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON lines for CloudWatch Logs Insights (the worker image sets it).
    if std::env::var("SPHINX_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}
