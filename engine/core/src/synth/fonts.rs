//! The fonts pages are set in, and line layout with them.
//!
//! Three DejaVu faces (Bitstream Vera licence, `assets/fonts/LICENSE`) are compiled into
//! the binary, so a seed renders the same pixels on every machine whatever fonts it has.
//! Sizes are em sizes in pixels (as in PIL's `ImageFont.truetype(size=...)` and CSS).

use ab_glyph::{point, Font, FontRef, Glyph, GlyphId, PxScale, ScaleFont};
use serde::{Deserialize, Serialize};

use super::canvas::Canvas;
use super::{PixelBox, SynthError};

/// DejaVu Sans 2.37 (Debian `fonts-dejavu-core` 2.37-6).
const SANS: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Serif 2.37 (same package).
const SERIF: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSerif.ttf");
/// DejaVu Sans Mono 2.37 (same package).
const MONO: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSansMono.ttf");

/// Font units per em when a font's `head` table does not say (the TrueType default).
const DEFAULT_UNITS_PER_EM: f32 = 2048.0;

/// A typeface of the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Face {
    Sans,
    Serif,
    Mono,
}

impl Face {
    /// Every face, in the order the generator draws from.
    pub const ALL: [Face; 3] = [Face::Sans, Face::Serif, Face::Mono];

    /// How a caption names the face.
    pub fn description(self) -> &'static str {
        match self {
            Face::Sans => "sans-serif",
            Face::Serif => "serif",
            Face::Mono => "monospace",
        }
    }
}

/// A laid-out line: glyphs positioned relative to the pen origin (x = 0 on the baseline).
pub struct LineLayout {
    glyphs: Vec<Glyph>,
    /// Advance width of the whole line in pixels.
    pub advance: f32,
}

/// The three parsed faces.
pub struct Fonts {
    faces: [FontRef<'static>; 3],
}

impl Fonts {
    /// Parses the embedded font files.
    pub fn shipped() -> Result<Self, SynthError> {
        let parse = |name: &'static str, bytes: &'static [u8]| {
            FontRef::try_from_slice(bytes).map_err(|e| SynthError::Font {
                name,
                reason: e.to_string(),
            })
        };
        Ok(Self {
            faces: [
                parse("DejaVuSans.ttf", SANS)?,
                parse("DejaVuSerif.ttf", SERIF)?,
                parse("DejaVuSansMono.ttf", MONO)?,
            ],
        })
    }

    fn font(&self, face: Face) -> &FontRef<'static> {
        &self.faces[face as usize]
    }

    /// ab_glyph scales by `ascent - descent`; this converts an em size in pixels.
    fn scale(&self, face: Face, em_px: f32) -> PxScale {
        let font = self.font(face);
        let upem = font.units_per_em().unwrap_or(DEFAULT_UNITS_PER_EM);
        PxScale::from(em_px * font.height_unscaled() / upem)
    }

    /// Distance from the baseline up to the font's ascender line, in pixels.
    pub fn ascent(&self, face: Face, em_px: f32) -> f32 {
        self.font(face).as_scaled(self.scale(face, em_px)).ascent()
    }

    /// Distance from the baseline down to the font's descender line (positive), in pixels.
    pub fn descent(&self, face: Face, em_px: f32) -> f32 {
        -self.font(face).as_scaled(self.scale(face, em_px)).descent()
    }

    /// Positions the glyphs of `text` with advances and kerning (no shaping: ASCII only).
    pub fn layout(&self, face: Face, em_px: f32, text: &str) -> LineLayout {
        let scale = self.scale(face, em_px);
        let scaled = self.font(face).as_scaled(scale);
        let mut glyphs = Vec::with_capacity(text.len());
        let mut caret = 0.0f32;
        let mut previous: Option<GlyphId> = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(prev) = previous {
                caret += scaled.kern(prev, id);
            }
            glyphs.push(id.with_scale_and_position(scale, point(caret, 0.0)));
            caret += scaled.h_advance(id);
            previous = Some(id);
        }
        LineLayout {
            glyphs,
            advance: caret,
        }
    }

    /// Advance width of `text` in pixels.
    pub fn measure(&self, face: Face, em_px: f32, text: &str) -> f32 {
        self.layout(face, em_px, text).advance
    }

    /// Box of the ink of `text` drawn with its pen origin at (0, 0) on the baseline:
    /// `[x1, y1, x2, y2]` in pixels relative to that origin (y grows downwards), `None`
    /// for text without ink. For comparing glyph placement with other rasterisers.
    pub fn ink_extent(&self, face: Face, em_px: u32, text: &str) -> Option<[i64; 4]> {
        let em = em_px as f32;
        let layout = self.layout(face, em, text);
        // Room for overhangs on every side of the advance box.
        let pad = 2 * em_px;
        let width = layout.advance.ceil() as u32 + 2 * pad;
        let height = 4 * em_px;
        let baseline = (2 * em_px) as f32;
        let mut canvas = Canvas::new(width, height, [255; 3]);
        self.draw(&mut canvas, face, &layout, pad as f32, baseline, [0; 3]);
        let b = canvas.ink_box(PixelBox::new(0, 0, width, height))?;
        let (ox, oy) = (i64::from(pad), baseline as i64);
        Some([
            i64::from(b.x1) - ox,
            i64::from(b.y1) - oy,
            i64::from(b.x2) - ox,
            i64::from(b.y2) - oy,
        ])
    }

    /// Draws a laid-out line with its pen origin at (`x`, `baseline`), alpha-blending
    /// `ink` by glyph coverage.
    pub fn draw(
        &self,
        canvas: &mut Canvas,
        face: Face,
        line: &LineLayout,
        x: f32,
        baseline: f32,
        ink: [u8; 3],
    ) {
        let font = self.font(face);
        for glyph in &line.glyphs {
            let mut g = glyph.clone();
            g.position = point(g.position.x + x, g.position.y + baseline);
            if let Some(outline) = font.outline_glyph(g) {
                let bounds = outline.px_bounds();
                let (x0, y0) = (bounds.min.x as i64, bounds.min.y as i64);
                outline.draw(|gx, gy, coverage| {
                    canvas.blend(x0 + i64::from(gx), y0 + i64::from(gy), ink, coverage);
                });
            }
        }
    }
}
