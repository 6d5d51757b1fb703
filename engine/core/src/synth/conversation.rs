//! Training records in LLaMA2-Accessory's unified conversation format, and the one
//! function that writes SPHINX box text.
//!
//! A record is `{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}...]}`
//! as read by `accessory/data/conversation/dataset.py` (`FinetuneDialogDataset`: roles
//! "human" and "gpt", the image path joined to the config's `root`, and `<image>` removed
//! from every value). Turns alternate human/gpt and start with the human.

use serde::{Deserialize, Serialize};

use super::{PageAnnotation, PixelBox};

/// Marks where the image goes in the first human turn (LLaVA's convention, which the
/// reference's dataset strips).
pub const IMAGE_TOKEN: &str = "<image>";
/// The task prompts, from the project's one list ([`crate::prompts`], the reference's
/// wording): text detection, referring expression (the phrase follows), detailed caption.
pub use crate::prompts::{CAPTION_DETAILED as CAPTION_PROMPT, GROUNDING_PREFIX, OCR as OCR_PROMPT};
/// Speaker names of the unified format.
pub const HUMAN: &str = "human";
pub const GPT: &str = "gpt";

/// One turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub from: String,
    pub value: String,
}

/// One training record: an image and its alternating turns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub id: String,
    pub image: String,
    pub conversations: Vec<Turn>,
}

/// `<p>phrase</p>[x1,y1,x2,y2;...]` for boxes in page pixels of a `width x height` page.
///
/// Coordinates are normalised to the padded square canvas SPHINX-X sees: the page sits
/// at the top-left of a square of side `max(width, height)`, so a pixel coordinate `v`
/// becomes `v / max(width, height)` for x and y alike. Each is written with two decimals
/// (Python's `'%.2f'`: round half to even on the exact binary value, which Rust's `{:.2}`
/// also does), comma-separated without spaces; several boxes of one phrase are joined
/// by `;`. The reference's demo parser (`extract_and_color` in `multi_turn_mm_box.py`)
/// reads exactly this: `<p>(.*?)</p>\s*(\[[\d.,;\s]*\])` and numbers matching `\d+\.\d+`.
pub fn box_text(phrase: &str, boxes: &[PixelBox], width: u32, height: u32) -> String {
    let side = f64::from(width.max(height).max(1));
    let coords: Vec<String> = boxes
        .iter()
        .map(|b| {
            [b.x1, b.y1, b.x2, b.y2]
                .map(|v| format!("{:.2}", f64::from(v) / side))
                .join(",")
        })
        .collect();
    format!("<p>{phrase}</p>[{}]", coords.join(";"))
}

/// The page's record: text detection (every line, top to bottom, one per answer line),
/// one referring-expression turn per shape (or for the middle text line of a page
/// without shapes), then the detailed caption.
pub fn record(id: String, page: &PageAnnotation) -> ConversationRecord {
    let (w, h) = (page.width, page.height);
    let mut turns = Vec::new();
    let mut ask = |question: String, answer: String| {
        let question = if turns.is_empty() {
            format!("{IMAGE_TOKEN}\n{question}")
        } else {
            question
        };
        turns.push(Turn {
            from: HUMAN.into(),
            value: question,
        });
        turns.push(Turn {
            from: GPT.into(),
            value: answer,
        });
    };
    let ocr: Vec<String> = page
        .lines
        .iter()
        .map(|l| box_text(&l.text, &[l.bbox], w, h))
        .collect();
    ask(OCR_PROMPT.to_string(), ocr.join("\n"));
    let targets: Vec<(&str, PixelBox)> = if page.shapes.is_empty() {
        page.lines
            .get(page.lines.len() / 2)
            .map(|l| (l.text.as_str(), l.bbox))
            .into_iter()
            .collect()
    } else {
        page.shapes
            .iter()
            .map(|s| (s.label.as_str(), s.bbox))
            .collect()
    };
    for (phrase, bbox) in targets {
        ask(
            format!("{GROUNDING_PREFIX}{phrase}"),
            box_text(phrase, &[bbox], w, h),
        );
    }
    ask(CAPTION_PROMPT.to_string(), page.caption.clone());
    ConversationRecord {
        id,
        image: page.image.clone(),
        conversations: turns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_normalised_to_the_longer_side() {
        // A landscape page 800 x 400: the square is 800, y is divided by 800 too.
        let b = PixelBox::new(100, 200, 500, 300);
        assert_eq!(
            box_text("red circle", &[b], 800, 400),
            "<p>red circle</p>[0.12,0.25,0.62,0.38]"
        );
        let c = PixelBox::new(0, 0, 400, 800);
        assert_eq!(
            box_text("x", &[b, c], 400, 800),
            "<p>x</p>[0.12,0.25,0.62,0.38;0.00,0.00,0.50,1.00]"
        );
    }
}
