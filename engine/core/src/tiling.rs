//! SPHINX-X views of one page: the global view plus a grid of sub-images, and the skip plan.
//!
//! Semantics follow LLaMA2-Accessory (`accessory/data/transform.py` `PadToSquare` +
//! bicubic `Resize`, and `accessory/model/LLM/llama_ens5_light.py` `encode_image`), with the
//! page at the TOP-LEFT of the square as SPHINX-X's skip tokens require:
//!
//! 1. pad the page to a square of side `max(w, h)` with the CLIP mean colour, page at (0, 0);
//! 2. canvas = PIL BICUBIC resize of that square to `canvas x canvas`;
//!    sub-images = row-major `tile x tile` crops of the canvas;
//! 3. global view = PIL BICUBIC resize of the square to `tile x tile`;
//! 4. a sub-image whose cell does not intersect the page's rectangle on the canvas is a
//!    skip: it is never encoded and its pixels are never computed.
//!
//! The padded square is never materialised (see [`crate::resize`]).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::resize::{resize_padded, PaddedSource, ResizeError};

/// OpenAI CLIP's per-channel normalisation mean (RGB, in [0, 1]), as used by SPHINX-X's
/// transforms (`accessory/data/transform.py`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel normalisation std (RGB), same source as [`CLIP_MEAN`].
// Kept digit for digit as published, though f32 cannot hold the last digit.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// The padding colour: `round(CLIP_MEAN * 255)`, the byte value closest to zero after
/// normalisation. (The reference's `PadToSquare` truncates to (122, 116, 104); the
/// project's manifest contract fixes rounding, recorded in every manifest.)
pub const PAD_RGB: [u8; 3] = [123, 117, 104];

/// Smallest tile side accepted: one DINOv2 ViT/14 patch.
pub const MIN_TILE: u32 = 14;
/// Largest canvas side accepted: 4x SPHINX-Tiny-1k's, far beyond any released model; it
/// bounds memory per page (4096^2 RGB = 48 MiB).
pub const MAX_CANVAS: u32 = 4096;
/// Largest grid accepted per side (64 sub-images), far beyond the released 2x2.
pub const MAX_GRID: u32 = 8;

/// Canvas and grid of the high-resolution views; `tile = canvas / grid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileConfig {
    /// Side of the square high-resolution canvas in pixels.
    pub canvas: u32,
    /// Sub-images per canvas side.
    pub grid: u32,
}

/// Why a [`TileConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileConfigError {
    #[error("grid {grid} is outside 1..={MAX_GRID}")]
    Grid { grid: u32 },
    #[error("canvas {canvas} is not divisible by grid {grid}")]
    NotDivisible { canvas: u32, grid: u32 },
    #[error(
        "canvas {canvas} with grid {grid} gives tile {tile}, outside {MIN_TILE}..={MAX_CANVAS}"
    )]
    TileSize { canvas: u32, grid: u32, tile: u32 },
    #[error("canvas {canvas} is larger than {MAX_CANVAS}")]
    Canvas { canvas: u32 },
}

impl TileConfig {
    /// SPHINX-Tiny-1k (`llama_ens5_light.py`, `image_size = 1024`): 2x2 sub-images of 512.
    pub const fn tiny_1k() -> Self {
        Self {
            canvas: 1024,
            grid: 2,
        }
    }

    /// The 448 layout (`SPHINX-1k`'s `image_size = 448`): 2x2 sub-images of 224.
    pub const fn tiny_448() -> Self {
        Self {
            canvas: 448,
            grid: 2,
        }
    }

    /// Side of one sub-image (and of the global view).
    pub fn tile(&self) -> u32 {
        self.canvas / self.grid.max(1)
    }

    /// Number of views per page: the global view plus `grid^2` sub-images.
    pub fn view_count(&self) -> usize {
        1 + (self.grid as usize) * (self.grid as usize)
    }

    /// Checks the grid, divisibility and size bounds.
    pub fn validate(&self) -> Result<(), TileConfigError> {
        let Self { canvas, grid } = *self;
        if grid == 0 || grid > MAX_GRID {
            return Err(TileConfigError::Grid { grid });
        }
        if canvas > MAX_CANVAS {
            return Err(TileConfigError::Canvas { canvas });
        }
        if canvas % grid != 0 {
            return Err(TileConfigError::NotDivisible { canvas, grid });
        }
        let tile = canvas / grid;
        if tile < MIN_TILE {
            return Err(TileConfigError::TileSize { canvas, grid, tile });
        }
        Ok(())
    }
}

impl Default for TileConfig {
    fn default() -> Self {
        Self::tiny_1k()
    }
}

/// Where the page lands on the canvas: `scale = canvas / max(w, h)`, top-left at (x, y),
/// covering `width x height` canvas pixels (`ceil(w * scale)`, `ceil(h * scale)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub scale: f64,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Which grid cells are skipped, row-major.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipPlan {
    grid: u32,
    skipped: Vec<bool>,
}

impl SkipPlan {
    /// Builds a plan from row-major flags; `None` unless there are exactly `grid^2` flags.
    pub fn from_flags(grid: u32, skipped: Vec<bool>) -> Option<Self> {
        (skipped.len() == (grid as usize) * (grid as usize)).then_some(Self { grid, skipped })
    }

    /// Cells per side.
    pub fn grid(&self) -> u32 {
        self.grid
    }

    /// Whether cell (row, col) is skipped; cells outside the grid report `false`.
    pub fn is_skipped(&self, row: u32, col: u32) -> bool {
        row < self.grid && col < self.grid && self.skipped[(row * self.grid + col) as usize]
    }

