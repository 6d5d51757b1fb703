//! One document through the whole ingestion flow: open -> render each page -> tile ->
//! page bundle. Shared unchanged by `sphinx tile`, `sphinx run` and the tiler Lambda,
//! so every path lays out byte-identical objects. Opening and rendering happen where
//! [`TileOptions::isolation`] says: the binaries use a child process under hard limits
//! ([`crate::isolate`]), so a decoder bomb costs one error record, not the process.

use std::ops::Range;
use std::sync::Arc;

use crate::bundle::PageBundle;
use crate::document::SourceKind;
use crate::error::DocError;
use crate::error_record::{Coded, ErrorCode};
use crate::isolate::{Isolation, Renderer};
use crate::keys;
use crate::limits::Limits;
use crate::manifest::{DocumentManifest, PageEntry, SourceInfo};
use crate::tiling::{plan, tile_page, TileConfig, TileConfigError};

/// Everything that decides what a document turns into, and where it is decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TileOptions {
    pub tile: TileConfig,
    pub limits: Limits,
    /// Where documents are opened and rendered (the binaries: a child process).
    pub isolation: Isolation,
}

/// One finished page: its bundle object, ready to store under `key`.
#[derive(Clone, Debug)]
pub struct PageOutput {
    pub index: u32,
    pub key: String,
    pub bundle: Vec<u8>,
    /// Views stored in the bundle (global + kept sub-images).
    pub views: u32,
    /// Sub-images replaced by a skip token.
    pub skipped: u32,
}

/// Why a document could not be tiled. The split matters to callers that retry:
/// an invalid document fails the same way every time, a sink failure may not.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    /// The input itself is bad (format, limits, encryption...): record it, do not retry.
    #[error(transparent)]
    Document(#[from] DocError),
    /// The options cannot produce views (e.g. a canvas not divisible by the grid).
    #[error("invalid tiling options: {0}")]
    Options(#[from] TileConfigError),
    /// A page could not be tiled or bundled although it decoded: a bug or a
    /// degenerate page; retrying will not help either.
    #[error("page {page}: {reason}")]
    Page { page: u32, reason: String },
    /// Writing a finished page failed (store unavailable...): transient, retry.
    #[error("could not store page output: {0:#}")]
    Sink(anyhow::Error),
}

impl TileError {
    /// True when retrying cannot help: the document must get an error record.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, TileError::Sink(_))
    }

    /// The code written into error records.
    pub fn code(&self) -> ErrorCode {
        match self {
            TileError::Document(e) => e.code(),
            TileError::Options(_) => ErrorCode::InvalidOptions,
            TileError::Page { .. } => ErrorCode::PageFailed,
            TileError::Sink(_) => ErrorCode::StoreFailed,
        }
    }
}

impl Coded for TileError {
    fn error_code(&self) -> ErrorCode {
        self.code()
    }
}

/// Opens the document just far enough to count its pages (no rendering).
pub fn page_count(bytes: Arc<Vec<u8>>, opts: &TileOptions) -> Result<u32, TileError> {
    opts.tile.validate()?;
    Renderer::with(&opts.isolation, &opts.limits, |r| {
        Ok(r.open(&bytes, &opts.limits, opts.tile.canvas)?.page_count)
    })
}

/// Tiles `pages` (all when `None`) of one document, handing each page bundle to `sink`
/// as soon as it is made so memory stays bounded by one page. Returns the document
/// manifest, which lists every page of the document (those outside `pages` are planned
/// from their sizes without rendering), so every continuation of a long document
/// returns the same manifest as one call over all pages.
pub fn tile_document(
    bytes: Arc<Vec<u8>>,
    source: &str,
    opts: &TileOptions,
    pages: Option<Range<u32>>,
    sink: &mut dyn FnMut(PageOutput) -> anyhow::Result<()>,
) -> Result<DocumentManifest, TileError> {
    opts.tile.validate()?;
    Renderer::with(&opts.isolation, &opts.limits, |renderer| {
        tile_with(renderer, bytes, source, opts, pages, sink)
    })
}

fn tile_with(
    renderer: &mut Renderer,
    bytes: Arc<Vec<u8>>,
    source: &str,
    opts: &TileOptions,
    pages: Option<Range<u32>>,
    sink: &mut dyn FnMut(PageOutput) -> anyhow::Result<()>,
) -> Result<DocumentManifest, TileError> {
    let doc_id = keys::doc_id(&bytes);
    let byte_len = bytes.len() as u64;
    let document = renderer.open(&bytes, &opts.limits, opts.tile.canvas)?;
    let count = document.page_count;
    let range = pages.unwrap_or(0..count);
    if range.end > count || range.start > range.end {
        return Err(DocError::PageOutOfRange {
            index: range.end.saturating_sub(1).max(range.start),
            count,
        }
        .into());
    }
    let info = SourceInfo {
        name: source.to_string(),
        kind: kind_name(document.kind).to_string(),
        bytes: byte_len,
    };
    let mut manifest = DocumentManifest::new(&doc_id, info, count, &opts.tile);
    for index in range {
        let page = renderer.render(index, &opts.limits)?;
        let page_failed = |reason: String| TileError::Page {
            page: index,
            reason,
        };
        let tiled = tile_page(&page.image, &opts.tile).map_err(|e| page_failed(e.to_string()))?;
        let page_manifest = manifest.page_manifest(index, page.size_points, &tiled);
        drop(page);
        let bundle =
            PageBundle::build(page_manifest, &tiled).map_err(|e| page_failed(e.to_string()))?;
        manifest.record_page(&bundle.manifest);
        let output = PageOutput {
            index,
            key: keys::page_bundle(&doc_id, index),
            views: bundle.manifest.kept_count() as u32,
            skipped: bundle.manifest.skipped_count() as u32,
            bundle: bundle.into_bytes(),
        };
        sink(output).map_err(TileError::Sink)?;
    }
    let tiled: Vec<u32> = manifest.pages.iter().map(|p| p.index).collect();
    for index in (0..count).filter(|i| !tiled.contains(i)) {
        let [width, height] = document.render_sizes[index as usize];
        let (_, plan) = plan(width, height, &opts.tile).map_err(|e| TileError::Page {
            page: index,
            reason: e.to_string(),
        })?;
        let skipped = plan.skipped_count() as u32;
        manifest.pages.push(PageEntry {
            index,
            key: keys::page_bundle(&doc_id, index),
            views: opts.tile.view_count() as u32 - skipped,
            skipped,
        });
    }
    manifest.pages.sort_by_key(|p| p.index);
    Ok(manifest)
}

/// The lowercase name of a format, as written in manifests.
fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Pdf => "pdf",
        SourceKind::Tiff => "tiff",
        SourceKind::Png => "png",
        SourceKind::Jpeg => "jpeg",
        SourceKind::Webp => "webp",
    }
}
