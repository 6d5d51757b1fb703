//! SPHINX-X views of one page: the global view plus a grid of sub-images, and the skip plan.
//!
//! Semantics follow LLaMA2-Accessory (`accessory/data/transform.py` `PadToSquare` +
//! bicubic `Resize`, and `accessory/model/LLM/llama_ens5_light.py` `encode_image`), with the
//! page at the TOP-LEFT of the square as SPHINX-X's skip tokens require:
//!
//! 1. pad the page to a square of side `max(w, h)` with the reference's padding colour
//!    ([`PAD_RGB`]), page at (0, 0);
//! 2. canvas = PIL BICUBIC resize of that square to `canvas x canvas`: the ONE 8-bit image
//!    every view of the model derives from (`T_padded_resize`);
//! 3. the canvas is cut into a row-major `grid x grid` of cells; a cell that does not
//!    intersect the page's rectangle on the canvas is *padding* (the plan). A model with
//!    a skip token replaces a padding cell by it; a model without one (the released
//!    checkpoints) encodes it as the reference does.
//!
//! The global view and the encoders' resolutions are NOT made here: the model derives
//! them from the normalised canvas (`sphinx_model::views::views_from_canvas`), exactly as
//! `encode_image` does. The padded square is never materialised (see [`crate::resize`]).

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
/// The padding colour of the reference's `PadToSquare`: `int(CLIP_MEAN * 255)`, i.e.
/// truncated, (122, 116, 104). Released checkpoints saw exactly these bytes.
pub const PAD_RGB: [u8; 3] = [122, 116, 104];

/// Smallest tile side accepted: one DINOv2 ViT/14 patch.
pub const MIN_TILE: u32 = 14;
/// Largest canvas side accepted: 4x SPHINX-Tiny-1k's, far beyond any released model; it
/// bounds memory per page (4096^2 RGB = 48 MiB).
pub const MAX_CANVAS: u32 = 4096;
/// Largest grid accepted per side (64 sub-images), far beyond the released 2x2.
pub const MAX_GRID: u32 = 8;

/// Where the page sits on its padded square.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// Top-left, as SPHINX-X's skip tokens need (the padding collects in whole cells at the
    /// right or bottom): models trained here.
    #[default]
    TopLeft,
    /// Centred, as the reference's `PadToSquare` pastes it (`(0, (w - h) // 2)` for a wide
    /// page, `((h - w) // 2, 0)` for a tall one): the released checkpoints saw this.
    Center,
}

impl Align {
    /// Where a model needs the page: top-left when it has a skip token (padding then fills
    /// whole cells it can skip), centred otherwise (the released checkpoints).
    pub fn for_model(has_skip_token: bool) -> Self {
        if has_skip_token {
            Align::TopLeft
        } else {
            Align::Center
        }
    }

    /// The name flags, settings and messages use: `top-left` or `center`.
    pub fn name(self) -> &'static str {
        match self {
            Align::TopLeft => "top-left",
            Align::Center => "center",
        }
    }
}

impl std::fmt::Display for Align {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `top-left` (also `top_left`, the environment's historical spelling) or `center`.
impl std::str::FromStr for Align {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "top-left" | "top_left" => Ok(Align::TopLeft),
            "center" => Ok(Align::Center),
            _ => Err(
                "must be top-left (models with skip tokens) or center (released \
                      checkpoints)"
                    .into(),
            ),
        }
    }
}

