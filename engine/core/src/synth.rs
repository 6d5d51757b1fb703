//! Synthetic documents for training and evaluation (`sphinx synth`).
//!
//! Page `i` of seed `s` is a pure function of `(s, i)`: a rendered page of text with one
//! box per line (OCR targets), coloured shapes with a label and a box (grounding
//! targets), and a templated caption. [`generate`] writes a dataset directory:
//!
//! ```text
//! DIR/images/000000.png ...   the pages (RGB PNG)
//! DIR/annotations.jsonl       one PageAnnotation per line: boxes in page pixels
//! DIR/conversations.jsonl     one ConversationRecord per line: LLaMA2-Accessory's unified
//!                             conversation format, boxes as SPHINX box text
//! ```
//!
//! Same seed and range, byte-identical files, on any machine: the RNG is ChaCha8
//! ([`rng`]), the fonts are compiled in ([`fonts`]), the vocabulary is shipped
//! (`synth/words.txt`). A held-out set is a range of indices the training set did not use
//! (`first_index`). Pixel boxes `[x1, y1, x2, y2]` are pixel edges (x2, y2 exclusive) and
//! are exactly the box of the pixels that are not paper (before optional noise; with
//! blur they grow by [`noise::BLUR_RADIUS`]).

mod canvas;
pub mod caption;
pub mod conversation;
pub mod fonts;
pub mod layout;
pub mod noise;
pub mod rng;
mod shapes;
pub mod text;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};
use serde::{Deserialize, Serialize};

pub use conversation::{box_text, ConversationRecord, Turn};
pub use fonts::Face;
pub use layout::{TextBounds, LARGEST_EM_PX, MAX_MIN_EM_PX, PAGE_SIDES};
pub use text::{TextKind, RANDOM_CHARS, RANDOM_GROUP_MAX};

use caption::CaptionFacts;
use fonts::Fonts;
use rng::PageRng;
use text::Vocabulary;

/// Sub-directory of the dataset holding the page images.
pub const IMAGES_DIR: &str = "images";
/// Per-page annotations (page pixels).
pub const ANNOTATIONS_FILE: &str = "annotations.jsonl";
/// Training conversations (unified format).
pub const CONVERSATIONS_FILE: &str = "conversations.jsonl";
/// Most pages one call may generate: a bound on disk use (~10^6 pages is ~0.3 TB).
pub const MAX_COUNT: u64 = 1_000_000;

/// An axis-aligned box in page pixels: `[x1, y1, x2, y2]`, pixel edges, x2/y2 exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u32; 4]", into = "[u32; 4]")]
pub struct PixelBox {
    pub x1: u32,
    pub y1: u32,
    pub x2: u32,
    pub y2: u32,
}

impl PixelBox {
    pub const fn new(x1: u32, y1: u32, x2: u32, y2: u32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// The smallest box holding both.
    pub fn union(self, o: Self) -> Self {
        Self::new(
            self.x1.min(o.x1),
            self.y1.min(o.y1),
            self.x2.max(o.x2),
            self.y2.max(o.y2),
        )
    }

    /// Grown by `by` pixels on every side, clipped to a `width x height` page.
    pub fn grown(self, by: u32, width: u32, height: u32) -> Self {
        Self::new(
            self.x1.saturating_sub(by),
            self.y1.saturating_sub(by),
            (self.x2 + by).min(width),
            (self.y2 + by).min(height),
        )
    }

    /// Whether pixel (x, y) lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x1 && x < self.x2 && y >= self.y1 && y < self.y2
    }
}

impl From<[u32; 4]> for PixelBox {
    fn from([x1, y1, x2, y2]: [u32; 4]) -> Self {
        Self::new(x1, y1, x2, y2)
    }
}

impl From<PixelBox> for [u32; 4] {
    fn from(b: PixelBox) -> Self {
        [b.x1, b.y1, b.x2, b.y2]
    }
}

/// One line of text and the box of its ink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextLine {
    pub text: String,
    #[serde(rename = "box")]
    pub bbox: PixelBox,
}

