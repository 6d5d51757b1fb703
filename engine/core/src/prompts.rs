//! Task prompts: the one place that says which question the model is asked for each task.
//!
//! The wording is SPHINX's own, from the task list of LLaMA2-Accessory's box demo
//! (`accessory/demos/multi_turn_mm_box.py`, the Gradio header that documents the prompts
//! the released SPHINX models were trained on). Changing any string here changes what the
//! model sees, so it must bump [`PROMPT_VERSION`]; every result records the version it was
//! produced with, which lets results made with different wordings be told apart.
//!
//! This module builds only the *question*; wrapping it in the conversation template
//! (system line, roles, `###` separators) is `sphinx_model::conversation`'s job.

use crate::job::{CaptionDetail, Task};

/// Version of the prompt wording below; recorded in every result. Bump on any change.
pub const PROMPT_VERSION: &str = "1";

/// Detailed caption ("Detailed Caption" in the reference demo).
pub const CAPTION_DETAILED: &str = "Generate a detailed description about the image.";
/// One-sentence caption ("Short Caption" in the reference demo).
pub const CAPTION_SHORT: &str = "Provide a one-sentence caption for the provided image.";
/// Text detection with boxes ("Text Detection" in the reference demo).
pub const OCR: &str = "Please detect all texts and provide their bounding box coordinate.";
/// Referring-expression grounding ("REC" in the reference demo); the query follows it.
pub const GROUNDING_PREFIX: &str =
    "Please provide the bounding box coordinate of the region this sentence describes: ";

/// Longest grounding query or free question accepted, in bytes. The released models have
/// `max_seq_len` 4096 tokens of which a page's visual tokens take up to 1,290 (5 views x
/// 258); 4 KiB of text is at most ~4k tokens, so longer input could never fit anyway.
pub const MAX_USER_TEXT_BYTES: usize = 4096;

/// Why a task's user text cannot become a prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("{field} is empty (after trimming whitespace)")]
    Empty { field: &'static str },
    #[error("{field} is {bytes} bytes, over the limit of {MAX_USER_TEXT_BYTES} bytes")]
    TooLong { field: &'static str, bytes: usize },
    #[error("{field} contains the conversation separator \"###\", which would end the turn early")]
    Separator { field: &'static str },
}

/// The conversation separator of the reference template (`Conversation.sep`); user text
/// containing it would be read by the model as the end of the human turn.
const SEPARATOR: &str = "###";

/// Checks user-supplied text (a grounding query or a free question) and returns it trimmed.
pub fn check_user_text<'a>(field: &'static str, text: &'a str) -> Result<&'a str, PromptError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(PromptError::Empty { field });
    }
    if t.len() > MAX_USER_TEXT_BYTES {
        return Err(PromptError::TooLong {
            field,
            bytes: t.len(),
        });
    }
    if t.contains(SEPARATOR) {
        return Err(PromptError::Separator { field });
    }
    Ok(t)
}

/// The caption question.
pub fn caption(detail: CaptionDetail) -> String {
    match detail {
        CaptionDetail::Detailed => CAPTION_DETAILED,
        CaptionDetail::Short => CAPTION_SHORT,
    }
    .to_owned()
}

/// The OCR (text detection with boxes) question.
pub fn ocr() -> String {
    OCR.to_owned()
}

/// The grounding question for `query` (trimmed).
pub fn grounding(query: &str) -> Result<String, PromptError> {
    Ok(format!(
        "{GROUNDING_PREFIX}{}",
        check_user_text("query", query)?
    ))
}

/// The question for any task.
pub fn question(task: &Task) -> Result<String, PromptError> {
    match task {
        Task::Caption { detail } => Ok(caption(*detail)),
        Task::Ocr => Ok(ocr()),
        Task::Grounding { query } => grounding(query),
        Task::Ask { question } => ask(question),
    }
}

/// A free question, asked as is (trimmed).
pub fn ask(question: &str) -> Result<String, PromptError> {
    Ok(check_user_text("question", question)?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounding_appends_trimmed_query() {
        assert_eq!(
            grounding("  blue backpack \n").unwrap(),
            "Please provide the bounding box coordinate of the region this sentence describes: blue backpack"
        );
    }

    #[test]
    fn bad_user_text_is_refused_with_the_field_name() {
        assert_eq!(
            grounding(" \t").unwrap_err(),
            PromptError::Empty { field: "query" }
        );
        assert_eq!(
            ask("a ### b").unwrap_err(),
            PromptError::Separator { field: "question" }
        );
        let long = "x".repeat(MAX_USER_TEXT_BYTES + 1);
        let err = ask(&long).unwrap_err();
        assert_eq!(
            err,
            PromptError::TooLong {
                field: "question",
                bytes: MAX_USER_TEXT_BYTES + 1
            }
        );
        assert!(err.to_string().contains("question"));
    }

    #[test]
    fn every_task_has_its_question() {
        let q = |t: Task| question(&t).unwrap();
        assert_eq!(q(Task::Ocr), OCR);
        assert_eq!(
            q(Task::Caption {
                detail: CaptionDetail::Short
            }),
            CAPTION_SHORT
        );
        assert_eq!(
            q(Task::Caption {
                detail: CaptionDetail::Detailed
            }),
            CAPTION_DETAILED
        );
        assert_eq!(
            q(Task::Ask {
                question: " Why? ".into()
            }),
            "Why?"
        );
        assert!(question(&Task::Grounding {
            query: String::new()
        })
        .is_err());
    }
}
