//! One page from its random stream: page shape, paper and ink, then a top-to-bottom flow
//! of text rows with at most one band of shapes. Rows and the band never overlap, so each
//! annotated box is found as the ink inside its own row or shape frame.

use super::canvas::Canvas;
use super::fonts::{Face, Fonts};
use super::rng::PageRng;
use super::shapes::{self, Paint, ShapeKind, COLOURS};
use super::text::{TextKind, Vocabulary};
use super::{PixelBox, ShapeAnnotation, TextLine};

/// Page aspect classes. Strips are there so that SPHINX-X skips some sub-images: a page
/// more than twice as wide as tall leaves the bottom row of a 2x2 grid in padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Portrait,
    Landscape,
    Square,
    WideStrip,
    TallStrip,
}

impl PageKind {
    /// Relative frequency of each kind, in the order of [`PageKind::ALL`].
    const WEIGHTS: [u32; 5] = [40, 22, 10, 16, 12];
    const ALL: [PageKind; 5] = [
        PageKind::Portrait,
        PageKind::Landscape,
        PageKind::Square,
        PageKind::WideStrip,
        PageKind::TallStrip,
    ];

    /// The kind a page of this size is named by (for fixed page sizes): strips are more
    /// than 2.6 times as long as wide.
    fn of_size(width: u32, height: u32) -> Self {
        let (w, h) = (f64::from(width), f64::from(height));
        if w >= 2.6 * h {
            PageKind::WideStrip
        } else if h >= 2.6 * w {
            PageKind::TallStrip
        } else if w > 1.1 * h {
            PageKind::Landscape
        } else if h > 1.1 * w {
            PageKind::Portrait
        } else {
            PageKind::Square
        }
    }

    /// How captions name the kind.
    pub fn description(self) -> &'static str {
        match self {
            PageKind::Portrait => "portrait",
            PageKind::Landscape => "landscape",
            PageKind::Square => "square",
            PageKind::WideStrip => "wide strip",
            PageKind::TallStrip => "tall strip",
        }
    }

    /// A random page size of this kind: (width, height) in pixels. The longest side stays
    /// at most [`MAX_SIDE`] so pages stay cheap (the 1024 canvas downsizes them at most ~1.4x).
    fn size(self, rng: &mut PageRng) -> (u32, u32) {
        let times = |side: u32, lo: f64, hi: f64, rng: &mut PageRng| {
            ((f64::from(side) * rng.uniform(lo, hi)).round() as u32).min(MAX_SIDE)
        };
        match self {
            PageKind::Portrait => {
                let w = rng.range(560, 900);
                (w, times(w, 1.25, 1.45, rng))
            }
            PageKind::Landscape => {
                let h = rng.range(420, 700);
                (times(h, 1.25, 1.6, rng), h)
            }
            PageKind::Square => {
                let s = rng.range(480, 800);
                (s, s)
            }
            PageKind::WideStrip => {
                let h = rng.range(140, 300);
                (times(h, 2.6, 5.5, rng), h)
            }
            PageKind::TallStrip => {
                let w = rng.range(180, 300);
                (w, times(w, 2.6, 5.0, rng))
            }
        }
    }
}

/// Longest page side in pixels.
pub const MAX_SIDE: u32 = 1400;
/// Smallest em size: about the x-height of 10 pt text scanned at 150 dpi.
const MIN_EM_PX: u32 = 11;
/// Largest em size: a heading on the biggest pages.
const MAX_EM_PX: u32 = 34;
/// Pages get `min_side / EM_DIVISOR` as the upper end of their em range, so small pages
/// get small text and still hold several lines.
const EM_DIVISOR: u32 = 16;
/// Papers: white, cream, light grey, cool white.
const PAPERS: [[u8; 3]; 4] = [
    [255, 255, 255],
    [250, 246, 232],
    [238, 238, 236],
    [244, 248, 252],
];
/// Inks: black, dark grey, dark blue, dark brown.
const INKS: [[u8; 3]; 4] = [[0, 0, 0], [45, 45, 45], [20, 30, 95], [70, 45, 25]];
/// Extra pixels between text rows beyond the font's ascent + descent, so the ink boxes of
/// neighbouring rows never touch.
const ROW_GAP_PX: f32 = 2.0;
/// Smallest band of shapes worth drawing, in pixels.
const MIN_BAND_PX: f64 = 18.0;
/// Most shapes on one page.
const MAX_SHAPES: usize = 3;

