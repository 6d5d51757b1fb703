//! The tiler's settings: one clap struct ([`Settings`]) read from its `SPHINX_*`
//! environment variables (the Lambda has no command line) or from the same names as
//! flags, parsed once at cold start by the value parsers every service shares
//! (`sphinx_core::settings`). Each variable is documented in `functions/tiler/README.md`.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use sphinx_core::job::{parse_tasks, Task};
use sphinx_core::settings::{parse_seconds, LayoutArgs, LimitArgs, RenderProgramArgs, S3Args};
use sphinx_core::TileOptions;

pub use sphinx_core::retry::RetryPolicy;
pub use sphinx_core::settings::{
    ENV_CANVAS_PX, ENV_GRID, ENV_MAX_BYTES, ENV_MAX_PAGES, ENV_MAX_PIXELS, ENV_MAX_RENDER_SIDE,
    ENV_PAD_ALIGN, ENV_PAGE_TIMEOUT_S, ENV_RENDER_MEMORY_MB, ENV_S3_FORCE_PATH_STYLE,
};

/// Bucket holding `inbox/`, `work/` and `errors/` (required).
pub const ENV_BUCKET: &str = "SPHINX_BUCKET";
/// URL of the infer queue that receives one page job per page (required).
pub const ENV_INFER_QUEUE_URL: &str = "SPHINX_INFER_QUEUE_URL";
/// URL of the ingest queue the Lambda is triggered by; continuations go there (required).
pub const ENV_INGEST_QUEUE_URL: &str = "SPHINX_INGEST_QUEUE_URL";
/// Stack default task list, comma syntax (`ocr,caption`).
pub const ENV_TASKS: &str = "SPHINX_TASKS";
/// Key prefix of uploads; other keys are ignored (guards against notification loops).
pub const ENV_INBOX_PREFIX: &str = "SPHINX_INBOX_PREFIX";
/// Most pages one invocation tiles before handing the rest to a continuation.
pub const ENV_PAGES_PER_INVOCATION: &str = "SPHINX_PAGES_PER_INVOCATION";
/// Seconds of invocation time kept free for writing the manifest and sending jobs.
pub const ENV_TIME_RESERVE_S: &str = "SPHINX_TIME_RESERVE_S";
/// Attempts per store/queue call on transient faults (on top of the SDK's own).
pub const ENV_RETRY_ATTEMPTS: &str = "SPHINX_RETRY_ATTEMPTS";
/// First retry pause in milliseconds; doubles per attempt.
pub const ENV_RETRY_BASE_MS: &str = "SPHINX_RETRY_BASE_MS";
/// The function's memory setting in MiB, set by the Lambda runtime itself.
pub const ENV_LAMBDA_MEMORY_MB: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// Default tasks when neither the environment, object metadata nor a sidecar says.
pub const DEFAULT_TASKS: &str = "ocr";
/// Default upload prefix (the S3 notification filter uses the same).
pub const DEFAULT_INBOX_PREFIX: &str = "inbox/";
/// Default page cap per invocation: 500 pages at the ~150 pages/s hayro renders
/// (ARCHITECTURE.md) plus tiling and upload stays well inside a 15-minute Lambda.
pub const DEFAULT_PAGES_PER_INVOCATION: u32 = 500;
/// Default time reserve: 20 s covers a manifest write and a few hundred
/// SendMessageBatch calls even with retries.
pub const DEFAULT_TIME_RESERVE: Duration = Duration::from_secs(20);
/// Default attempts per call on transient faults.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 4;
/// Default first retry pause.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(200);

/// A variable that is missing or cannot be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(String),
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// A comma list of tasks (`ocr,caption:short`), as one setting.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskList(pub Vec<Task>);

impl std::str::FromStr for TaskList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_tasks(s).map(TaskList).map_err(|e| e.to_string())
    }
}

