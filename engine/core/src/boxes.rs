//! Boxes in the model's answers: parsing them out of text, and mapping them from the
//! padded square canvas back to the page.
//!
//! SPHINX writes grounded phrases as `<p>phrase</p>[x1,y1,x2,y2;x1,y1,x2,y2]` and bare
//! boxes as `[x1,y1,x2,y2]`, every coordinate normalised to the padded square the page
//! was placed on (0..1, two decimals in practice). The reference's reader is
//! `extract_and_color` in LLaMA2-Accessory `accessory/demos/multi_turn_mm_box.py`
//! (pattern `<p>(.*?)</p>\s*(\[[\d.,;\s]*\])`, then bare `(\[[\d.,;\s]*\])`), and its
//! REC evaluation (`accessory/eval_mm/evaluate.py`) scales them by the square's side.
//!
//! [`parse`] is a hand-written scanner rather than a regex so that it can say what was
//! wrong with malformed output (a truncated list, a three-number group, an unclosed
//! `<p>`) instead of silently skipping it. It never panics: every input yields a
//! [`Parsed`] with whatever could be read plus [`ParseWarning`]s. Differences from the
//! reference, all deliberate: integers (`1`) are accepted as coordinates where the
//! reference's `\d+\.\d+` drops them, and a phrase ends at the first `</p>`.
//!
//! [`PageFrame`] undoes the tiler's placement (see [`crate::tiling::plan`]): a normalised
//! coordinate `n` is `n * canvas` canvas pixels, `(n * canvas - x) / scale` page pixels,
//! and page pixels times `size_points / size_pixels` PDF points.

use serde::{Deserialize, Serialize};

use crate::manifest::PageManifest;
use crate::tiling::Placement;

/// A box as the model wrote it: `[x1, y1, x2, y2]` normalised to the padded square canvas.
/// Kept verbatim (not clamped or reordered) so results show exactly what the model said.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NormBox(pub [f64; 4]);

/// One grounded span: a phrase (empty for a bare box list) and its boxes, in the order
/// they appear in the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grounded<B> {
    pub text: String,
    pub boxes: Vec<B>,
    /// How sure the model was of it: the geometric mean probability of the tokens that
    /// wrote the phrase (a bare list: the list), 0..1 (schema 1.3; absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// What was wrong with one part of the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// `<p>` with no `</p>` after it (generation was likely cut off).
    UnclosedPhrase,
    /// `<p>phrase</p>` not followed by a box list.
    PhraseWithoutBoxes,
    /// A box list that never reaches its `]` (generation was likely cut off).
    TruncatedBoxList,
    /// A `;`-separated group that is not four numbers.
    BadGroup,
    /// A coordinate outside 0..=1 (it is clamped when mapped to the page).
    OutOfRange,
    /// `x1 > x2` or `y1 > y2` (the page box uses the sorted corners).
    Inverted,
}

/// A parse warning: what, where (byte offset into the raw answer) and a readable message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParseWarning {
    pub kind: WarningKind,
    pub offset: usize,
    pub message: String,
}

/// Everything read from one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parsed {
    /// Grounded spans in order of appearance.
    pub spans: Vec<Grounded<NormBox>>,
    /// Where each span was written in the answer (byte range): its phrase, or a bare
    /// list's brackets. Token scores are mapped onto spans through these.
    pub sources: Vec<std::ops::Range<usize>>,
    /// The answer with `<p>`/`</p>` tags and box lists removed, for reading.
    pub plain_text: String,
    pub warnings: Vec<ParseWarning>,
}

/// Opening and closing phrase tags of the SPHINX box format.
const OPEN: &str = "<p>";
const CLOSE: &str = "</p>";
/// Coordinates per box: `x1, y1, x2, y2`.
const BOX_LEN: usize = 4;
/// Longest answer fragment quoted in a warning message, in characters.
const QUOTE_CHARS: usize = 40;

