//! Settings every service shares, each read from a flag and from its `SPHINX_*`
//! environment variable alike (clap's `env`), with one parser per kind of value: the
//! document limits, the tiling layout, S3 addressing, the devices a model is placed on. A service's own settings struct
//! (`sphinx_tiler::Settings`, `sphinx serve`'s `ServeArgs`, `sphinx train`'s `TrainArgs`)
//! flattens the groups it needs. Behind the `cli` feature (clap).
//!
//! To add a setting: a field with `#[arg(long, env = ...)]` on the service's struct (or
//! on a group here when several services share it), and a line in the README table of
//! that service.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::Args;

use crate::limits::{self, Limits};
use crate::tiling::{Align, TileConfig};

/// `SPHINX_S3_FORCE_PATH_STYLE`: address S3 path-style (`endpoint/bucket/key`).
pub const ENV_S3_FORCE_PATH_STYLE: &str = "SPHINX_S3_FORCE_PATH_STYLE";
/// Document limits (see [`crate::limits`]).
pub const ENV_MAX_BYTES: &str = "SPHINX_MAX_BYTES";
pub const ENV_MAX_PAGES: &str = "SPHINX_MAX_PAGES";
pub const ENV_MAX_PIXELS: &str = "SPHINX_MAX_PIXELS";
pub const ENV_MAX_RENDER_SIDE: &str = "SPHINX_MAX_RENDER_SIDE";
pub const ENV_PAGE_TIMEOUT_S: &str = "SPHINX_PAGE_TIMEOUT_S";
/// Heap of the render child in MiB.
pub const ENV_RENDER_MEMORY_MB: &str = "SPHINX_RENDER_MEMORY_MB";
/// The layout bundles are tiled for: canvas side in pixels, cells per side, placement.
pub const ENV_CANVAS_PX: &str = "SPHINX_CANVAS_PX";
pub const ENV_GRID: &str = "SPHINX_GRID";
pub const ENV_PAD_ALIGN: &str = "SPHINX_PAD_ALIGN";
/// The devices a model is placed on (`cuda:0,cuda:1`).
pub const ENV_DEVICES: &str = "SPHINX_DEVICES";

/// Seconds, whole or fractional (`30`, `2.5`): flags and variables take the same text.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{e}: expected seconds such as 30 or 2.5"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{e}: expected seconds >= 0"))
}

/// A count that must be at least 1 (pages in a batch, decode slots, a token budget):
/// 0 is refused with the flag's name instead of quietly taken as 1 or as nothing to do.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}: expected a whole number of at least 1")),
    }
}

/// Bounds on what one upload may cost (`--max-bytes` or `SPHINX_MAX_BYTES`, ...); unset
/// ones keep [`Limits::default`]. Each flag's help says what it bounds and its default.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    #[arg(long, env = ENV_MAX_BYTES, help = limit_help(
        "Largest input file in bytes; a larger one is hashed as it streams, never read whole",
        format!("{} (256 MiB)", limits::DEFAULT_MAX_BYTES),
    ))]
    pub max_bytes: Option<u64>,
    #[arg(long, env = ENV_MAX_PAGES, help = limit_help(
        "Most pages per document", limits::DEFAULT_MAX_PAGES.to_string(),
    ))]
    pub max_pages: Option<u32>,
    #[arg(long, env = ENV_MAX_PIXELS, help = limit_help(
        "Most decoded pixels per page image (and per image a PDF declares)",
        limits::DEFAULT_MAX_PIXELS.to_string(),
    ))]
    pub max_pixels: Option<u64>,
    #[arg(long, env = ENV_MAX_RENDER_SIDE, help = limit_help(
        "Longest side a PDF page is rendered at, in pixels",
        limits::DEFAULT_MAX_RENDER_SIDE.to_string(),
    ))]
    pub max_render_side: Option<u32>,
    #[arg(long, env = ENV_PAGE_TIMEOUT_S, value_parser = parse_seconds, help = limit_help(
        "Seconds (whole or fractional) one page may take to render before the document fails",
        limits::DEFAULT_PAGE_TIMEOUT.as_secs_f64().to_string(),
    ))]
    pub page_timeout: Option<Duration>,
    #[arg(long, env = ENV_RENDER_MEMORY_MB, help = limit_help(
        "MiB of heap for the child process that opens and renders documents; a decoder bomb \
         that needs more becomes a `render_memory` error",
        format!(
            "{}; in the tiler Lambda, its memory less {}",
            limits::DEFAULT_RENDER_MEMORY >> 20,
            limits::RENDER_MEMORY_HEADROOM >> 20
        ),
    ))]
    pub max_render_memory: Option<u64>,
}

