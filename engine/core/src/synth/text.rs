//! Deterministic line texts: words from the shipped list plus numbers and punctuation,
//! in mixed case. ASCII only, and never a character of the box syntax (`< > [ ] ;`), so an
//! OCR target `<p>text</p>[...]` is unambiguous.

use super::rng::PageRng;

/// The shipped vocabulary (see the header of `words.txt`).
const WORD_LIST: &str = include_str!("words.txt");

/// Tokens tried before a line gives up on fitting one more (a long word near the end of
/// a narrow line is simply replaced by another draw).
const FIT_ATTEMPTS: usize = 6;

/// What the text lines of a page say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextKind {
    /// Words of the shipped vocabulary, numbers and punctuation (document-like).
    #[default]
    Words,
    /// Groups of 1 to [`RANDOM_GROUP_MAX`] random letters and digits separated by single
    /// spaces: no word to guess from, so a model can only answer by reading every glyph.
    RandomChars,
}

/// The characters of [`TextKind::RandomChars`] lines.
pub const RANDOM_CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Longest group of random characters.
pub const RANDOM_GROUP_MAX: u32 = 5;

/// A group of 1 to `longest` (at most [`RANDOM_GROUP_MAX`]) random letters and digits.
fn random_group(rng: &mut PageRng, longest: u32) -> String {
    let chars = RANDOM_CHARS.as_bytes();
    (0..rng.range(1, longest.clamp(1, RANDOM_GROUP_MAX)))
        .map(|_| chars[rng.below(chars.len() as u64) as usize] as char)
        .collect()
}

/// The vocabulary, parsed once per generator.
pub struct Vocabulary {
    words: Vec<&'static str>,
}

impl Vocabulary {
    /// Parses `words.txt` (one word per line, `#` comments).
    pub fn shipped() -> Self {
        let words = WORD_LIST
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        Self { words }
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the list is empty (never for the shipped list; kept for completeness).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// A plain lowercase word.
    pub fn word(&self, rng: &mut PageRng) -> &'static str {
        self.words[rng.below(self.words.len() as u64) as usize]
    }

    /// One token: a word in some case with optional punctuation, or a number.
    pub fn token(&self, rng: &mut PageRng) -> String {
        match rng.weighted(&[72, 14, 4, 3, 7]) {
            0 => {
                let w = cased(self.word(rng), rng);
                let punct = [",", ".", ":", "?", "!", ""];
                format!("{w}{}", punct[rng.weighted(&[8, 6, 2, 1, 1, 82])])
            }
            1 => number(rng),
            2 => format!("({})", self.word(rng)),
            3 => format!("{}-{}", self.word(rng), self.word(rng)),
            _ => cased(self.word(rng), rng).to_uppercase(),
        }
    }

    /// A line of tokens of `kind` whose width, by `measure`, does not exceed `max_width`
    /// and whose length does not exceed `max_chars` characters; `None` when not even one
    /// token fits. Random groups are drawn no longer than the characters left, so a line
    /// of `max_chars` 1 is one character rather than, mostly, nothing.
    pub fn line(
        &self,
        rng: &mut PageRng,
        max_width: f32,
        measure: impl Fn(&str) -> f32,
        kind: TextKind,
        max_chars: Option<u32>,
    ) -> Option<String> {
        let max_chars = max_chars.unwrap_or(u32::MAX);
        let mut line = String::new();
        let mut misses = 0;
        while misses < FIT_ATTEMPTS {
            let token = match kind {
                TextKind::Words => {
                    let token = self.token(rng);
                    if line.is_empty() && rng.chance(0.5) {
                        capitalized(&token)
                    } else {
                        token
                    }
                }
                TextKind::RandomChars => {
                    let used = line.len() as u32 + u32::from(!line.is_empty());
                    if used >= max_chars {
                        break;
                    }
                    random_group(rng, max_chars - used)
                }
            };
            let candidate = if line.is_empty() {
                token
            } else {
                format!("{line} {token}")
            };
            if candidate.chars().count() <= max_chars as usize && measure(&candidate) <= max_width {
                line = candidate;
            } else {
                misses += 1;
            }
        }
        (!line.is_empty()).then_some(line)
    }
}