/// Outcome of reading a `[` at some offset.
enum ListRead {
    /// A well-formed list: boxes, warnings, and the byte offset just past `]`.
    List(Vec<NormBox>, Vec<ParseWarning>, usize),
    /// Runs to the end of the answer without `]` but holds digits.
    Truncated,
    /// Not a box list (other characters, or no digit at all): ordinary text.
    NotAList,
}

/// Parses every grounded phrase and bare box list out of `raw`. Never panics.
pub fn parse(raw: &str) -> Parsed {
    let mut spans = Vec::new();
    let mut sources = Vec::new();
    let mut warnings = Vec::new();
    let mut plain = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        // Next interesting byte: '<' of a tag or '['; both ASCII, so slicing stays on
        // character boundaries.
        let Some(rel) = rest.find(['<', '[']) else {
            plain.push_str(rest);
            break;
        };
        plain.push_str(&rest[..rel]);
        let at = i + rel;
        let here = &raw[at..];
        if here.starts_with(OPEN) {
            i = read_phrase(raw, at, &mut spans, &mut sources, &mut plain, &mut warnings);
        } else if here.starts_with('[') {
            match read_list(raw, at) {
                ListRead::List(boxes, w, end) => {
                    spans.push(Grounded {
                        text: String::new(),
                        boxes,
                        confidence: None,
                    });
                    sources.push(at..end);
                    warnings.extend(w);
                    i = end;
                }
                ListRead::Truncated => {
                    warnings.push(warn(
                        WarningKind::TruncatedBoxList,
                        at,
                        raw,
                        "box list has no closing ']'",
                    ));
                    i = raw.len();
                }
                ListRead::NotAList => {
                    plain.push('[');
                    i = at + 1;
                }
            }
        } else {
            plain.push('<');
            i = at + 1;
        }
    }
    Parsed {
        spans,
        sources,
        plain_text: tidy_spaces(&plain),
        warnings,
    }
}

/// Reads `<p>phrase</p>` at `at` plus an optional box list; returns where to go on.
fn read_phrase(
    raw: &str,
    at: usize,
    spans: &mut Vec<Grounded<NormBox>>,
    sources: &mut Vec<std::ops::Range<usize>>,
    plain: &mut String,
    warnings: &mut Vec<ParseWarning>,
) -> usize {
    let body_start = at + OPEN.len();
    let body = &raw[body_start..];
    let close = body.find(CLOSE);
    let reopen = body.find(OPEN);
    let close = match (close, reopen) {
        (Some(c), Some(o)) if o < c => None,
        (c, _) => c,
    };
    let Some(close) = close else {
        warnings.push(warn(
            WarningKind::UnclosedPhrase,
            at,
            raw,
            "<p> is not closed by </p>",
        ));
        // Keep the phrase text readable; the tag itself is dropped.
        return body_start;
    };
    let text = &body[..close];
    sources.push(body_start..body_start + close);
    plain.push_str(text);
    let after = body_start + close + CLOSE.len();
    let ws = raw[after..].len() - raw[after..].trim_start().len();
    let list_at = after + ws;
    if raw[list_at..].starts_with('[') {
        match read_list(raw, list_at) {
            ListRead::List(boxes, w, end) => {
                spans.push(Grounded {
                    text: text.to_owned(),
                    boxes,
                    confidence: None,
                });
                warnings.extend(w);
                return end;
            }
            ListRead::Truncated => {
                spans.push(Grounded {
                    text: text.to_owned(),
                    boxes: Vec::new(),
                    confidence: None,
                });
                warnings.push(warn(
                    WarningKind::TruncatedBoxList,
                    list_at,
                    raw,
                    "box list has no closing ']'",
                ));
                return raw.len();
            }
            ListRead::NotAList => {}
        }
    }
    spans.push(Grounded {
        text: text.to_owned(),
        boxes: Vec::new(),
        confidence: None,
    });
    warnings.push(warn(
        WarningKind::PhraseWithoutBoxes,
        at,
        raw,
        "phrase is not followed by a box list",
    ));
    after
}

