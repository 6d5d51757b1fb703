//! Logging on stderr, the same for the front and the engine.

use clap::Args;

/// The `-v` flag every command takes.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// More logging on stderr (-v info, -vv debug); SPHINX_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl LogArgs {
    /// Installs the subscriber: `SPHINX_LOG` (an env-filter) wins over `-v`;
    /// `SPHINX_LOG_FORMAT=json` writes JSON lines (for CloudWatch Logs Insights).
    pub fn init(&self) {
        let default = match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("SPHINX_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        if std::env::var("SPHINX_LOG_FORMAT").is_ok_and(|f| f == "json") {
            logs.json().init();
        } else {
            logs.init();
        }
    }
}