/// One shape, its label (the grounding phrase, e.g. "red circle") and the box of its pixels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeAnnotation {
    pub label: String,
    #[serde(rename = "box")]
    pub bbox: PixelBox,
}

/// Everything known about one page (a line of `annotations.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageAnnotation {
    /// Image path relative to the dataset directory.
    pub image: String,
    pub seed: u64,
    pub index: u64,
    pub width: u32,
    pub height: u32,
    pub font: Face,
    /// Em size of the text in pixels.
    pub font_px: u32,
    /// Whether noise was added and whether the page was blurred (boxes then include the
    /// blur's spread).
    pub noise: bool,
    pub blurred: bool,
    /// Lines in reading order (top to bottom).
    pub lines: Vec<TextLine>,
    pub shapes: Vec<ShapeAnnotation>,
    pub caption: String,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    pub seed: u64,
    /// Index of the first page; pages `first_index..first_index + count` are made.
    pub first_index: u64,
    pub count: u64,
    /// Add light scan noise (and blur on half the pages).
    pub noise: bool,
    /// How much text a page may hold (default: unbounded, document-like).
    pub bounds: TextBounds,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth config: {reason}")]
    Config { reason: String },
    #[error("shipped font {name} cannot be parsed: {reason}")]
    Font { name: &'static str, reason: String },
    #[error("cannot write {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot encode {path}: {error}")]
    Encode {
        path: PathBuf,
        error: image::ImageError,
    },
}

/// A rendered page and its annotation.
pub struct SynthPage {
    pub image: RgbImage,
    pub annotation: PageAnnotation,
}

/// The generator: parsed fonts and vocabulary, reused across pages.
pub struct Synthesizer {
    fonts: Fonts,
    vocab: Vocabulary,
}

/// Relative image path of page `index`.
pub fn image_path(index: u64) -> String {
    format!("{IMAGES_DIR}/{index:06}.png")
}

impl Synthesizer {
    pub fn new() -> Result<Self, SynthError> {
        Ok(Self {
            fonts: Fonts::shipped()?,
            vocab: Vocabulary::shipped(),
        })
    }

