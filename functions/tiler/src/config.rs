//! Everything the tiler reads from its environment, parsed once at cold start.
//! Each variable is documented in `functions/tiler/README.md`.

use std::collections::HashMap;
use std::time::Duration;

use sphinx_core::isolate::{Isolation, ENV_RENDER_PROGRAM};
use sphinx_core::job::{parse_tasks, Task};
use sphinx_core::limits::{self, Limits};
use sphinx_core::pipeline::TileOptions;
use sphinx_core::tiling::{Align, TileConfig};

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
/// `1`/`true`: address S3 path-style (`endpoint/bucket/key`), as local S3 servers need.
pub const ENV_S3_FORCE_PATH_STYLE: &str = "SPHINX_S3_FORCE_PATH_STYLE";
/// Document limits (see `sphinx_core::limits`).
pub const ENV_MAX_BYTES: &str = "SPHINX_MAX_BYTES";
pub const ENV_MAX_PAGES: &str = "SPHINX_MAX_PAGES";
pub const ENV_MAX_PIXELS: &str = "SPHINX_MAX_PIXELS";
pub const ENV_MAX_RENDER_SIDE: &str = "SPHINX_MAX_RENDER_SIDE";
pub const ENV_PAGE_TIMEOUT_S: &str = "SPHINX_PAGE_TIMEOUT_S";
/// The served model's view layout: canvas side in pixels and sub-image grid. Bundles
/// tiled for another layout are refused by the worker, so these follow the model
/// (defaults: SPHINX-Tiny-1k's 1024 px, 2x2).
pub const ENV_CANVAS_PX: &str = "SPHINX_CANVAS_PX";
/// Where the page sits on the canvas: `top_left` (models with skip tokens, the default) or
/// `center` (released checkpoints, as the reference's `PadToSquare`).
pub const ENV_PAD_ALIGN: &str = "SPHINX_PAD_ALIGN";
/// Heap of the render child in MiB (default: from [`ENV_LAMBDA_MEMORY_MB`]).
pub const ENV_RENDER_MEMORY_MB: &str = "SPHINX_RENDER_MEMORY_MB";
/// The function's memory setting in MiB, set by the Lambda runtime itself.
pub const ENV_LAMBDA_MEMORY_MB: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
pub const ENV_GRID: &str = "SPHINX_GRID";

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
    Missing(&'static str),
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

pub use sphinx_core::retry::RetryPolicy;

/// The tiler's settings.
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

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads settings from a variable map (the environment, or a test's map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            vars.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or(ConfigError::Missing(name))
        };
        let tasks_list = vars.get(ENV_TASKS).map_or(DEFAULT_TASKS, String::as_str);
        let default_tasks = parse_tasks(tasks_list).map_err(|e| ConfigError::Invalid {
            name: ENV_TASKS,
            value: tasks_list.to_string(),
            reason: e.to_string(),
        })?;
        let defaults = Limits::default();
        let limits = Limits {
            max_bytes: number(vars, ENV_MAX_BYTES, defaults.max_bytes)?,
            max_pages: number(vars, ENV_MAX_PAGES, defaults.max_pages)?,
            max_pixels: number(vars, ENV_MAX_PIXELS, defaults.max_pixels)?,
            max_render_side: number(vars, ENV_MAX_RENDER_SIDE, defaults.max_render_side)?,
            page_timeout: Duration::from_secs(number(
                vars,
                ENV_PAGE_TIMEOUT_S,
                defaults.page_timeout.as_secs(),
            )?),
            render_memory: render_memory(vars)?,
        };
        let pages_per_invocation =
            number(vars, ENV_PAGES_PER_INVOCATION, DEFAULT_PAGES_PER_INVOCATION)?;
        if pages_per_invocation == 0 {
            return Err(ConfigError::Invalid {
                name: ENV_PAGES_PER_INVOCATION,
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Config {
            bucket: required(ENV_BUCKET)?,
            infer_queue_url: required(ENV_INFER_QUEUE_URL)?,
            ingest_queue_url: required(ENV_INGEST_QUEUE_URL)?,
            default_tasks,
            inbox_prefix: vars
                .get(ENV_INBOX_PREFIX)
                .cloned()
                .unwrap_or_else(|| DEFAULT_INBOX_PREFIX.to_string()),
            pages_per_invocation,
            time_reserve: Duration::from_secs(number(
                vars,
                ENV_TIME_RESERVE_S,
                DEFAULT_TIME_RESERVE.as_secs(),
            )?),
            retry: RetryPolicy {
                attempts: number(vars, ENV_RETRY_ATTEMPTS, DEFAULT_RETRY_ATTEMPTS)?.max(1),
                base: Duration::from_millis(number(
                    vars,
                    ENV_RETRY_BASE_MS,
                    DEFAULT_RETRY_BASE.as_millis() as u64,
                )?),
            },
            tile: TileOptions {
                tile: tile_config(vars)?,
                limits,
                isolation: match vars.get(ENV_RENDER_PROGRAM) {
                    Some(program) => Isolation::Child {
                        program: program.into(),
                    },
                    None => Isolation::this_binary(),
                },
            },
            s3_force_path_style: flag(vars, ENV_S3_FORCE_PATH_STYLE)?,
        })
    }
}

/// The render child's heap: [`ENV_RENDER_MEMORY_MB`] when set, else what the function's
/// memory setting (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, set by Lambda) leaves after the
/// parent's headroom ([`limits::render_memory_within`]), else the default.
fn render_memory(vars: &HashMap<String, String>) -> Result<u64, ConfigError> {
    if vars.contains_key(ENV_RENDER_MEMORY_MB) {
        return Ok(number::<u64>(vars, ENV_RENDER_MEMORY_MB, 0)? << 20);
    }
    if vars.contains_key(ENV_LAMBDA_MEMORY_MB) {
        let total = number::<u64>(vars, ENV_LAMBDA_MEMORY_MB, 0)? << 20;
        return Ok(limits::render_memory_within(total));
    }
    Ok(limits::DEFAULT_RENDER_MEMORY)
}

/// The layout from [`ENV_CANVAS_PX`], [`ENV_GRID`] and [`ENV_PAD_ALIGN`], checked like
/// the worker checks it.
fn tile_config(vars: &HashMap<String, String>) -> Result<TileConfig, ConfigError> {
    let defaults = TileOptions::default().tile;
    let align = match vars.get(ENV_PAD_ALIGN) {
        None => Align::TopLeft,
        Some(v) => v.parse().map_err(|reason| ConfigError::Invalid {
            name: ENV_PAD_ALIGN,
            value: v.clone(),
            reason,
        })?,
    };
    let tile = TileConfig::new(
        number(vars, ENV_CANVAS_PX, defaults.canvas)?,
        number(vars, ENV_GRID, defaults.grid)?,
    )
    .aligned(align);
    tile.validate().map_err(|e| ConfigError::Invalid {
        name: ENV_CANVAS_PX,
        value: format!("{} ({ENV_GRID}={})", tile.canvas, tile.grid),
        reason: e.to_string(),
    })?;
    Ok(tile)
}

fn flag(vars: &HashMap<String, String>, name: &'static str) -> Result<bool, ConfigError> {
    match vars
        .get(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name,
            value: other.to_string(),
            reason: "expected 1, 0, true or false".into(),
        }),
    }
}

fn number<T: std::str::FromStr>(
    vars: &HashMap<String, String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match vars.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(c.default_tasks.len(), 2);
        assert_eq!((c.tile.limits.max_pages, c.pages_per_invocation), (7, 2));
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