/// Everything the tiler reads, each from its variable (or the flag of the same name).
#[derive(Clone, Debug, Args)]
pub struct Settings {
    #[arg(long, env = ENV_BUCKET)]
    pub bucket: String,
    #[arg(long, env = ENV_INFER_QUEUE_URL)]
    pub infer_queue_url: String,
    #[arg(long, env = ENV_INGEST_QUEUE_URL)]
    pub ingest_queue_url: String,
    #[arg(long, env = ENV_TASKS, default_value = DEFAULT_TASKS)]
    pub tasks: TaskList,
    #[arg(long, env = ENV_INBOX_PREFIX, default_value = DEFAULT_INBOX_PREFIX)]
    pub inbox_prefix: String,
    #[arg(long, env = ENV_PAGES_PER_INVOCATION, default_value_t = DEFAULT_PAGES_PER_INVOCATION,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pages_per_invocation: u32,
    #[arg(long, env = ENV_TIME_RESERVE_S, value_parser = parse_seconds,
          default_value = "20")]
    pub time_reserve: Duration,
    #[arg(long, env = ENV_RETRY_ATTEMPTS, default_value_t = DEFAULT_RETRY_ATTEMPTS)]
    pub retry_attempts: u32,
    #[arg(long, env = ENV_RETRY_BASE_MS, default_value_t = DEFAULT_RETRY_BASE.as_millis() as u64)]
    pub retry_base_ms: u64,
    /// Set by Lambda from the function's `MemorySize`: the render child gets it minus
    /// the parent's headroom unless `SPHINX_RENDER_MEMORY_MB` says otherwise.
    #[arg(long, env = ENV_LAMBDA_MEMORY_MB, hide = true)]
    pub lambda_memory_mb: Option<u64>,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub render: RenderProgramArgs,
}

/// The tiler's resolved settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub bucket: String,
    pub infer_queue_url: String,
    pub ingest_queue_url: String,
    pub default_tasks: Vec<Task>,
    pub inbox_prefix: String,
    pub pages_per_invocation: u32,
    pub time_reserve: Duration,
    pub retry: RetryPolicy,
    pub tile: TileOptions,
    pub s3_force_path_style: bool,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the variables of `vars` (the environment, or a test's map) that name a
    /// setting, through the same parsers as flags; the process environment is not
    /// consulted, so a map is all there is. An empty variable counts as unset.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let command = Self::augment_args(clap::Command::new("sphinx-tiler").no_binary_name(true))
            .mut_args(|a| a.env(None::<&str>));
        let mut argv = Vec::new();
        for arg in Self::augment_args(clap::Command::new("names")).get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = env.to_str().and_then(|name| vars.get(name)) {
                if !value.is_empty() {
                    argv.push(format!("--{long}={value}"));
                }
            }
        }
        let matches = command
            .try_get_matches_from(&argv)
            .map_err(|e| name_the_variable(e, vars))?;
        Self::from_arg_matches(&matches).map_err(|e| name_the_variable(e, vars))
    }

    /// The settings resolved; the layout is checked like the worker checks it.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let tile = self.layout.config();
        tile.validate().map_err(|e| ConfigError::Invalid {
            name: ENV_CANVAS_PX.into(),
            value: format!("{} ({ENV_GRID}={})", tile.canvas, tile.grid),
            reason: e.to_string(),
        })?;
        Ok(Config {
            bucket: self.bucket.clone(),
            infer_queue_url: self.infer_queue_url.clone(),
            ingest_queue_url: self.ingest_queue_url.clone(),
            default_tasks: self.tasks.0.clone(),
            inbox_prefix: self.inbox_prefix.clone(),
            pages_per_invocation: self.pages_per_invocation,
            time_reserve: self.time_reserve,
            retry: RetryPolicy {
                attempts: self.retry_attempts.max(1),
                base: Duration::from_millis(self.retry_base_ms),
            },
            tile: TileOptions {
                tile,
                limits: self
                    .limits
                    .limits_within(self.lambda_memory_mb.map(|mb| mb << 20)),
                isolation: self.render.isolation(),
            },
            s3_force_path_style: self.s3.s3_force_path_style,
        })
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Settings::from_env()?.config()
    }

    /// Reads settings from a variable map (the environment, or a test's map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Settings::from_vars(vars)?.config()
    }
}

