//! Templated captions: what the page looks like in one or two sentences, built only from
//! facts the generator knows (page kind, face, line count, shapes, the first line).

use super::fonts::Face;
use super::layout::PageKind;
use super::rng::PageRng;

/// Facts a caption may mention.
pub struct CaptionFacts<'a> {
    pub kind: PageKind,
    pub face: Face,
    pub line_count: usize,
    pub shape_labels: Vec<&'a str>,
    pub first_line: Option<&'a str>,
}

/// One caption, its template drawn from `rng`.
pub fn caption(facts: &CaptionFacts<'_>, rng: &mut PageRng) -> String {
    let lines = match facts.line_count {
        0 => "no text".to_string(),
        1 => format!("one line of {} text", facts.face.description()),
        n => format!("{n} lines of {} text", facts.face.description()),
    };
    let shapes = list(&facts.shape_labels);
    let mut out = match rng.below(3) {
        0 => format!("A {} page with {lines}", facts.kind.description()),
        1 => format!("This {} document shows {lines}", facts.kind.description()),
        _ => format!(
            "{} printed on a {} page",
            capitalize_first(&lines),
            facts.kind.description()
        ),
    };
    if let Some(shapes) = shapes {
        out.push_str(&format!(" and {shapes}"));
    }
    out.push('.');
    if let Some(first) = facts.first_line {
        out.push_str(&format!(" The first line reads \"{first}\"."));
    }
    out
}

/// "a red circle", "a red circle and a blue square", "a, b and c"; `None` when empty.
fn list(labels: &[&str]) -> Option<String> {
    let items: Vec<String> = labels
        .iter()
        .map(|l| format!("{} {l}", article(l)))
        .collect();
    match items.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [init @ .., last] => Some(format!("{} and {last}", init.join(", "))),
    }
}

/// "an" before a vowel sound ("an orange circle"), else "a".
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn capitalize_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list(&[]), None);
        assert_eq!(list(&["red circle"]).as_deref(), Some("a red circle"));
        assert_eq!(
            list(&["orange square", "blue diamond", "red circle"]).as_deref(),
            Some("an orange square, a blue diamond and a red circle")
        );
    }

    #[test]
    fn captions_mention_every_fact() {
        let facts = CaptionFacts {
            kind: PageKind::WideStrip,
            face: Face::Serif,
            line_count: 3,
            shape_labels: vec!["green triangle"],
            first_line: Some("Ten boats"),
        };
        for index in 0..6 {
            let c = caption(&facts, &mut PageRng::for_page(0, index));
            for needle in [
                "wide strip",
                "3 lines of serif text",
                "a green triangle",
                "\"Ten boats\"",
            ] {
                assert!(c.contains(needle), "{c:?} lacks {needle:?}");
            }
        }
    }
}