/// Canvas and grid of the high-resolution views (`tile = canvas / grid`) and where the
/// page sits on the canvas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileConfig {
    /// Side of the square high-resolution canvas in pixels.
    pub canvas: u32,
    /// Sub-images per canvas side.
    pub grid: u32,
    /// Where the page sits on the padded square (absent in older manifests: top-left).
    #[serde(default)]
    pub align: Align,
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
            align: Align::TopLeft,
        }
    }

    /// `canvas` in a `grid x grid` of cells, the page at the top-left.
    pub const fn new(canvas: u32, grid: u32) -> Self {
        Self {
            canvas,
            grid,
            align: Align::TopLeft,
        }
    }

    /// The same layout with the page placed by `align`.
    pub const fn aligned(self, align: Align) -> Self {
        Self { align, ..self }
    }

    /// The 448 layout (`SPHINX-1k`'s `image_size = 448`): 2x2 sub-images of 224.
    pub const fn tiny_448() -> Self {
        Self::new(448, 2)
    }

    /// Side of one sub-image (and of the global view).
    pub fn tile(&self) -> u32 {
        self.canvas / self.grid.max(1)
    }

    /// Cells of the canvas: `grid^2`.
    pub fn cell_count(&self) -> usize {
        (self.grid as usize) * (self.grid as usize)
    }

    /// Encoder views of a page when nothing is skipped: the canvas alone for one cell
    /// (`llama_ens_light`), else the global view plus every cell (`llama_ens5_light`).
    pub fn view_count(&self) -> usize {
        if self.grid == 1 {
            1
        } else {
            1 + self.cell_count()
        }
    }

    /// Checks the grid, divisibility and size bounds.
    pub fn validate(&self) -> Result<(), TileConfigError> {
        let Self { canvas, grid, .. } = *self;
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

/// Where the page lands on the canvas: `scale = canvas / max(w, h)`, top-left at (x, y)
/// (0, 0 for [`Align::TopLeft`]; the centring offset in page pixels times `scale`, rounded,
/// for [`Align::Center`]), covering `width x height` canvas pixels (`ceil(w * scale)`,
/// `ceil(h * scale)`).
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

/// Offset of the page on its padded square, in page pixels: `PadToSquare`'s paste point.
fn offset(page_width_px: u32, page_height_px: u32, align: Align) -> (u32, u32) {
    match align {
        Align::TopLeft => (0, 0),
        Align::Center if page_width_px > page_height_px => {
            (0, (page_width_px - page_height_px) / 2)
        }
        Align::Center => ((page_height_px - page_width_px) / 2, 0),
    }
}

/// Fits a `page_width_px x page_height_px` page on the canvas and decides the padding: a
/// cell is padding iff it does not intersect the content rectangle.
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
    let (ox, oy) = offset(page_width_px, page_height_px, cfg.align);
    let at = |o: u32| ((u64::from(o) * canvas * 2 + side) / (2 * side)) as u32;
    let placement = Placement {
        scale: cfg.canvas as f64 / side as f64,
        x: at(ox),
        y: at(oy),
        width: fit(page_width_px),
        height: fit(page_height_px),
    };
    let tile = u64::from(cfg.tile());
    // Cell [c * tile, (c + 1) * tile) meets [o, o + len) * canvas / side, exactly.
    let meets = |c: u32, o: u32, len: u32| {
        let (lo, hi) = (u64::from(c) * tile * side, (u64::from(c) + 1) * tile * side);
        lo < (u64::from(o) + u64::from(len)) * canvas && hi > u64::from(o) * canvas
    };
    let skipped = (0..cfg.grid)
        .flat_map(|row| (0..cfg.grid).map(move |col| (row, col)))
        .map(|(row, col)| !(meets(col, ox, page_width_px) && meets(row, oy, page_height_px)))
        .collect();
    Ok((
        placement,
        SkipPlan {
            grid: cfg.grid,
            skipped,
        },
    ))
}

/// A tiled page: the 8-bit canvas every view derives from, where the page lies on it and
/// which cells are padding.
#[derive(Clone, Debug, PartialEq)]
pub struct TiledPage {
    /// Size of the page bitmap that was tiled, `[width, height]` in pixels.
    pub page_size: [u32; 2],
    pub placement: Placement,
    /// Which cells lie entirely outside the page (geometric; see [`plan`]).
    pub plan: SkipPlan,
    /// `canvas x canvas` RGB8: the padded page resized as `T_padded_resize` does.
    pub canvas: RgbImage,
}

impl TiledPage {
    /// Side of one cell.
    pub fn tile(&self) -> u32 {
        self.canvas.width() / self.plan.grid().max(1)
    }

    /// The exact crop of cell (row, col).
    pub fn cell(&self, row: u32, col: u32) -> RgbImage {
        crop(&self.canvas, self.tile(), row, col)
    }

    /// Whether every pixel of cell (row, col) is [`PAD_RGB`]: such a cell is derivable
    /// and a bundle stores no pixels for it. A padding cell next to the page can hold a
    /// few pixels of the bicubic filter's bleed; it is then not blank and is stored.
    pub fn cell_is_blank(&self, row: u32, col: u32) -> bool {
        let (tile, stride) = (self.tile() as usize, self.canvas.width() as usize * 3);
        let raw = self.canvas.as_raw();
        (row as usize * tile..(row as usize + 1) * tile).all(|y| {
            let at = y * stride + col as usize * tile * 3;
            raw[at..at + tile * 3]
                .chunks_exact(3)
                .all(|px| px == PAD_RGB)
        })
    }
}

/// Makes the canvas and padding plan of one page bitmap.
pub fn tile_page(page: &RgbImage, cfg: &TileConfig) -> Result<TiledPage, TilingError> {
    let (placement, plan) = plan(page.width(), page.height(), cfg)?;
    let page_size = [page.width(), page.height()];
    let side = page.width().max(page.height());
    // Centring: the padding before the page is materialised (at most half the page again);
    // the padding after it stays virtual, as for top-left.
    let shifted;
    let page = match offset(page.width(), page.height(), cfg.align) {
        (0, 0) => page,
        (ox, oy) => {
            let mut img =
                RgbImage::from_pixel(ox + page.width(), oy + page.height(), image::Rgb(PAD_RGB));
            image::imageops::replace(&mut img, page, i64::from(ox), i64::from(oy));
            shifted = img;
            &shifted
        }
    };
    let src = PaddedSource::new(page, side, side, PAD_RGB)?;
    let canvas = resize_padded(&src, cfg.canvas, cfg.canvas)?;
    Ok(TiledPage {
        page_size,
        placement,
        plan,
        canvas,
    })
}

