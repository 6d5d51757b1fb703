//! Page and document manifests: the versioned JSON contract between the tiler and the
//! worker (and anyone inspecting `work/<doc_id>/`).
//!
//! A [`PageManifest`] is the header of a page bundle (see `docs/bundle-format.md`): it
//! says what the page is, how it was placed on the canvas, which canvas cells are padding,
//! and where each stored cell's PNG lies in the bundle. Nothing derivable is stored: the
//! global view and the encoders' resolutions come from the rebuilt canvas. A [`DocumentManifest`] lists a
//! document's pages and their bundle keys. Readers reject an unknown major version.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::tiling::{Align, Placement, TileConfig, TiledPage, CLIP_MEAN, CLIP_STD, PAD_RGB};

/// Schema version written into every manifest: `MAJOR.MINOR`. A reader accepts any
/// minor of its major (minors only add optional fields) and rejects other majors.
///
/// 2.0: cells of the one canvas instead of separately resized views (1.x bundles carried a
/// PIL-resized global view the reference never makes, and the rounded padding colour).
pub const SCHEMA_VERSION: &str = "2.0";
/// The major part of [`SCHEMA_VERSION`].
pub const SCHEMA_MAJOR: u32 = 2;

/// Why a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "manifest schema_version {found:?} is not readable (this build reads {SCHEMA_MAJOR}.x)"
    )]
    UnsupportedVersion { found: String },
    #[error("manifest is inconsistent: {0}")]
    Invalid(String),
}

/// A byte range in a bundle's payload (the bytes after the JSON header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

/// One cell of the page canvas, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellEntry {
    pub row: u32,
    pub col: u32,
    /// True when the cell lies entirely outside the page (the plan): a skip-token model
    /// replaces it by its skip token; a model without one encodes it.
    pub padding: bool,
    /// File name of the cell: `r{row}c{col}.png`.
    pub key: String,
    /// Where the cell's PNG lies in the bundle payload; `None` only for a padding cell
    /// whose every pixel is the padding colour (rebuilt, never stored).
    pub range: Option<ByteRange>,
}

impl CellEntry {
    /// The key of the cell at (row, col).
    pub fn key(row: u32, col: u32) -> String {
        format!("r{row}c{col}.png")
    }
}

/// How pixels were prepared, so a consumer can normalise exactly as training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Per-channel mean for normalisation (CLIP).
    pub mean: [f32; 3],
    /// Per-channel std for normalisation (CLIP).
    pub std: [f32; 3],
    /// Padding colour in bytes: `int(mean * 255)`, as the reference's `PadToSquare`.
    pub pad_rgb: [u8; 3],
    /// Resampling used for the canvas.
    pub interpolation: Interpolation,
    pub canvas: u32,
    pub tile: u32,
    pub grid: u32,
    /// Where the page sits on its padded square (older manifests: top-left).
    #[serde(default)]
    pub align: Align,
}

impl Preprocess {
    /// The constants this build uses for `cfg`.
    pub fn for_config(cfg: &TileConfig) -> Self {
        Self {
            mean: CLIP_MEAN,
            std: CLIP_STD,
            pad_rgb: PAD_RGB,
            interpolation: Interpolation::Bicubic,
            canvas: cfg.canvas,
            tile: cfg.tile(),
            grid: cfg.grid,
            align: cfg.align,
        }
    }
}

/// Resampling filter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// PIL's `Image.BICUBIC` (Keys, a = -0.5, antialiased when shrinking).
    Bicubic,
}

/// The uploaded document a manifest came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Name of the upload (object key under `inbox/` or a path relative to the input folder).
    pub name: String,
    /// Detected type, e.g. `pdf`, `tiff`, `png`, `jpeg`.
    pub kind: String,
    /// Size of the upload in bytes.
    pub bytes: u64,
}

