//! The OCR lines of each page, read once from a merged result, for every format.

use std::collections::BTreeMap;

use sphinx_core::DocumentResult;
use sphinx_core::Task;

/// Most lines taken from one page: an answer is bounded by the token budget, this bounds
/// what a format may hold whatever produced the result.
pub const MAX_LINES_PER_PAGE: usize = 20_000;

/// One recognised line with its box, `[x1, y1, x2, y2]` from the page's top-left corner.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub text: String,
    /// In the pixels of the page bitmap that was read.
    pub pixels: [f64; 4],
    /// In PDF points (1/72 in).
    pub points: [f64; 4],
    /// The model's confidence in the line's text, 0..1, when the result has it.
    pub confidence: Option<f32>,
}

/// A page's size, in pixels of the bitmap read and in points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageSize {
    pub pixels: [u32; 2],
    pub points: [f32; 2],
}

/// What a page holds in the text formats.
#[derive(Clone, Debug, PartialEq)]
pub enum PageText {
    /// The OCR task ran: its plain text (reading order) and its lines.
    Read { text: String, lines: Vec<Line> },
    /// The page failed: kept in its place, without text, with the reason.
    Failed { reason: String },
}

/// One page of the document, in page order.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub index: u32,
    /// `None` for a failed page whose size could not be read.
    pub size: Option<PageSize>,
    pub text: PageText,
}

/// The document's pages for the text formats, or why there can be none: the OCR task did
/// not run. `failed` gives the reason of each page without a result; `sizes` the size of
/// pages without a result (from the upload), when known.
pub fn ocr_pages(
    result: &DocumentResult,
    failed: &BTreeMap<u32, String>,
    sizes: &BTreeMap<u32, PageSize>,
) -> Result<Vec<Page>, String> {
    if !result
        .pages
        .iter()
        .any(|p| p.tasks.iter().any(|t| t.task == Task::Ocr))
    {
        let ran: Vec<String> = result.tasks.iter().map(|t| task_name(&t.task)).collect();
        return Err(format!(
            "the OCR task did not run on this document (tasks: {})",
            if ran.is_empty() {
                "none".to_string()
            } else {
                ran.join(", ")
            }
        ));
    }
    let mut pages = Vec::with_capacity(result.page_count as usize);
    for index in 0..result.page_count {
        let Some(page) = result.pages.iter().find(|p| p.page_index == index) else {
            let reason = failed
                .get(&index)
                .cloned()
                .unwrap_or_else(|| "no result for this page".to_string());
            pages.push(Page {
                index,
                size: sizes.get(&index).copied(),
                text: PageText::Failed { reason },
            });
            continue;
        };
        let size = PageSize {
            pixels: page.frame.size_pixels,
            points: page.frame.size_points,
        };
        let text = match page.tasks.iter().find(|t| t.task == Task::Ocr) {
            Some(ocr) => {
                let lines = ocr
                    .spans
                    .iter()
                    .flat_map(|span| {
                        let text = span.text.trim();
                        span.boxes
                            .iter()
                            .filter(move |_| !text.is_empty())
                            .map(move |b| Line {
                                text: text.to_string(),
                                pixels: b.pixels,
                                points: b.points,
                                confidence: span.confidence,
                            })
                    })
                    .filter(|l| l.points[2] > l.points[0] && l.points[3] > l.points[1])
                    .take(MAX_LINES_PER_PAGE)
                    .collect();
                PageText::Read {
                    text: ocr.text.clone(),
                    lines,
                }
            }
            None => PageText::Failed {
                reason: "the OCR task did not run on this page".to_string(),
            },
        };
        pages.push(Page {
            index,
            size: Some(size),
            text,
        });
    }
    Ok(pages)
}

/// Pages that have no text in the formats (failed pages).
pub fn pages_without_text(pages: &[Page]) -> Vec<u32> {
    pages
        .iter()
        .filter(|p| matches!(p.text, PageText::Failed { .. }))
        .map(|p| p.index)
        .collect()
}

fn task_name(task: &Task) -> String {
    match task {
        Task::Caption { .. } => "caption",
        Task::Ocr => "ocr",
        Task::Grounding { .. } => "grounding",
        Task::Ask { .. } => "ask",
    }
    .to_string()
}

/// `text` without the characters XML 1.0 cannot hold (C0 controls but tab and newline,
/// U+FFFE/U+FFFF): a model's answer may contain anything.
pub fn xml_safe(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r')
                || (c >= ' '
                    && c != '\u{FFFE}'
                    && c != '\u{FFFF}'
                    && !('\u{7F}'..='\u{9F}').contains(&c))
        })
        .collect()
}