/// Reads a box list starting with the `[` at `at`.
fn read_list(raw: &str, at: usize) -> ListRead {
    let body = &raw[at + 1..];
    let mut end = None;
    for (k, c) in body.char_indices() {
        match c {
            ']' => {
                end = Some(k);
                break;
            }
            c if c.is_ascii_digit() || matches!(c, '.' | ',' | ';') || c.is_whitespace() => {}
            _ => return ListRead::NotAList,
        }
    }
    let content = &body[..end.unwrap_or(body.len())];
    if !content.bytes().any(|b| b.is_ascii_digit()) {
        return ListRead::NotAList;
    }
    let Some(end) = end else {
        return ListRead::Truncated;
    };
    let mut boxes = Vec::new();
    let mut warnings = Vec::new();
    let mut group_at = at + 1;
    for group in content.split(';') {
        match parse_group(group) {
            Some(b) => {
                check_box(&b, group_at, raw, &mut warnings);
                boxes.push(b);
            }
            None => warnings.push(warn(
                WarningKind::BadGroup,
                group_at,
                raw,
                "box is not four numbers",
            )),
        }
        group_at += group.len() + 1;
    }
    ListRead::List(boxes, warnings, at + 1 + end + 1)
}

/// Four comma-separated numbers (`123`, `0.25`), or `None`.
fn parse_group(group: &str) -> Option<NormBox> {
    let mut out = [0.0; BOX_LEN];
    let mut n = 0;
    for tok in group.split(',') {
        let tok = tok.trim();
        let (int, frac) = tok.split_once('.').unwrap_or((tok, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if n == BOX_LEN || !digits(int) || !digits(frac) {
            return None;
        }
        out[n] = tok.parse().ok()?;
        n += 1;
    }
    (n == BOX_LEN).then_some(NormBox(out))
}

fn check_box(b: &NormBox, at: usize, raw: &str, warnings: &mut Vec<ParseWarning>) {
    let [x1, y1, x2, y2] = b.0;
    if b.0.iter().any(|v| !(0.0..=1.0).contains(v)) {
        warnings.push(warn(
            WarningKind::OutOfRange,
            at,
            raw,
            "coordinate outside 0..1",
        ));
    }
    if x1 > x2 || y1 > y2 {
        warnings.push(warn(WarningKind::Inverted, at, raw, "corners are inverted"));
    }
}

fn warn(kind: WarningKind, offset: usize, raw: &str, what: &str) -> ParseWarning {
    let quote: String = raw[offset..].chars().take(QUOTE_CHARS).collect();
    ParseWarning {
        kind,
        offset,
        message: format!("{what} at byte {offset}: {quote:?}"),
    }
}

/// Collapses runs of spaces left where box lists were removed, and trims the ends.
fn tidy_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.trim().chars() {
        if c == ' ' {
            if !prev_space {
                out.push(c);
            }
            prev_space = true;
        } else {
            if prev_space && matches!(c, '.' | ',' | ';' | ':') && out.ends_with(' ') {
                out.pop();
            }
            out.push(c);
            prev_space = false;
        }
    }
    out
}

/// Why a page's frame is unusable for mapping boxes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("page frame: {field} must be positive and finite, got {value}")]
    NotPositive { field: &'static str, value: f64 },
}

/// A page's geometry on the canvas: everything needed to map boxes both ways.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageFrame {
    /// Side of the square canvas in pixels.
    pub canvas: u32,
    /// Where the page lies on the canvas.
    pub placement: Placement,
    /// The page bitmap that was tiled, `[width, height]` in pixels.
    pub size_pixels: [u32; 2],
    /// The page in PDF points (1/72 in), `[width, height]`.
    pub size_points: [f32; 2],
}

/// A box on the page: the model's normalised box and the same box in page pixels and
/// PDF points (`[x1, y1, x2, y2]`, origin top-left, y down), sorted and clamped to the page.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageBox {
    pub norm: NormBox,
    pub pixels: [f64; 4],
    pub points: [f64; 4],
    /// True when clamping or reordering changed the box.
    pub adjusted: bool,
}