/// A canvas of side `tile * grid` filled with [`PAD_RGB`], with `cells` (row, col, pixels)
/// pasted in: the inverse of cutting a canvas into stored cells.
pub fn assemble_canvas(
    tile: u32,
    grid: u32,
    cells: impl IntoIterator<Item = (u32, u32, RgbImage)>,
) -> RgbImage {
    let side = tile * grid;
    let mut canvas = RgbImage::from_pixel(side, side, image::Rgb(PAD_RGB));
    let stride = side as usize * 3;
    let row_bytes = tile as usize * 3;
    let raw: &mut [u8] = &mut canvas;
    for (row, col, img) in cells {
        debug_assert_eq!((img.width(), img.height()), (tile, tile));
        for (y, src) in img.as_raw().chunks_exact(row_bytes).enumerate() {
            let at = (row * tile) as usize * stride + y * stride + (col * tile) as usize * 3;
            raw[at..at + row_bytes].copy_from_slice(src);
        }
    }
    canvas
}

/// The `tile x tile` crop of cell (row, col) of `canvas`.
fn crop(canvas: &RgbImage, tile: u32, row: u32, col: u32) -> RgbImage {
    let stride = canvas.width() as usize * 3;
    let row_bytes = tile as usize * 3;
    let mut buf = Vec::with_capacity(row_bytes * tile as usize);
    for y in row * tile..(row + 1) * tile {
        let at = y as usize * stride + (col * tile) as usize * 3;
        buf.extend_from_slice(&canvas.as_raw()[at..at + row_bytes]);
    }
    RgbImage::from_raw(tile, tile, buf).expect("a crop of tile x tile RGB8 pixels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_colour_is_the_references_truncated_clip_mean() {
        // PadToSquare: tuple(int(x * 255) for x in OPENAI_CLIP_MEAN).
        for c in 0..3 {
            assert_eq!(f32::from(PAD_RGB[c]), (CLIP_MEAN[c] * 255.0).trunc());
        }
        assert_eq!(PAD_RGB, [122, 116, 104]);
    }

    #[test]
    fn centred_pages_sit_where_pad_to_square_pastes_them() {
        // A 96 x 32 page: PadToSquare pastes it at (0, (96 - 32) // 2) = (0, 32).
        let page = RgbImage::from_pixel(96, 32, image::Rgb([0, 0, 0]));
        let cfg = TileConfig::new(96, 2).aligned(Align::Center);
        let tiled = tile_page(&page, &cfg).unwrap();
        assert_eq!((tiled.placement.x, tiled.placement.y), (0, 32));
        assert_eq!(tiled.canvas.get_pixel(5, 31).0, PAD_RGB);
        assert_eq!(tiled.canvas.get_pixel(5, 32).0, [0, 0, 0]);
        assert_eq!(tiled.canvas.get_pixel(5, 63).0, [0, 0, 0]);
        assert_eq!(tiled.canvas.get_pixel(5, 64).0, PAD_RGB);
        // Rows 32..64 meet both rows of cells: nothing is padding.
        assert_eq!(tiled.plan.flags(), &[false; 4]);
        assert_eq!(tiled.page_size, [96, 32]);
        // A tall page is centred horizontally; a thin one leaves whole cells of padding.
        let (p, plan) = plan(10, 96, &TileConfig::new(96, 4).aligned(Align::Center)).unwrap();
        assert_eq!((p.x, p.y), (43, 0));
        assert_eq!(plan.flags()[..4], [true, false, false, true]);
    }

    #[test]
    fn cells_cut_and_assemble_back_to_the_canvas() {
        let mut page = RgbImage::from_pixel(90, 45, image::Rgb([1, 2, 3]));
        page.put_pixel(20, 44, image::Rgb([200, 100, 50]));
        let cfg = TileConfig::new(96, 2);
        let tiled = tile_page(&page, &cfg).unwrap();
        assert_eq!(tiled.plan.flags(), &[false, false, true, true]);
        // The page ends on the cell boundary: the bicubic upscale bleeds into the padding row.
        assert!(!tiled.cell_is_blank(1, 0));
        let cells = (0..2).flat_map(|r| (0..2).map(move |c| (r, c)));
        let kept: Vec<_> = cells
            .filter(|&(r, c)| !tiled.cell_is_blank(r, c))
            .map(|(r, c)| (r, c, tiled.cell(r, c)))
            .collect();
        assert_eq!(assemble_canvas(48, 2, kept), tiled.canvas);
        let blank = tile_page(&RgbImage::from_pixel(96, 40, image::Rgb([1, 2, 3])), &cfg).unwrap();
        assert!(blank.cell_is_blank(1, 1) && !blank.cell_is_blank(0, 0));
    }

    #[test]
    fn configs_validate() {
        assert_eq!(TileConfig::default(), TileConfig::tiny_1k());
        assert_eq!(TileConfig::tiny_1k().tile(), 512);
        assert_eq!(TileConfig::tiny_448().tile(), 224);
        assert!(TileConfig::tiny_448().validate().is_ok());
        let bad = |canvas, grid| TileConfig::new(canvas, grid).validate().unwrap_err();
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