/// Optional bounds on what a page holds. The defaults (none) give document-like pages;
/// the nano model is trained on small strips with one short aligned monospaced line
/// (`scripts/train-nano.sh` PAGE_FLAGS, docs/nano.md). Without any bound no random draw changes, so pages are those of earlier
/// versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextBounds {
    /// At most this many text lines per page.
    pub max_lines: Option<u32>,
    /// Smallest em size in pixels (at most [`MAX_MIN_EM_PX`], or `max_em_px` if set).
    pub min_em_px: Option<u32>,
    /// Largest em size in pixels (at most [`LARGEST_EM_PX`]); by default it depends on the
    /// page size and is at most 34.
    pub max_em_px: Option<u32>,
    /// Every page this size (width, height) in pixels; by default a random kind and size.
    pub page_size: Option<(u32, u32)>,
    /// No band of shapes (a page without shapes grounds its middle text line).
    pub no_shapes: bool,
    /// Only the text-detection (OCR) turn in the training record.
    pub ocr_only: bool,
    /// What the lines say: vocabulary words (the default) or random characters.
    pub text: TextKind,
    /// At most this many characters per line (spaces included).
    pub max_chars: Option<u32>,
    /// Every page in this face instead of a random one.
    pub face: Option<Face>,
    /// Every line starts this many pixels from the left edge (no indent, no centring):
    /// in a monospaced face at one em size, the k-th character of every line then sits in
    /// the same place on every page, so a reader can learn one alignment of answer
    /// characters to image columns (the nano's pages, docs/nano.md).
    pub line_start_px: Option<u32>,
}

impl TextBounds {
    /// The nano's pages: a 256 x 64 strip with one monospaced line of at most 7
    /// characters at 27 px, starting 16 px from the left, no shapes, OCR only (the same as
    /// `scripts/train-nano.sh`'s PAGE_FLAGS; docs/nano.md says why each).
    pub fn nano() -> Self {
        Self {
            max_lines: Some(1),
            min_em_px: Some(27),
            max_em_px: Some(27),
            page_size: Some((256, 64)),
            no_shapes: true,
            ocr_only: true,
            face: Some(Face::Mono),
            line_start_px: Some(16),
            max_chars: Some(7),
            ..Self::default()
        }
    }
}

/// Largest `min_em_px` a page can honour without `max_em_px` (the biggest em is
/// [`MAX_EM_PX`]).
pub const MAX_MIN_EM_PX: u32 = MAX_EM_PX - 2;
/// Largest `max_em_px`.
pub const LARGEST_EM_PX: u32 = 96;
/// Smallest and largest page side for `page_size`.
pub const PAGE_SIDES: std::ops::RangeInclusive<u32> = 32..=MAX_SIDE;

/// A page's look, drawn before its content.
#[derive(Clone, Debug)]
pub struct PageStyle {
    pub kind: PageKind,
    pub width: u32,
    pub height: u32,
    pub face: Face,
    pub em_px: u32,
    pub paper: [u8; 3],
    pub ink: [u8; 3],
}

/// What was drawn and where.
pub struct LaidOutPage {
    pub style: PageStyle,
    pub canvas: Canvas,
    pub lines: Vec<TextLine>,
    pub shapes: Vec<ShapeAnnotation>,
}