/// Everything about one page; the header of its bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageManifest {
    pub schema_version: String,
    /// SHA-256 (lowercase hex) of the uploaded bytes.
    pub doc_id: String,
    pub source: SourceInfo,
    pub page_index: u32,
    pub page_count: u32,
    /// Page size in PDF points (1/72 inch), or pixels at 72 dpi for raster inputs.
    pub size_points: [f32; 2],
    /// Size of the rendered page bitmap that was tiled.
    pub size_pixels: [u32; 2],
    pub placement: Placement,
    pub grid: u32,
    /// `grid^2` canvas cells, row-major.
    pub cells: Vec<CellEntry>,
    pub preprocess: Preprocess,
}

/// A document: its pages and where their bundles are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentManifest {
    pub schema_version: String,
    pub doc_id: String,
    pub source: SourceInfo,
    pub page_count: u32,
    /// Pages tiled so far, by index.
    pub pages: Vec<PageEntry>,
    pub tile_config: TileConfig,
    pub preprocess: Preprocess,
}

/// One page in a [`DocumentManifest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEntry {
    pub index: u32,
    /// Object key of the page bundle (`keys::page_bundle`).
    pub key: String,
    /// Views a skip-token model encodes (a model without one encodes
    /// `views + skipped`).
    pub views: u32,
    /// Padding cells, which a skip-token model replaces by its skip token.
    pub skipped: u32,
}

/// Only the version field, read first so an unknown major fails with a clear error
/// instead of a confusing shape error.
#[derive(Deserialize)]
struct Versioned {
    schema_version: String,
}

fn check_version(json: &[u8]) -> Result<(), ManifestError> {
    let Versioned { schema_version } = serde_json::from_slice(json)?;
    let major = schema_version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major != Some(SCHEMA_MAJOR) {
        return Err(ManifestError::UnsupportedVersion {
            found: schema_version,
        });
    }
    Ok(())
}

impl PageManifest {
    /// Describes a tiled page; cell ranges stay `None` until the bundle is built.
    pub fn new(
        doc_id: &str,
        source: SourceInfo,
        page_index: u32,
        page_count: u32,
        size_points: [f32; 2],
        tiled: &TiledPage,
        cfg: &TileConfig,
    ) -> Self {
        let grid = tiled.plan.grid();
        let cells = (0..grid)
            .flat_map(|row| (0..grid).map(move |col| (row, col)))
            .map(|(row, col)| CellEntry {
                row,
                col,
                padding: tiled.plan.is_skipped(row, col),
                key: CellEntry::key(row, col),
                range: None,
            })
            .collect();
        Self {
            schema_version: SCHEMA_VERSION.to_string(),
            doc_id: doc_id.to_string(),
            source,
            page_index,
            page_count,
            size_points,
            size_pixels: tiled.page_size,
            placement: tiled.placement.clone(),
            grid,
            cells,
            preprocess: Preprocess::for_config(cfg),
        }
    }

    /// Padding cells.
    pub fn skipped_count(&self) -> usize {
        self.cells.iter().filter(|c| c.padding).count()
    }

    /// Views a skip-token model encodes: the canvas alone for one cell, else the global
    /// view plus the cells that are not padding.
    pub fn kept_count(&self) -> usize {
        if self.grid == 1 {
            1
        } else {
            1 + self.cells.len() - self.skipped_count()
        }
    }

    /// The row-major padding plan.
    pub fn padding(&self) -> Vec<bool> {
        self.cells.iter().map(|c| c.padding).collect()
    }