impl PageFrame {
    /// Checks that every size and the scale are positive and finite.
    pub fn new(
        canvas: u32,
        placement: Placement,
        size_pixels: [u32; 2],
        size_points: [f32; 2],
    ) -> Result<Self, FrameError> {
        let checks = [
            ("canvas", f64::from(canvas)),
            ("placement.scale", placement.scale),
            ("size_pixels[0]", f64::from(size_pixels[0])),
            ("size_pixels[1]", f64::from(size_pixels[1])),
            ("size_points[0]", f64::from(size_points[0])),
            ("size_points[1]", f64::from(size_points[1])),
        ];
        for (field, value) in checks {
            if !(value.is_finite() && value > 0.0) {
                return Err(FrameError::NotPositive { field, value });
            }
        }
        Ok(Self {
            canvas,
            placement,
            size_pixels,
            size_points,
        })
    }

    /// The frame recorded in a page's manifest.
    pub fn from_manifest(m: &PageManifest) -> Result<Self, FrameError> {
        Self::new(
            m.preprocess.canvas,
            m.placement.clone(),
            m.size_pixels,
            m.size_points,
        )
    }

    /// Page pixels of one normalised coordinate on `axis` (0 = x, 1 = y), unclamped.
    pub fn norm_to_pixel(&self, axis: usize, n: f64) -> f64 {
        let origin = if axis == 0 {
            self.placement.x
        } else {
            self.placement.y
        };
        (n * f64::from(self.canvas) - f64::from(origin)) / self.placement.scale
    }

    /// Normalised canvas coordinate of a page pixel coordinate on `axis` (0 = x, 1 = y).
    pub fn pixel_to_norm(&self, axis: usize, p: f64) -> f64 {
        let origin = if axis == 0 {
            self.placement.x
        } else {
            self.placement.y
        };
        (p * self.placement.scale + f64::from(origin)) / f64::from(self.canvas)
    }

    /// Maps a normalised box onto the page: sorted corners, clamped to the page.
    pub fn to_page(&self, norm: NormBox) -> PageBox {
        let [x1, y1, x2, y2] = norm.0;
        let clamp = |axis: usize, v: f64| {
            let p = self.norm_to_pixel(axis, v);
            let max = f64::from(self.size_pixels[axis]);
            if p.is_nan() {
                0.0
            } else {
                p.clamp(0.0, max)
            }
        };
        let (lx, hx) = (x1.min(x2), x1.max(x2));
        let (ly, hy) = (y1.min(y2), y1.max(y2));
        let pixels = [clamp(0, lx), clamp(1, ly), clamp(0, hx), clamp(1, hy)];
        let unclamped = [
            self.norm_to_pixel(0, x1),
            self.norm_to_pixel(1, y1),
            self.norm_to_pixel(0, x2),
            self.norm_to_pixel(1, y2),
        ];
        let adjusted = pixels != unclamped;
        let per_point = [
            f64::from(self.size_points[0]) / f64::from(self.size_pixels[0]),
            f64::from(self.size_points[1]) / f64::from(self.size_pixels[1]),
        ];
        let points = [
            pixels[0] * per_point[0],
            pixels[1] * per_point[1],
            pixels[2] * per_point[0],
            pixels[3] * per_point[1],
        ];
        PageBox {
            norm,
            pixels,
            points,
            adjusted,
        }
    }

    /// The normalised box of a page-pixel box (the inverse of [`PageFrame::to_page`]
    /// for boxes inside the page).
    pub fn to_norm(&self, pixels: [f64; 4]) -> NormBox {
        NormBox([
            self.pixel_to_norm(0, pixels[0]),
            self.pixel_to_norm(1, pixels[1]),
            self.pixel_to_norm(0, pixels[2]),
            self.pixel_to_norm(1, pixels[3]),
        ])
    }