/// A clap error in terms of the variables: which one is missing or invalid.
fn name_the_variable(err: clap::Error, vars: &HashMap<String, String>) -> ConfigError {
    let rendered = err.render().to_string();
    // The message, without the usage line (which names every required flag).
    let text = rendered.split("Usage:").next().unwrap_or_default();
    let reason = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let names = Settings::augment_args(clap::Command::new("names"));
    let named = names.get_arguments().find_map(|a| {
        let long = a.get_long()?;
        let env = a.get_env()?.to_str()?;
        (text.contains(&format!("--{long} ")) || text.contains(&format!("--{long}=")))
            .then(|| env.to_string())
    });
    match named {
        Some(name) if err.kind() == clap::error::ErrorKind::MissingRequiredArgument => {
            ConfigError::Missing(name)
        }
        Some(name) => ConfigError::Invalid {
            value: vars.get(&name).cloned().unwrap_or_default(),
            name,
            reason,
        },
        None => ConfigError::Invalid {
            name: "settings".into(),
            value: String::new(),
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_core::isolate::{Isolation, ENV_RENDER_PROGRAM};
    use sphinx_core::limits::{self, Limits};
    use sphinx_core::tiling::{Align, TileConfig};

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        (ENV_BUCKET, "b"),
        (ENV_INFER_QUEUE_URL, "http://q/infer"),
        (ENV_INGEST_QUEUE_URL, "http://q/ingest"),
    ];

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.default_tasks, vec![Task::Ocr]);
        assert_eq!(c.inbox_prefix, "inbox/");
        assert_eq!(c.tile.limits, Limits::default());
        assert_eq!(c.tile.tile, TileConfig::tiny_1k());
        assert_eq!(c.time_reserve, DEFAULT_TIME_RESERVE);
        assert_eq!(
            (c.retry.attempts, c.retry.base),
            (DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_BASE)
        );
        assert!(!c.s3_force_path_style);
        let mut v = vars(BASE);
        v.insert(ENV_CANVAS_PX.into(), "640".into());
        assert_eq!(
            Config::from_vars(&v).unwrap().tile.tile,
            TileConfig::new(640, 2)
        );
        let mut v = vars(BASE);
        v.insert(ENV_TASKS.into(), "caption:short,ocr".into());
        v.insert(ENV_MAX_PAGES.into(), "7".into());
        v.insert(ENV_PAGES_PER_INVOCATION.into(), "2".into());
        v.insert(ENV_PAD_ALIGN.into(), "center".into());
        v.insert(ENV_S3_FORCE_PATH_STYLE.into(), "1".into());
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(c.default_tasks.len(), 2);
        assert_eq!((c.tile.limits.max_pages, c.pages_per_invocation), (7, 2));
        assert_eq!(c.tile.tile.align, Align::Center);
        assert!(c.s3_force_path_style);
    }

    #[test]
    fn the_page_timeout_takes_whole_or_fractional_seconds() {
        for (text, want) in [("30", 30_000), ("2.5", 2_500)] {
            let mut v = vars(BASE);
            v.insert(ENV_PAGE_TIMEOUT_S.into(), text.into());
            let c = Config::from_vars(&v).unwrap();
            assert_eq!(c.tile.limits.page_timeout, Duration::from_millis(want));
        }
    }

    #[test]
    fn the_render_child_gets_the_function_memory_minus_headroom() {
        let mut v = vars(BASE);
        v.insert(ENV_LAMBDA_MEMORY_MB.into(), "3008".into());
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(
            c.tile.limits.render_memory,
            (3008 << 20) - limits::RENDER_MEMORY_HEADROOM
        );
        v.insert(ENV_RENDER_MEMORY_MB.into(), "1024".into());
        assert_eq!(
            Config::from_vars(&v).unwrap().tile.limits.render_memory,
            1 << 30
        );
        v.insert(ENV_RENDER_PROGRAM.into(), "/opt/render".into());
        assert_eq!(
            Config::from_vars(&v).unwrap().tile.isolation,
            Isolation::Child {
                program: "/opt/render".into()
            }
        );
        // A tiny function still leaves its child a floor to work with.
        assert_eq!(limits::render_memory_within(512 << 20), 256 << 20);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = Config::from_vars(&vars(&BASE[1..])).unwrap_err();
        assert!(err.to_string().contains(ENV_BUCKET), "{err}");
        let mut v = vars(BASE);
        v.insert(ENV_MAX_BYTES.into(), "lots".into());
        let err = Config::from_vars(&v).unwrap_err();
        assert!(err.to_string().contains(ENV_MAX_BYTES), "{err}");
        let mut v = vars(BASE);
        v.insert(ENV_TASKS.into(), "dance".into());
        assert!(Config::from_vars(&v)
            .unwrap_err()
            .to_string()
            .contains(ENV_TASKS));
        let mut v = vars(BASE);
        v.insert(ENV_PAGES_PER_INVOCATION.into(), "0".into());
        let err = Config::from_vars(&v).unwrap_err().to_string();
        assert!(err.contains(ENV_PAGES_PER_INVOCATION), "{err}");
        // A layout no model can have: 641 px does not split into a 2x2 grid.
        let mut v = vars(BASE);
        v.insert(ENV_CANVAS_PX.into(), "641".into());
        let err = Config::from_vars(&v).unwrap_err().to_string();
        assert!(
            err.contains(ENV_CANVAS_PX) && err.contains("divisible"),
            "{err}"
        );
    }
}