    /// Pretty JSON, as written into bundles and `manifest.json` extracts.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest of plain fields always serializes")
    }

    /// Parses and validates a page manifest (version first, then [`Self::validate`]).
    pub fn from_json(json: &[u8]) -> Result<Self, ManifestError> {
        check_version(json)?;
        let manifest: Self = serde_json::from_slice(json)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Structural checks a reader relies on: the cell list matches the grid row-major
    /// with canonical keys, cell r0c0 is never padding, and the preprocessing agrees with
    /// the grid. (Ranges are checked against the payload by the bundle reader.)
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |why: String| Err(ManifestError::Invalid(why));
        let cfg = TileConfig {
            canvas: self.preprocess.canvas,
            grid: self.grid,
            align: self.preprocess.align,
        };
        if let Err(e) = cfg.validate() {
            return invalid(format!("grid/canvas: {e}"));
        }
        if self.preprocess.grid != self.grid || self.preprocess.tile != cfg.tile() {
            return invalid(format!(
                "preprocess grid {} / tile {} disagree with grid {} of canvas {}",
                self.preprocess.grid, self.preprocess.tile, self.grid, self.preprocess.canvas
            ));
        }
        if !self.size_points.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return invalid(format!(
                "size_points {:?} must be finite and >= 0",
                self.size_points
            ));
        }
        let scale = self.placement.scale;
        if !(scale.is_finite() && scale > 0.0) {
            return invalid(format!("placement scale {scale} must be finite and > 0"));
        }
        if self.page_index >= self.page_count {
            return invalid(format!(
                "page_index {} is not below page_count {}",
                self.page_index, self.page_count
            ));
        }
        if self.cells.len() != cfg.cell_count() {
            return invalid(format!(
                "{} cells for a {}x{} grid (expected {})",
                self.cells.len(),
                self.grid,
                self.grid,
                cfg.cell_count()
            ));
        }
        for (i, cell) in self.cells.iter().enumerate() {
            let (row, col) = (i as u32 / self.grid, i as u32 % self.grid);
            let key = CellEntry::key(row, col);
            if cell.row != row || cell.col != col || cell.key != key {
                return invalid(format!(
                    "cell {i} is r{}c{} {:?}, expected r{row}c{col} {key:?}",
                    cell.row, cell.col, cell.key
                ));
            }
        }
        if self.cells.first().is_some_and(|c| c.padding) {
            return invalid("cell r0c0 holds the page's corner and cannot be padding".to_string());
        }
        Ok(())
    }
}

impl DocumentManifest {
    /// A manifest for a document of `page_count` pages with no page recorded yet.
    pub fn new(doc_id: &str, source: SourceInfo, page_count: u32, cfg: &TileConfig) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.to_string(),
            doc_id: doc_id.to_string(),
            source,
            page_count,
            pages: Vec::new(),
            tile_config: cfg.clone(),
            preprocess: Preprocess::for_config(cfg),
        }
    }

    /// The manifest of one of this document's pages (ranges filled by the bundle builder).
    pub fn page_manifest(
        &self,
        page_index: u32,
        size_points: [f32; 2],
        tiled: &TiledPage,
    ) -> PageManifest {
        PageManifest::new(
            &self.doc_id,
            self.source.clone(),
            page_index,
            self.page_count,
            size_points,
            tiled,
            &self.tile_config,
        )
    }

    /// Records (or replaces, on a redelivery) a page, keeping pages sorted by index.
    pub fn record_page(&mut self, page: &PageManifest) {
        let entry = PageEntry {
            index: page.page_index,
            key: keys::page_bundle(&self.doc_id, page.page_index),
            views: page.kept_count() as u32,
            skipped: page.skipped_count() as u32,
        };
        match self.pages.binary_search_by_key(&entry.index, |p| p.index) {
            Ok(i) => self.pages[i] = entry,
            Err(i) => self.pages.insert(i, entry),
        }
    }

    /// Pretty JSON, as stored at `work/<doc_id>/manifest.json`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest of plain fields always serializes")
    }

    /// Parses a document manifest, rejecting unknown major versions.
    pub fn from_json(json: &[u8]) -> Result<Self, ManifestError> {
        check_version(json)?;
        let manifest: Self = serde_json::from_slice(json)?;
        if let Err(e) = manifest.tile_config.validate() {
            return Err(ManifestError::Invalid(format!("tile_config: {e}")));
        }
        if let Some(p) = manifest
            .pages
            .iter()
            .find(|p| p.index >= manifest.page_count)
        {
            return Err(ManifestError::Invalid(format!(
                "page {} is not below page_count {}",
                p.index, manifest.page_count
            )));
        }
        Ok(manifest)
    }
}
