//! Page and document manifests: the versioned JSON contract between the tiler and the
//! worker (and anyone inspecting `work/<doc_id>/`).
//!
//! A [`PageManifest`] is the header of a page bundle (see `docs/bundle-format.md`): it
//! says what the page is, how it was placed on the canvas, which views exist, which are
//! skipped, and where each view's PNG lies in the bundle. A [`DocumentManifest`] lists a
//! document's pages and their bundle keys. Readers reject an unknown major version.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::tiling::{Placement, TileConfig, TiledPage, CLIP_MEAN, CLIP_STD, PAD_RGB};

/// Schema version written into every manifest: `MAJOR.MINOR`. A reader accepts any
/// minor of its major (minors only add optional fields) and rejects other majors.
pub const SCHEMA_VERSION: &str = "1.0";
/// The major part of [`SCHEMA_VERSION`].
pub const SCHEMA_MAJOR: u32 = 1;

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

/// Which view of a page an entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewKind {
    /// The whole padded page resized to one tile.
    Global,
    /// One cell of the high-resolution canvas.
    Sub,
}

/// A byte range in a bundle's payload (the bytes after the JSON header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

/// One view of a page, in model order (global first, then sub-images row-major).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewEntry {
    pub kind: ViewKind,
    /// Grid row of a sub-image; 0 for the global view.
    pub row: u32,
    /// Grid column of a sub-image; 0 for the global view.
    pub col: u32,
    /// True when the cell lies entirely in padding: the model uses one skip token.
    pub skip: bool,
    /// File name of the view: `global.png` or `r{row}c{col}.png`.
    pub key: String,
    /// Where the PNG lies in the bundle payload; `None` for a skip (no pixels stored).
    pub range: Option<ByteRange>,
}

impl ViewEntry {
    /// The key of the global view.
    pub const GLOBAL_KEY: &'static str = "global.png";

    /// The key of the sub-image at (row, col).
    pub fn sub_key(row: u32, col: u32) -> String {
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
    /// Padding colour in bytes: `round(mean * 255)`.
    pub pad_rgb: [u8; 3],
    /// Resampling used for the canvas and the global view.
    pub interpolation: Interpolation,
    pub canvas: u32,
    pub tile: u32,
    pub grid: u32,
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
    /// `1 + grid^2` views in model order.
    pub views: Vec<ViewEntry>,
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
    /// Views the model encodes (global + kept sub-images).
    pub views: u32,
    /// Sub-images replaced by a skip token.
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
    /// Describes a tiled page; view ranges stay `None` until the bundle is built.
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
        let mut views = vec![ViewEntry {
            kind: ViewKind::Global,
            row: 0,
            col: 0,
            skip: false,
            key: ViewEntry::GLOBAL_KEY.to_string(),
            range: None,
        }];
        for row in 0..grid {
            for col in 0..grid {
                views.push(ViewEntry {
                    kind: ViewKind::Sub,
                    row,
                    col,
                    skip: tiled.plan.is_skipped(row, col),
                    key: ViewEntry::sub_key(row, col),
                    range: None,
                });
            }
        }
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
            views,
            preprocess: Preprocess::for_config(cfg),
        }
    }

    /// Views the model encodes (not skipped).
    pub fn kept_count(&self) -> usize {
        self.views.iter().filter(|v| !v.skip).count()
    }

    /// Sub-images replaced by a skip token.
    pub fn skipped_count(&self) -> usize {
        self.views.iter().filter(|v| v.skip).count()
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

    /// Structural checks a reader relies on: the view list matches the grid in model
    /// order with canonical keys, skips carry no range, the global view is never skipped,
    /// and the preprocessing agrees with the grid.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |why: String| Err(ManifestError::Invalid(why));
        let cfg = TileConfig {
            canvas: self.preprocess.canvas,
            grid: self.grid,
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
        if self.views.len() != cfg.view_count() {
            return invalid(format!(
                "{} views for a {}x{} grid (expected {})",
                self.views.len(),
                self.grid,
                self.grid,
                cfg.view_count()
            ));
        }
        for (i, view) in self.views.iter().enumerate() {
            let (kind, row, col, key) = match i {
                0 => (ViewKind::Global, 0, 0, ViewEntry::GLOBAL_KEY.to_string()),
                _ => {
                    let cell = (i - 1) as u32;
                    let (row, col) = (cell / self.grid, cell % self.grid);
                    (ViewKind::Sub, row, col, ViewEntry::sub_key(row, col))
                }
            };
            if view.kind != kind || view.row != row || view.col != col || view.key != key {
                return invalid(format!(
                    "view {i} is {:?} r{}c{} {:?}, expected {kind:?} r{row}c{col} {key:?}",
                    view.kind, view.row, view.col, view.key
                ));
            }
            if view.kind == ViewKind::Global && view.skip {
                return invalid("the global view cannot be skipped".to_string());
            }
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
