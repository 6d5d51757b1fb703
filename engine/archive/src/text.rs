//! `results/<doc_id>.txt`: each page's text in reading order, pages separated by form
//! feeds (U+000C), so a page's number is its position; a failed page is an empty page.

use crate::pages::{Page, PageText};

/// The plain text file.
pub fn plain_text(pages: &[Page]) -> Vec<u8> {
    let texts: Vec<String> = pages
        .iter()
        .map(|p| match &p.text {
            PageText::Read { text, .. } => {
                let mut t = text.replace('\u{c}', " ").trim_end().to_string();
                t.push('\n');
                t
            }
            PageText::Failed { .. } => String::new(),
        })
        .collect();
    texts.join("\u{c}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_separated_by_form_feeds_and_failed_pages_keep_their_place() {
        let read = |t: &str| Page {
            index: 0,
            size: None,
            text: PageText::Read {
                text: t.into(),
                lines: vec![],
            },
        };
        let failed = Page {
            index: 1,
            size: None,
            text: PageText::Failed { reason: "x".into() },
        };
        let out = plain_text(&[read("one\ntwo  "), failed, read("three\u{c}")]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "one\ntwo\n\u{c}\u{c}three\n"
        );
    }
}