    /// Number of skipped cells.
    pub fn skipped_count(&self) -> usize {
        self.skipped.iter().filter(|&&s| s).count()
    }

    /// Row-major skip flags.
    pub fn flags(&self) -> &[bool] {
        &self.skipped
    }
}

/// Why a page cannot be tiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TilingError {
    #[error("invalid tile config: {0}")]
    Config(#[from] TileConfigError),
    #[error("page bitmap is empty ({width}x{height} px)")]
    EmptyPage { width: u32, height: u32 },
    #[error("resampling failed: {0}")]
    Resize(#[from] ResizeError),
}

/// Fits a `page_width_px x page_height_px` page on the canvas and decides the skips: a
/// cell is skipped iff it does not intersect the content rectangle.
pub fn plan(
    page_width_px: u32,
    page_height_px: u32,
    cfg: &TileConfig,
) -> Result<(Placement, SkipPlan), TilingError> {
    cfg.validate()?;
    if page_width_px == 0 || page_height_px == 0 {
        return Err(TilingError::EmptyPage {
            width: page_width_px,
            height: page_height_px,
        });
    }
    let side = u64::from(page_width_px.max(page_height_px));
    let canvas = u64::from(cfg.canvas);
    // ceil(len * canvas / side) in exact integer arithmetic; the long side maps to `canvas`.
    let fit = |len: u32| ((u64::from(len) * canvas).div_ceil(side)) as u32;
    let placement = Placement {
        scale: cfg.canvas as f64 / side as f64,
        x: 0,
        y: 0,
        width: fit(page_width_px),
        height: fit(page_height_px),
    };
    let tile = cfg.tile();
    let skipped = (0..cfg.grid)
        .flat_map(|row| (0..cfg.grid).map(move |col| (row, col)))
        .map(|(row, col)| col * tile >= placement.width || row * tile >= placement.height)
        .collect();
    Ok((
        placement,
        SkipPlan {
            grid: cfg.grid,
            skipped,
        },
    ))
}

/// A tiled page: placement, skip plan, the global view and the sub-images
/// (row-major, `None` for a skipped cell).
#[derive(Clone, Debug, PartialEq)]
pub struct TiledPage {
    /// Size of the page bitmap that was tiled, `[width, height]` in pixels.
    pub page_size: [u32; 2],
    pub placement: Placement,
    pub plan: SkipPlan,
    pub global: RgbImage,
    pub subs: Vec<Option<RgbImage>>,
}

impl TiledPage {
    /// Views in model order (global, then sub-images row-major); `None` = skip.
    pub fn views(&self) -> impl Iterator<Item = Option<&RgbImage>> {
        std::iter::once(Some(&self.global)).chain(self.subs.iter().map(Option::as_ref))
    }
}

/// Makes the SPHINX-X views of one page bitmap.
pub fn tile_page(page: &RgbImage, cfg: &TileConfig) -> Result<TiledPage, TilingError> {
    let (placement, plan) = plan(page.width(), page.height(), cfg)?;
    let side = page.width().max(page.height());
    let src = PaddedSource::new(page, side, side, PAD_RGB)?;
    let tile = cfg.tile();
    let global = resize_padded(&src, tile, tile)?;
    // Cell (0, 0) always holds the page's corner, so the canvas is always needed.
    let canvas = resize_padded(&src, cfg.canvas, cfg.canvas)?;
    let subs = crop_cells(&canvas, tile, &plan);
    Ok(TiledPage {
        page_size: [page.width(), page.height()],
        placement,
        plan,
        global,
        subs,
    })
}

/// Row-major `tile x tile` crops of the canvas for the cells the plan keeps.
fn crop_cells(canvas: &RgbImage, tile: u32, plan: &SkipPlan) -> Vec<Option<RgbImage>> {
    let stride = canvas.width() as usize * 3;
    let row_bytes = tile as usize * 3;
    let mut subs = Vec::with_capacity(plan.skipped.len());
    for row in 0..plan.grid {
        for col in 0..plan.grid {
            if plan.is_skipped(row, col) {
                subs.push(None);
                continue;
            }
            let mut buf = Vec::with_capacity(row_bytes * tile as usize);
            for y in row * tile..(row + 1) * tile {
                let at = y as usize * stride + (col * tile) as usize * 3;
                buf.extend_from_slice(&canvas.as_raw()[at..at + row_bytes]);
            }
            subs.push(RgbImage::from_raw(tile, tile, buf));
        }
    }
    subs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_colour_is_rounded_clip_mean() {
        for c in 0..3 {
            assert_eq!(f32::from(PAD_RGB[c]), (CLIP_MEAN[c] * 255.0).round());
        }
    }

    #[test]
    fn configs_validate() {
        assert_eq!(TileConfig::default(), TileConfig::tiny_1k());
        assert_eq!(TileConfig::tiny_1k().tile(), 512);
        assert_eq!(TileConfig::tiny_448().tile(), 224);
        assert!(TileConfig::tiny_448().validate().is_ok());
        let bad = |canvas, grid| TileConfig { canvas, grid }.validate().unwrap_err();
        assert_eq!(bad(1024, 0), TileConfigError::Grid { grid: 0 });
        assert_eq!(
            bad(1000, 3),
            TileConfigError::NotDivisible {
                canvas: 1000,
                grid: 3
            }
        );
        assert_eq!(bad(8192, 2), TileConfigError::Canvas { canvas: 8192 });
        assert!(matches!(
            bad(16, 2),
            TileConfigError::TileSize { tile: 8, .. }
        ));
    }
}