    /// Renders page `index` of `seed`.
    pub fn page(&self, seed: u64, index: u64, noise: bool, bounds: TextBounds) -> SynthPage {
        let mut rng = PageRng::for_page(seed, index);
        let mut page = layout::lay_out(&self.fonts, &self.vocab, &mut rng, bounds);
        let (w, h) = (page.style.width, page.style.height);
        let blurred = noise && noise::degrade(&mut page.canvas, &mut rng);
        if blurred {
            for l in &mut page.lines {
                l.bbox = l.bbox.grown(noise::BLUR_RADIUS, w, h);
            }
            for s in &mut page.shapes {
                s.bbox = s.bbox.grown(noise::BLUR_RADIUS, w, h);
            }
        }
        let caption = caption::caption(
            &CaptionFacts {
                kind: page.style.kind,
                face: page.style.face,
                line_count: page.lines.len(),
                shape_labels: page.shapes.iter().map(|s| s.label.as_str()).collect(),
                first_line: page.lines.first().map(|l| l.text.as_str()),
            },
            &mut rng,
        );
        SynthPage {
            annotation: PageAnnotation {
                image: image_path(index),
                seed,
                index,
                width: w,
                height: h,
                font: page.style.face,
                font_px: page.style.em_px,
                noise,
                blurred,
                lines: page.lines,
                shapes: page.shapes,
                caption,
            },
            image: page.canvas.into_image(),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthSummary {
    pub pages: u64,
    pub lines: u64,
    pub shapes: u64,
}

/// Writes pages `cfg.first_index..+cfg.count` of `cfg.seed` under `out` (created if
/// missing; the three outputs are overwritten). `on_page` is called after each page.
pub fn generate(
    cfg: &SynthConfig,
    out: &Path,
    mut on_page: impl FnMut(u64),
) -> Result<SynthSummary, SynthError> {
    if cfg.count == 0 || cfg.count > MAX_COUNT {
        return Err(SynthError::Config {
            reason: format!("count {} is outside 1..={MAX_COUNT}", cfg.count),
        });
    }
    let end = cfg
        .first_index
        .checked_add(cfg.count)
        .ok_or_else(|| SynthError::Config {
            reason: format!(
                "first index {} + count {} overflows",
                cfg.first_index, cfg.count
            ),
        })?;
    if cfg.bounds.max_lines == Some(0) {
        return Err(SynthError::Config {
            reason: "max lines must be at least 1".into(),
        });
    }
    let largest_min_em = cfg.bounds.max_em_px.unwrap_or(MAX_MIN_EM_PX);
    if let Some(em) = cfg.bounds.min_em_px.filter(|&em| em > largest_min_em) {
        return Err(SynthError::Config {
            reason: format!("min em {em} px exceeds the largest honoured, {largest_min_em} px"),
        });
    }
    if let Some(em) = cfg.bounds.max_em_px.filter(|&em| em > LARGEST_EM_PX) {
        return Err(SynthError::Config {
            reason: format!("max em {em} px exceeds the largest honoured, {LARGEST_EM_PX} px"),
        });
    }
    if let Some((w, h)) = cfg.bounds.page_size {
        if !PAGE_SIDES.contains(&w) || !PAGE_SIDES.contains(&h) {
            return Err(SynthError::Config {
                reason: format!(
                    "page size {w}x{h} has a side outside {}..={} px",
                    PAGE_SIDES.start(),
                    PAGE_SIDES.end()
                ),
            });
        }
    }
    if let Some(px) = cfg.bounds.line_start_px {
        // Pages are at least 32 px wide; a start past half of the narrowest page the
        // config allows would leave most lines empty.
        let narrowest = cfg.bounds.page_size.map_or(*PAGE_SIDES.start(), |(w, _)| w);
        if px >= narrowest / 2 {
            return Err(SynthError::Config {
                reason: format!(
                    "line start {px} px is not left of the middle of a {narrowest} px wide page"
                ),
            });
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| SynthError::Io { path, error }
    };
    let images = out.join(IMAGES_DIR);
    fs::create_dir_all(&images).map_err(io(&images))?;
    let ann_path = out.join(ANNOTATIONS_FILE);
    let conv_path = out.join(CONVERSATIONS_FILE);
    let mut ann = BufWriter::new(File::create(&ann_path).map_err(io(&ann_path))?);
    let mut conv = BufWriter::new(File::create(&conv_path).map_err(io(&conv_path))?);
    let synth = Synthesizer::new()?;
    let mut summary = SynthSummary {
        pages: 0,
        lines: 0,
        shapes: 0,
    };
    for index in cfg.first_index..end {
        let page = synth.page(cfg.seed, index, cfg.noise, cfg.bounds);
        let png_path = out.join(&page.annotation.image);
        write_png(&page.image, &png_path)?;
        let mut record =
            conversation::record(format!("synth-{}-{index:06}", cfg.seed), &page.annotation);
        if cfg.bounds.ocr_only {
            record.conversations.truncate(2);
        }
        let mut line = serde_json::to_vec(&page.annotation).expect("annotation serializes");
        line.push(b'\n');
        ann.write_all(&line).map_err(io(&ann_path))?;
        let mut line = serde_json::to_vec(&record).expect("record serializes");
        line.push(b'\n');
        conv.write_all(&line).map_err(io(&conv_path))?;
        summary.pages += 1;
        summary.lines += page.annotation.lines.len() as u64;
        summary.shapes += page.annotation.shapes.len() as u64;
        on_page(index);
    }
    ann.flush().map_err(io(&ann_path))?;
    conv.flush().map_err(io(&conv_path))?;
    Ok(summary)
}

/// PNG with fast deflate: pages are mostly flat paper, so it still compresses well.
fn write_png(image: &RgbImage, path: &Path) -> Result<(), SynthError> {
    let file = File::create(path).map_err(|error| SynthError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut w = BufWriter::new(file);
    PngEncoder::new_with_quality(&mut w, CompressionType::Fast, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|error| SynthError::Encode {
            path: path.to_path_buf(),
            error,
        })?;
    w.flush().map_err(|error| SynthError::Io {
        path: path.to_path_buf(),
        error,
    })
}
