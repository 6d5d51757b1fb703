//! Resource limits for decoding untrusted documents.
//!
//! Every upload is hostile until proven otherwise: these bounds keep one
//! document from exhausting the memory, CPU time or page budget of the tiler
//! Lambda or a worker. Each limit is checked as early as the information is
//! available (bytes before parsing, page counts and pixel counts from headers
//! before any page is decoded or rendered).

use std::time::Duration;

/// Default cap on the size of an uploaded document: 256 MiB. A 2,000-page scan
/// at 300 dpi with JPEG pages is ~150-250 MiB; anything larger is split upstream.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Default cap on pages per document: 2,000, above the page count of any book
/// scan we expect, and small enough that one document's jobs fit one SQS batch run.
pub const DEFAULT_MAX_PAGES: u32 = 2_000;

/// Default cap on decoded raster pixels per page: 200 Mpx (~600 MB as RGB8),
/// a 1.6 m x 1.2 m poster at 300 dpi; well under Lambda's 10 GB memory ceiling.
pub const DEFAULT_MAX_PIXELS: u64 = 200_000_000;

/// Default cap on the long side of a rendered PDF page: 4,096 px. The largest
/// SPHINX-X canvas is 1,024 px per side (2x2 sub-images of 512), so 4,096 leaves
/// room for a 4x4 grid without rendering pixels nobody reads.
pub const DEFAULT_MAX_RENDER_SIDE: u32 = 4_096;

/// Default wall-clock budget to render one PDF page: 30 s. hayro renders real
/// scanned pages in ~6 ms at 1,024 px (measured, ARCHITECTURE.md), so 30 s is
/// only reached by pathological content streams.
pub const DEFAULT_PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default heap of a render child ([`crate::isolate`]): 2 GiB. A 4,096 px page is 50 MB
/// of RGB; hayro needs a few times that for its pixmaps, so real documents stay far below,
/// while a decoder bomb hits the limit and becomes a `render_memory` error.
pub const DEFAULT_RENDER_MEMORY: u64 = 2 << 30;

/// What a process keeps for itself beside its render child: the document bytes (at most
/// [`DEFAULT_MAX_BYTES`]), one page bitmap and its bundle, the runtime. The tiler Lambda's
/// child gets `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` minus this.
pub const RENDER_MEMORY_HEADROOM: u64 = 768 << 20;

/// The render child's heap for a process allowed `total` bytes in all (the Lambda's
/// memory setting), leaving [`RENDER_MEMORY_HEADROOM`] to the parent; at least 256 MiB.
pub fn render_memory_within(total: u64) -> u64 {
    total.saturating_sub(RENDER_MEMORY_HEADROOM).max(256 << 20)
}

/// Bounds for decoding one document. Construct with [`Limits::default`] and
/// override fields, e.g. a short `page_timeout` in tests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Largest accepted document, in bytes (checked before parsing).
    pub max_bytes: u64,
    /// Largest accepted page count (checked at open, before any page renders).
    pub max_pages: u32,
    /// Largest accepted raster page, in decoded pixels (checked from the image
    /// header, before the pixel buffer is allocated).
    pub max_pixels: u64,
    /// Largest long side of a rendered PDF page in pixels; requests above it are
    /// clamped. Values above 65,535 are clamped to the renderer's own maximum.
    pub max_render_side: u32,
    /// Wall-clock budget for rendering one PDF page.
    pub page_timeout: Duration,
    /// Heap of the child process that opens and renders documents
    /// ([`crate::isolate::Isolation::Child`]), in bytes (`RLIMIT_DATA`).
    pub render_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_render_side: DEFAULT_MAX_RENDER_SIDE,
            page_timeout: DEFAULT_PAGE_TIMEOUT,
            render_memory: DEFAULT_RENDER_MEMORY,
        }
    }
}