    /// Maps every span of a parse onto the page.
    pub fn map_spans(&self, spans: &[Grounded<NormBox>]) -> Vec<Grounded<PageBox>> {
        spans
            .iter()
            .map(|g| Grounded {
                text: g.text.clone(),
                boxes: g.boxes.iter().map(|&b| self.to_page(b)).collect(),
                confidence: g.confidence,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(p: &Parsed) -> Vec<WarningKind> {
        p.warnings.iter().map(|w| w.kind).collect()
    }

    #[test]
    fn phrases_and_bare_lists_in_order() {
        let p =
            parse("A <p>man</p> [0.10,0.20,0.30,0.40;0.5,0.5,0.6,0.7] near [0.01,0.02,0.03,0.04].");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.spans.len(), 2);
        assert_eq!(p.spans[0].text, "man");
        assert_eq!(
            p.spans[0].boxes,
            vec![NormBox([0.1, 0.2, 0.3, 0.4]), NormBox([0.5, 0.5, 0.6, 0.7])]
        );
        assert_eq!(p.spans[1].text, "");
        assert_eq!(p.spans[1].boxes, vec![NormBox([0.01, 0.02, 0.03, 0.04])]);
        assert_eq!(p.plain_text, "A man near.");
    }

    #[test]
    fn malformed_parts_are_warned_not_dropped_silently() {
        let p = parse("<p>x</p>[0.1,0.2,0.3;0.1,0.2,0.3,0.4] <p>cut");
        assert_eq!(
            kinds(&p),
            vec![WarningKind::BadGroup, WarningKind::UnclosedPhrase]
        );
        assert_eq!(p.spans[0].boxes, vec![NormBox([0.1, 0.2, 0.3, 0.4])]);
        assert_eq!(p.plain_text, "x cut");

        let p = parse("<p>y</p>[0.1,0.2,0.3,0.4;0.5,0.");
        assert_eq!(kinds(&p), vec![WarningKind::TruncatedBoxList]);
        assert_eq!(p.spans[0].text, "y");

        let p = parse("[1.20,0.5,0.1,0.6] <p>z</p> and [note] <b>");
        assert_eq!(
            kinds(&p),
            vec![
                WarningKind::OutOfRange,
                WarningKind::Inverted,
                WarningKind::PhraseWithoutBoxes
            ]
        );
        assert_eq!(p.plain_text, "z and [note] <b>");
    }

    /// Each span says where it was written: its phrase, or a bare list's brackets, also
    /// for phrases without boxes and truncated lists.
    #[test]
    fn spans_know_their_bytes_in_the_answer() {
        let raw = "a <p>Hé</p> [0.1,0.2,0.3,0.4] b [0.5,0.5,0.6,0.6] <p>z</p> <p>cut</p>[0.1,";
        let p = parse(raw);
        let written: Vec<&str> = p.sources.iter().map(|r| &raw[r.clone()]).collect();
        assert_eq!(
            written,
            vec!["Hé", "[0.5,0.5,0.6,0.6]", "z", "cut"],
            "{:?}",
            p.spans
        );
        assert_eq!(p.sources.len(), p.spans.len());
    }

    #[test]
    fn mapping_undoes_placement() {
        // A 2000 x 1000 px page on a 1024 canvas: scale 0.512, content 1024 x 512.
        let frame = PageFrame::new(
            1024,
            Placement {
                scale: 0.512,
                x: 0,
                y: 0,
                width: 1024,
                height: 512,
            },
            [2000, 1000],
            [960.0, 480.0],
        )
        .unwrap();
        let b = frame.to_page(NormBox([0.25, 0.25, 0.75, 0.75]));
        assert_eq!(b.pixels, [500.0, 500.0, 1500.0, 1000.0]);
        assert_eq!(b.points, [240.0, 240.0, 720.0, 480.0]);
        assert!(b.adjusted, "y2 = 0.75 lies in the padding and is clamped");
        assert!(!frame.to_page(NormBox([0.1, 0.1, 0.2, 0.2])).adjusted);
        assert!(matches!(
            PageFrame::new(0, frame.placement.clone(), [1, 1], [1.0, 1.0]),
            Err(FrameError::NotPositive {
                field: "canvas",
                ..
            })
        ));
    }
}