/// Lowercase most of the time, sometimes Capitalized or UPPER.
fn cased(word: &str, rng: &mut PageRng) -> String {
    match rng.weighted(&[75, 18, 7]) {
        0 => word.to_string(),
        1 => capitalized(word),
        _ => word.to_uppercase(),
    }
}

fn capitalized(token: &str) -> String {
    let mut chars = token.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Integers, decimals, money, percentages, dates and item numbers.
fn number(rng: &mut PageRng) -> String {
    match rng.weighted(&[30, 15, 12, 10, 10, 8, 15]) {
        0 => rng.range(0, 999).to_string(),
        1 => format!("{}.{}", rng.range(0, 99), rng.range(0, 9)),
        2 => format!("${}.{:02}", rng.range(1, 499), rng.range(0, 99)),
        3 => format!("{}%", rng.range(1, 100)),
        4 => format!(
            "{}-{:02}-{:02}",
            rng.range(1990, 2030),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
        5 => format!("#{}", rng.range(1, 99)),
        _ => format!("{},{:03}", rng.range(1, 99), rng.range(0, 999)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_small_ascii_and_free_of_box_syntax() {
        let v = Vocabulary::shipped();
        assert!(v.len() >= 150 && v.len() <= 400, "{} words", v.len());
        let mut rng = PageRng::for_page(3, 9);
        for _ in 0..2000 {
            let t = v.token(&mut rng);
            assert!(!t.is_empty());
            assert!(t.chars().all(|c| c.is_ascii_graphic()), "{t:?}");
            assert!(!t.contains(['<', '>', '[', ']', ';']), "{t:?}");
        }
    }

    #[test]
    fn lines_respect_the_width() {
        let v = Vocabulary::shipped();
        let mut rng = PageRng::for_page(4, 0);
        let measure = |s: &str| s.len() as f32;
        for width in [8.0, 20.0, 60.0] {
            let line = v
                .line(&mut rng, width, measure, TextKind::Words, None)
                .expect("a token fits");
            assert!(line.len() as f32 <= width, "{line:?}");
            assert!(!line.starts_with(' ') && !line.ends_with(' '));
        }
        assert!(v
            .line(&mut rng, 0.5, measure, TextKind::Words, None)
            .is_none());
    }

    #[test]
    fn random_char_lines_are_groups_of_letters_and_digits() {
        let v = Vocabulary::shipped();
        let mut rng = PageRng::for_page(5, 1);
        let measure = |s: &str| s.len() as f32;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..300 {
            let line = v
                .line(&mut rng, 30.0, measure, TextKind::RandomChars, None)
                .expect("a group fits");
            assert!(line.len() <= 30, "{line:?}");
            for group in line.split(' ') {
                assert!(
                    (1..=RANDOM_GROUP_MAX as usize).contains(&group.len()),
                    "{line:?}"
                );
                assert!(group.chars().all(|c| RANDOM_CHARS.contains(c)), "{line:?}");
            }
            seen.extend(line.chars().filter(|&c| c != ' '));
        }
        // Every character turns up: the lines are not words of a vocabulary.
        assert_eq!(seen.len(), RANDOM_CHARS.len());
        // A cap of N characters: never longer, and a cap of 1 always gives one glyph.
        for cap in [1, 3, 7] {
            for _ in 0..200 {
                let line = v
                    .line(&mut rng, 30.0, measure, TextKind::RandomChars, Some(cap))
                    .expect("a group fits");
                assert!(line.len() <= cap as usize, "{line:?}");
                if cap == 1 {
                    assert_eq!(line.len(), 1, "{line:?}");
                }
            }
        }
    }
}