/// A limit's help line with its default, taken from [`crate::limits`] so the two cannot
/// drift apart.
fn limit_help(what: &str, default: String) -> String {
    format!("{what} [default: {default}]")
}

impl LimitArgs {
    /// The limits, unset ones at their defaults.
    pub fn limits(&self) -> Limits {
        self.limits_within(None)
    }

    /// The limits for a process allowed `total_memory` bytes in all (a Lambda's memory
    /// setting): without `--max-render-memory` the render child gets what that leaves
    /// ([`limits::render_memory_within`]).
    pub fn limits_within(&self, total_memory: Option<u64>) -> Limits {
        let d = Limits::default();
        Limits {
            max_bytes: self.max_bytes.unwrap_or(d.max_bytes),
            max_pages: self.max_pages.unwrap_or(d.max_pages),
            max_pixels: self.max_pixels.unwrap_or(d.max_pixels),
            max_render_side: self.max_render_side.unwrap_or(d.max_render_side),
            page_timeout: self.page_timeout.unwrap_or(d.page_timeout),
            render_memory: match (self.max_render_memory, total_memory) {
                (Some(mib), _) => mib << 20,
                (None, Some(total)) => limits::render_memory_within(total),
                (None, None) => d.render_memory,
            },
        }
    }
}

/// Canvas and grid of the SPHINX-X high-resolution views, and where the page sits.
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Canvas side in pixels (SPHINX-Tiny-1k: 1024; SPHINX-Tiny: 512).
    #[arg(long, env = ENV_CANVAS_PX, default_value_t = TileConfig::default().canvas)]
    pub canvas: u32,
    /// Cells per side of the canvas (SPHINX-Tiny-1k: 2; SPHINX-Tiny: 1).
    #[arg(long, env = ENV_GRID, default_value_t = TileConfig::default().grid)]
    pub grid: u32,
    /// Where the page sits on the canvas: top-left (models with skip tokens) or center
    /// (released checkpoints, as the reference's PadToSquare).
    #[arg(
        long,
        env = ENV_PAD_ALIGN,
        default_value_t = Align::TopLeft,
        value_parser = clap::builder::PossibleValuesParser::new(["top-left", "top_left", "center"])
            .map(|s| s.parse::<Align>().expect("a possible value"))
    )]
    pub align: Align,
}

impl Default for LayoutArgs {
    fn default() -> Self {
        let d = TileConfig::default();
        LayoutArgs {
            canvas: d.canvas,
            grid: d.grid,
            align: d.align,
        }
    }
}

impl LayoutArgs {
    pub fn config(&self) -> TileConfig {
        TileConfig::new(self.canvas, self.grid).aligned(self.align)
    }
}

/// How S3 is addressed; the variable takes 1/0, true/false (yes/no, on/off).
#[derive(Debug, Clone, Default, Args)]
pub struct S3Args {
    /// Address S3 path-style (`endpoint/bucket/key`), as local S3 servers need.
    #[arg(
        long,
        env = ENV_S3_FORCE_PATH_STYLE,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub s3_force_path_style: bool,
}

/// One device a model may be placed on: `cpu` or `cuda:N` (`cuda` is `cuda:0`). Named
/// here, without libtorch; the worker maps it onto a `tch::Device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "cpu" => return Ok(Self::Cpu),
            "cuda" => return Ok(Self::Cuda(0)),
            _ => {}
        }
        s.strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Self::Cuda)
            .ok_or_else(|| format!("{s:?} is no device: expected cpu, cuda or cuda:N"))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Where the model runs. Several devices place it across them in the order given
/// (pipeline: contiguous LLM layers per device, the encoders and embeddings on the first
/// one used), on the fewest that hold it, balanced; `sphinx_model::placement`.
#[derive(Debug, Clone, Default, Args)]
pub struct DeviceArgs {
    /// Devices to place the model on, comma-separated, in pipeline order (cuda:0,cuda:1).
    /// Default: the first GPU if there is one, else the CPU.
    #[arg(long, env = ENV_DEVICES, value_delimiter = ',')]
    pub devices: Vec<DeviceSpec>,
}

impl DeviceArgs {
    /// Refuses a device listed twice (its memory would count twice).
    pub fn validate(&self) -> Result<(), String> {
        for (i, d) in self.devices.iter().enumerate() {
            if self.devices[..i].contains(d) {
                return Err(format!("--devices / {ENV_DEVICES} lists {d} twice"));
            }
        }
        Ok(())
    }
}