/// Draws the page of `rng`'s stream.
pub fn lay_out(
    fonts: &Fonts,
    vocab: &Vocabulary,
    rng: &mut PageRng,
    bounds: TextBounds,
) -> LaidOutPage {
    let mut kind = PageKind::ALL[rng.weighted(&PageKind::WEIGHTS)];
    let (mut width, mut height) = kind.size(rng);
    if let Some((w, h)) = bounds.page_size {
        (width, height) = (w, h);
        kind = PageKind::of_size(w, h);
    }
    let min_side = width.min(height);
    let (em_lo, em_hi) = match bounds.max_em_px {
        None => {
            let lo = bounds
                .min_em_px
                .unwrap_or(MIN_EM_PX)
                .clamp(MIN_EM_PX, MAX_MIN_EM_PX);
            (lo, (min_side / EM_DIVISOR).clamp(lo + 2, MAX_EM_PX))
        }
        Some(max) => {
            let hi = max.clamp(MIN_EM_PX, LARGEST_EM_PX);
            (
                bounds.min_em_px.unwrap_or(MIN_EM_PX).clamp(MIN_EM_PX, hi),
                hi,
            )
        }
    };
    // The face is drawn even when it is fixed, so fixing it changes no other draw.
    let drawn_face = *rng.pick(&Face::ALL);
    let style = PageStyle {
        kind,
        width,
        height,
        face: bounds.face.unwrap_or(drawn_face),
        em_px: rng.range(em_lo, em_hi),
        paper: *rng.pick(&PAPERS),
        ink: *rng.pick(&INKS),
    };
    let mut canvas = Canvas::new(width, height, style.paper);
    let em = style.em_px as f32;
    let ascent = fonts.ascent(style.face, em);
    let descent = fonts.descent(style.face, em);
    let spacing = rng.uniform(1.15, 1.6) as f32;
    let row_h = (em * spacing).max(ascent + descent + ROW_GAP_PX).ceil();
    let margin = (f64::from(min_side) * rng.uniform(0.03, 0.08))
        .round()
        .max(8.0) as u32;
    let (left, right) = (margin as f32, (width - margin) as f32);
    let bottom = (height - margin) as f32;
    let content_w = right - left;

    let shape_count = [0, 1, 2, 3][rng.weighted(&[30, 35, 22, 13])].min(MAX_SHAPES);
    let shape_count = if bounds.no_shapes { 0 } else { shape_count };
    let max_lines = bounds.max_lines.unwrap_or(u32::MAX);
    let est_rows = (((bottom - margin as f32) / row_h) as u32).clamp(1, max_lines.max(1));
    let band_after = rng.range(1, est_rows);

    let mut lines = Vec::new();
    let mut shapes_out = Vec::new();
    let mut y = margin as f32;
    let mut row = 0u32;
    let mut band_done = shape_count == 0;
    while y + row_h <= bottom && lines.len() < max_lines as usize {
        if !band_done && row >= band_after {
            band_done = true;
            let band_h = f64::from(em) * rng.uniform(2.5, 5.0);
            let band_h = band_h.min(f64::from(bottom - y));
            if band_h >= MIN_BAND_PX {
                let band = (f64::from(left), f64::from(y), f64::from(content_w), band_h);
                shapes_out = draw_shapes(&mut canvas, rng, band, shape_count);
                y += band_h.ceil() as f32 + ROW_GAP_PX;
                continue;
            }
        }
        row += 1;
        // Paragraph break: an empty row (not on fixed-size pages, which are too small
        // to lose a row).
        if rng.chance(0.1) && bounds.page_size.is_none() {
            y += row_h;
            continue;
        }
        let indent = if rng.chance(0.2) { 2.0 * em } else { 0.0 };
        // A fixed line start still takes the indent draw (the page's stream stays aligned).
        let (indent, left) = match bounds.line_start_px {
            Some(px) => (0.0, px as f32),
            None => (indent, left),
        };
        let avail = (right - left - indent).max(0.0);
        let target = if rng.chance(0.3) {
            avail * rng.uniform(0.3, 0.9) as f32
        } else {
            avail
        };
        let measure = |s: &str| fonts.measure(style.face, em, s);
        if let Some(text) = vocab.line(rng, target, measure, bounds.text, bounds.max_chars) {
            let layout = fonts.layout(style.face, em, &text);
            let centred = rng.chance(0.1) && bounds.line_start_px.is_none();
            let x = if centred {
                left + ((content_w - layout.advance) / 2.0).max(0.0)
            } else {
                left + indent
            };
            let baseline = (y + ascent).round();
            fonts.draw(
                &mut canvas,
                style.face,
                &layout,
                x.round(),
                baseline,
                style.ink,
            );
            let band = PixelBox::new(0, y as u32, width, (y + row_h).ceil() as u32);
            if let Some(bbox) = canvas.ink_box(band) {
                lines.push(TextLine { text, bbox });
            }
        }
        y += row_h;
    }
    LaidOutPage {
        style,
        canvas,
        lines,
        shapes: shapes_out,
    }
}

/// Up to `count` shapes of distinct (colour, kind) side by side in `band` (x, y, w, h).
fn draw_shapes(
    canvas: &mut Canvas,
    rng: &mut PageRng,
    band: (f64, f64, f64, f64),
    count: usize,
) -> Vec<ShapeAnnotation> {
    let (bx, by, bw, bh) = band;
    let slot_w = bw / count as f64;
    let mut used: Vec<(usize, ShapeKind)> = Vec::new();
    let mut out = Vec::new();
    for slot in 0..count {
        let (colour, kind) = loop {
            let c = rng.below(COLOURS.len() as u64) as usize;
            let k = *rng.pick(&ShapeKind::ALL);
            if !used.contains(&(c, k)) {
                break (c, k);
            }
        };
        used.push((colour, kind));
        let aspect = kind.aspect(rng);
        let mut h = bh * rng.uniform(0.6, 1.0);
        let mut w = h * aspect;
        let max_w = slot_w * 0.9;
        if w > max_w {
            h *= max_w / w;
            w = max_w;
        }
        let x = bx + slot as f64 * slot_w + rng.uniform(0.0, (slot_w - w).max(0.0));
        let y = by + rng.uniform(0.0, (bh - h).max(0.0));
        let paint = if rng.chance(0.6) {
            Paint::Fill
        } else {
            Paint::Stroke(rng.uniform(2.0, (h.min(w) / 6.0).max(2.5)))
        };
        let (name, rgb) = COLOURS[colour];
        if let Some(bbox) = shapes::draw(canvas, kind, (x, y, w, h), rgb, paint) {
            out.push(ShapeAnnotation {
                label: format!("{name} {}", kind.name()),
                bbox,
            });
        }
    }
    out
}
