//! Draws a result's boxes and labels on its page, so a person can check them by eye.
//!
//! Each grounded span gets one colour (cycling through the five of the reference demo,
//! `accessory/demos/multi_turn_mm_box.py`), an outline per box and its phrase as a label
//! above the box's top-left corner. Boxes are the result's page-pixel boxes, scaled when
//! the image is not the bitmap the page was tiled from (e.g. a re-render at another size).
//! Labels use DejaVu Sans, shipped in `assets/fonts/` with its licence.

use std::path::Path;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};
use sphinx_core::boxes::{Grounded, PageBox};

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/LICENSE`).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// The reference demo's colours: red, blue, green, purple, orange (CSS named colours).
pub const PALETTE: [[u8; 3]; 5] = [
    [255, 0, 0],
    [0, 0, 255],
    [0, 128, 0],
    [128, 0, 128],
    [255, 165, 0],
];
/// Label text colour, on a background of the span's colour.
const LABEL_TEXT: [u8; 3] = [255, 255, 255];
/// Outline thickness and label height relative to the page's long side: 2 px and 16 px
/// on a 1,000 px page, never below those.
const LINE_PER_PX: f64 = 2.0 / 1000.0;
const MIN_LINE: u32 = 2;
const LABEL_PER_PX: f64 = 16.0 / 1000.0;
const MIN_LABEL: f32 = 12.0;
/// Longest label drawn, in characters (longer phrases end with an ellipsis).
const MAX_LABEL_CHARS: usize = 48;

/// Why an overlay could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("built-in font is unreadable: {0}")]
    Font(String),
    #[error("boxes refer to a {frame_w}x{frame_h} px page but the image is empty")]
    EmptyImage { frame_w: u32, frame_h: u32 },
    #[error("cannot write overlay {path}: {reason}")]
    Write { path: String, reason: String },
}

/// A copy of `page` with the spans' boxes and labels drawn; `frame_size` is the page
/// bitmap size (`[width, height]` px) the boxes' pixel coordinates refer to.
pub fn draw(
    page: &RgbImage,
    frame_size: [u32; 2],
    spans: &[Grounded<PageBox>],
) -> Result<RgbImage, OverlayError> {
    let (w, h) = page.dimensions();
    if w == 0 || h == 0 || frame_size[0] == 0 || frame_size[1] == 0 {
        return Err(OverlayError::EmptyImage {
            frame_w: frame_size[0],
            frame_h: frame_size[1],
        });
    }
    let font = FontRef::try_from_slice(FONT).map_err(|e| OverlayError::Font(e.to_string()))?;
    let long = f64::from(w.max(h));
    let line = ((long * LINE_PER_PX).round() as u32).max(MIN_LINE);
    let label_px = ((long * LABEL_PER_PX) as f32).max(MIN_LABEL);
    let sx = f64::from(w) / f64::from(frame_size[0]);
    let sy = f64::from(h) / f64::from(frame_size[1]);
    let mut out = page.clone();
    for (i, span) in spans.iter().enumerate() {
        let colour = Rgb(PALETTE[i % PALETTE.len()]);
        for b in &span.boxes {
            let [x1, y1, x2, y2] = b.pixels;
            let rect = Rect::clamped(x1 * sx, y1 * sy, x2 * sx, y2 * sy, w, h);
            outline(&mut out, rect, line, colour);
            if !span.text.is_empty() {
                label(&mut out, &font, label_px, rect, &span.text, colour);
            }
        }
    }
    Ok(out)
}

/// Writes `img` as PNG.
pub fn write_png(img: &RgbImage, path: &Path) -> Result<(), OverlayError> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| OverlayError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// A pixel rectangle `[x0, x1) x [y0, y1)` inside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl Rect {
    /// The pixels a float box covers, clamped to a `w x h` image, at least 1 px wide/high.
    pub fn clamped(x1: f64, y1: f64, x2: f64, y2: f64, w: u32, h: u32) -> Self {
        let c = |v: f64, max: u32| {
            if v.is_nan() {
                0
            } else {
                v.clamp(0.0, f64::from(max)) as u32
            }
        };
        let (x0, y0) = (c(x1.min(x2).floor(), w - 1), c(y1.min(y2).floor(), h - 1));
        let (xe, ye) = (c(x1.max(x2).ceil(), w), c(y1.max(y2).ceil(), h));
        Self {
            x0,
            y0,
            x1: xe.max(x0 + 1),
            y1: ye.max(y0 + 1),
        }
    }
}

fn fill(img: &mut RgbImage, r: Rect, colour: Rgb<u8>) {
    for y in r.y0..r.y1.min(img.height()) {
        for x in r.x0..r.x1.min(img.width()) {
            img.put_pixel(x, y, colour);
        }
    }
}

/// Draws the rectangle's border, `line` px thick, inside the rectangle.
fn outline(img: &mut RgbImage, r: Rect, line: u32, colour: Rgb<u8>) {
    let t = line
        .min((r.x1 - r.x0).div_ceil(2))
        .min((r.y1 - r.y0).div_ceil(2))
        .max(1);
    fill(img, Rect { y1: r.y0 + t, ..r }, colour);
    fill(img, Rect { y0: r.y1 - t, ..r }, colour);
    fill(img, Rect { x1: r.x0 + t, ..r }, colour);
    fill(img, Rect { x0: r.x1 - t, ..r }, colour);
}

/// Draws `text` in white on a `colour` band above the box (inside it at the page top).
fn label(img: &mut RgbImage, font: &FontRef, px: f32, r: Rect, text: &str, colour: Rgb<u8>) {
    let mut shown: String = text.chars().take(MAX_LABEL_CHARS).collect();
    if text.chars().count() > MAX_LABEL_CHARS {
        shown.push('…');
    }
    let scaled = font.as_scaled(PxScale::from(px));
    let width: f32 = shown
        .chars()
        .map(|c| scaled.h_advance(font.glyph_id(c)))
        .sum();
    let band_h = scaled.height().ceil() as u32;
    let band_w = (width.ceil() as u32 + 4).min(img.width() - r.x0);
    let top = if r.y0 >= band_h { r.y0 - band_h } else { r.y0 };
    let band = Rect {
        x0: r.x0,
        y0: top,
        x1: r.x0 + band_w,
        y1: (top + band_h).min(img.height()),
    };
    fill(img, band, colour);
    let mut caret = band.x0 as f32 + 2.0;
    let baseline = band.y0 as f32 + scaled.ascent();
    for c in shown.chars() {
        let id = font.glyph_id(c);
        let glyph = id.with_scale_and_position(px, ab_glyph::point(caret, baseline));
        caret += scaled.h_advance(id);
        if let Some(outlined) = font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, coverage| {
                let x = bounds.min.x as i64 + i64::from(gx);
                let y = bounds.min.y as i64 + i64::from(gy);
                let inside = x >= i64::from(band.x0)
                    && x < i64::from(band.x1)
                    && y >= i64::from(band.y0)
                    && y < i64::from(band.y1);
                if inside {
                    let p = img.get_pixel_mut(x as u32, y as u32);
                    for (c, &fg) in p.0.iter_mut().zip(LABEL_TEXT.iter()) {
                        let (bg, fg) = (f32::from(*c), f32::from(fg));
                        *c = (bg + (fg - bg) * coverage.clamp(0.0, 1.0)).round() as u8;
                    }
                }
            });
        }
    }
}