/// The render child program, when not this binary (`SPHINX_RENDER_PROGRAM`; tests point
/// it at a binary built for it). Hidden: an operator never needs it.
#[derive(Debug, Clone, Default, Args)]
pub struct RenderProgramArgs {
    #[arg(long, env = crate::isolate::ENV_RENDER_PROGRAM, hide = true)]
    pub render_program: Option<PathBuf>,
}

impl RenderProgramArgs {
    /// A child process running the given program, else [`crate::isolate::Isolation::this_binary`].
    pub fn isolation(&self) -> crate::isolate::Isolation {
        match &self.render_program {
            Some(program) => crate::isolate::Isolation::Child {
                program: program.clone(),
            },
            None => crate::isolate::Isolation::this_binary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        layout: LayoutArgs,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        devices: DeviceArgs,
    }

    #[test]
    fn devices_parse_from_a_comma_list() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert!(cli.devices.devices.is_empty());
        let cli = Cli::try_parse_from(["x", "--devices", "cuda:0,cuda:3, cuda"]).unwrap();
        assert_eq!(
            cli.devices.devices,
            [
                DeviceSpec::Cuda(0),
                DeviceSpec::Cuda(3),
                DeviceSpec::Cuda(0)
            ]
        );
        let err = cli.devices.validate().unwrap_err();
        assert!(err.contains("cuda:0 twice"), "{err}");
        let cli = Cli::try_parse_from(["x", "--devices", "cpu"]).unwrap();
        assert_eq!(cli.devices.devices, [DeviceSpec::Cpu]);
        assert!(cli.devices.validate().is_ok());
        let err = Cli::try_parse_from(["x", "--devices", "gpu1"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("expected cpu, cuda or cuda:N"), "{err}");
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    /// Counts of at least 1: 0 and non-numbers are refused, saying why.
    #[test]
    fn counts_are_at_least_one() {
        assert_eq!(at_least_one("8"), Ok(8));
        assert_eq!(at_least_one(" 1 "), Ok(1));
        assert_eq!(at_least_one("0"), Err("must be at least 1".to_string()));
        assert!(at_least_one("-2").unwrap_err().contains("at least 1"));
        assert!(at_least_one("many").unwrap_err().contains("at least 1"));
    }

    /// Each limit's help gives the default it falls back to, from `Limits::default()`.
    #[test]
    fn limit_help_states_the_defaults_in_force() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd.render_help().to_string();
        let d = Limits::default();
        for (flag, default) in [
            ("--max-bytes", d.max_bytes.to_string()),
            ("--max-pages", d.max_pages.to_string()),
            ("--max-pixels", d.max_pixels.to_string()),
            ("--max-render-side", d.max_render_side.to_string()),
            ("--page-timeout", d.page_timeout.as_secs().to_string()),
            ("--max-render-memory", (d.render_memory >> 20).to_string()),
        ] {
            let line = help
                .lines()
                .skip_while(|l| !l.contains(flag))
                .take(2)
                .collect::<String>();
            assert!(
                line.contains(&format!("[default: {default}")),
                "{flag}: {line}"
            );
        }
    }

    #[test]
    fn seconds_are_whole_or_fractional() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn flags_parse_into_the_same_values_as_defaults_and_overrides() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.limits.limits(), Limits::default());
        assert_eq!(cli.layout.config(), TileConfig::default());
        assert!(!cli.s3.s3_force_path_style);
        let cli = Cli::try_parse_from([
            "x",
            "--page-timeout",
            "1.5",
            "--max-render-memory",
            "64",
            "--align",
            "center",
            "--canvas",
            "512",
            "--s3-force-path-style",
        ])
        .unwrap();
        let l = cli.limits.limits();
        assert_eq!(
            (l.page_timeout, l.render_memory),
            (Duration::from_millis(1500), 64 << 20)
        );
        assert_eq!(
            cli.layout.config(),
            TileConfig::new(512, 2).aligned(Align::Center)
        );
        assert!(cli.s3.s3_force_path_style);
        let cli = Cli::try_parse_from(["x", "--align", "top_left"]).unwrap();
        assert_eq!(cli.layout.align, Align::TopLeft);
    }

    #[test]
    fn the_render_child_gets_the_process_memory_minus_headroom() {
        let l = LimitArgs::default().limits_within(Some(3008 << 20));
        assert_eq!(
            l.render_memory,
            (3008 << 20) - limits::RENDER_MEMORY_HEADROOM
        );
        let set = LimitArgs {
            max_render_memory: Some(1024),
            ..LimitArgs::default()
        };
        assert_eq!(set.limits_within(Some(3008 << 20)).render_memory, 1 << 30);
    }
}
