//! `--max-bytes`, `--max-pages`, ...: the limits flags every command that opens uploads
//! shares (`sphinx tile`, `sphinx run`), read into `sphinx_core::limits::Limits`.

use std::time::Duration;

use clap::Args;
use sphinx_core::limits::Limits;

/// Bounds on what one upload may cost; the defaults are `Limits::default()`.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Largest input file in bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// Most pages per document.
    #[arg(long)]
    pub max_pages: Option<u32>,
    /// Most decoded pixels per page image.
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Longest side a PDF page is rendered at, in pixels.
    #[arg(long)]
    pub max_render_side: Option<u32>,
    /// Seconds one page may take to render before the document fails.
    #[arg(long)]
    pub page_timeout: Option<f64>,
    /// MiB of heap for the child process that opens and renders documents; a decoder
    /// bomb that needs more becomes a `render_memory` error.
    #[arg(long)]
    pub max_render_memory: Option<u64>,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(v) = self.max_bytes {
            limits.max_bytes = v;
        }
        if let Some(v) = self.max_pages {
            limits.max_pages = v;
        }
        if let Some(v) = self.max_pixels {
            limits.max_pixels = v;
        }
        if let Some(v) = self.max_render_side {
            limits.max_render_side = v;
        }
        if let Some(v) = self.page_timeout {
            limits.page_timeout = Duration::from_secs_f64(v);
        }
        if let Some(v) = self.max_render_memory {
            limits.render_memory = v << 20;
        }
        limits
    }
}
