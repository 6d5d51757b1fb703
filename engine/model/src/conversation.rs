//! The conversation template SPHINX was trained with, and its stop rule.
//!
//! A re-implementation of LLaMA2-Accessory's `Conversation` (`accessory/data/conversation/
//! lib.py`): `default_conversation` (= `conv_v1_2`) joins a system line, `"\n\n###"`, then
//! one `" Human: <question>\n###"` / `" Assistant: <answer>\n###"` pair per turn and ends
//! with `" Assistant:"` when the last answer is still to be generated. The reference
//! encodes that string with BOS and no EOS (`MetaModel.generate`: `encode(x, bos=True,
//! eos=False)`); BOS is the tokenizer's job, not this module's. Generation stops at EOS or
//! when the answer contains [`Template::response_end_signal`] (`"\n###"`), and the answer
//! is the text before it, right-trimmed (`multi_turn_mm_box.py`, `eval_mm`).
//!
//! [`Template::process`] also returns the reference's `to_predict` list (each answer plus
//! its separator) that one-stage training supervises. The byte-for-byte agreement with the
//! reference is checked by `tests/conversation_fixture.rs` against
//! `scripts/make_conversation_fixtures.py`.

use crate::tokenizer::{Tokenizer, TokenizerError};

/// How turns are separated (the reference's `SeparatorStyle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeparatorStyle {
    /// `sep` after every message, with a newline before it (`"\n###"`).
    Single,
    /// `sep` after questions and `sep2` after answers (Vicuna / LLaVA style).
    Two,
}

/// A conversation template (the reference's `Conversation` without its messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub system: String,
    /// `(human, assistant)` role names.
    pub roles: (String, String),
    pub style: SeparatorStyle,
    pub sep: String,
    /// Second separator, used only by [`SeparatorStyle::Two`].
    pub sep2: String,
}

/// One exchange: a question and its answer, `None` for the answer to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub question: String,
    pub answer: Option<String>,
}

impl Turn {
    /// A question whose answer the model is to generate.
    pub fn ask(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            answer: None,
        }
    }

    /// A finished exchange (earlier turns of a multi-turn conversation, or training data).
    pub fn answered(question: impl Into<String>, answer: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            answer: Some(answer.into()),
        }
    }
}

/// A conversation rendered by a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed {
    /// The whole conversation text (the prompt when the last answer is missing).
    pub conv: String,
    /// Each given answer followed by its separator: what training supervises.
    pub to_predict: Vec<String>,
}

/// Why turns cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("conversation has no turns")]
    Empty,
    #[error("turn {index} of {count} has no answer; only the last answer may be missing")]
    MissingAnswer { index: usize, count: usize },
    #[error("unknown conversation template {name:?}; known: {known}")]
    UnknownTemplate { name: String, known: String },
}

/// System line of the reference's `conv_v1_2` / `simple_conv`.
const HUMAN_SYSTEM: &str =
    "A chat between a curious human and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the human's questions.";
/// System line of the reference's `conv_vicuna_v1_1`.
const USER_SYSTEM: &str =
    "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions.";
/// System line of the reference's `simple_conv_multimodal` and `conv_llava_v1` (the
/// missing spaces between sentences are the reference's).
const LLAVA_SYSTEM: &str = "You are LLaVA, a large language and vision assistant trained by UW Madison WAIV Lab.\
You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.\
Follow the instructions carefully and explain your answers in detail.";

/// Characters the reference (`accessory/model/tokenizer.py`, `encode_wo_prefix_space`)
/// puts before a stop string to learn how it tokenizes after other text.
const STOP_PROBE_PREFIXES: [&str; 6] = ["@", "\n", "\\", "=", ">", "`"];

/// Names accepted by [`Template::named`], as in the reference's `conv_templates`.
pub const TEMPLATE_NAMES: [&str; 7] = [
    "default",
    "simple",
    "multimodal",
    "llava_v1",
    "v1",
    "bair_v1",
    "vicuna_v1_1",
];

impl Template {
    fn new(
        system: &str,
        roles: (&str, &str),
        style: SeparatorStyle,
        sep: &str,
        sep2: &str,
    ) -> Self {
        Self {
            system: system.to_owned(),
            roles: (roles.0.to_owned(), roles.1.to_owned()),
            style,
            sep: sep.to_owned(),
            sep2: sep2.to_owned(),
        }
    }

    /// The template SPHINX uses: the reference's `default_conversation` (`conv_v1_2`).
    pub fn default_conversation() -> Self {
        Self::new(
            HUMAN_SYSTEM,
            ("Human", "Assistant"),
            SeparatorStyle::Single,
            "###",
            "",
        )
    }

    /// A template by its name in the reference's `conv_templates`.
    pub fn named(name: &str) -> Result<Self, ConversationError> {
        let two = SeparatorStyle::Two;
        Ok(match name {
            "default" | "v1" | "simple" => Self::default_conversation(),
            "multimodal" => Self::new(
                LLAVA_SYSTEM,
                ("Human", "Assistant"),
                SeparatorStyle::Single,
                "###",
                "",
            ),
            "llava_v1" => Self::new(LLAVA_SYSTEM, ("USER", "ASSISTANT"), two, " ", "</s>"),
            "bair_v1" => Self::new(
                "BEGINNING OF CONVERSATION:",
                ("USER", "GPT"),
                two,
                " ",
                "</s>",
            ),
            "vicuna_v1_1" => Self::new(USER_SYSTEM, ("USER", "ASSISTANT"), two, " ", "</s>"),
            _ => {
                return Err(ConversationError::UnknownTemplate {
                    name: name.to_owned(),
                    known: TEMPLATE_NAMES.join(", "),
                })
            }
        })
    }

    /// Renders the turns exactly like the reference's `load_qas` + `process`.
    pub fn process(&self, turns: &[Turn]) -> Result<Processed, ConversationError> {
        if turns.is_empty() {
            return Err(ConversationError::Empty);
        }
        let mut conv = String::new();
        let mut to_predict = Vec::new();
        let last = turns.len() - 1;
        for (index, turn) in turns.iter().enumerate() {
            // The Two style treats an empty answer as missing (`if message:`).
            let answer = match (&turn.answer, self.style) {
                (Some(a), SeparatorStyle::Two) if a.is_empty() => None,
                (a, _) => a.as_deref(),
            };
            if answer.is_none() && index != last {
                return Err(ConversationError::MissingAnswer {
                    index,
                    count: turns.len(),
                });
            }
            let messages = [
                (&self.roles.0, Some(turn.question.as_str()), 2 * index),
                (&self.roles.1, answer, 2 * index + 1),
            ];
            match self.style {
                SeparatorStyle::Single => {
                    if index == 0 {
                        conv = format!("{}\n\n{}", self.system, self.sep);
                    }
                    for (role, message, _) in messages {
                        match message {
                            Some(m) => {
                                conv.push_str(&format!(" {role}: {m}\n{}", self.sep));
                                if role == &self.roles.1 {
                                    to_predict.push(format!("{m}\n{}", self.sep));
                                }
                            }
                            None => conv.push_str(&format!(" {role}:")),
                        }
                    }
                }
                SeparatorStyle::Two => {
                    if index == 0 {
                        conv = format!("{}{}", self.system, self.sep);
                    }
                    for (role, message, i) in messages {
                        let sep = if i % 2 == 0 { &self.sep } else { &self.sep2 };
                        match message.filter(|m| !m.is_empty()) {
                            Some(m) => {
                                conv.push_str(&format!(" {role}: {m}{sep}"));
                                if role == &self.roles.1 {
                                    to_predict.push(format!("{m}{sep}"));
                                }
                            }
                            None => conv.push_str(&format!(" {role}:")),
                        }
                    }
                }
            }
        }
        Ok(Processed { conv, to_predict })
    }

    /// The prompt text for `turns` (the reference's `get_prompt`).
    pub fn prompt(&self, turns: &[Turn]) -> Result<String, ConversationError> {
        Ok(self.process(turns)?.conv)
    }

    /// The string that ends an answer (the reference's `response_end_signal`).
    pub fn response_end_signal(&self) -> String {
        match self.style {
            SeparatorStyle::Single => format!("\n{}", self.sep),
            SeparatorStyle::Two => self.sep2.clone(),
        }
    }

    /// Token sequences that end an answer, as the reference's `MetaModel.generate` builds
    /// them: EOS, the end signal encoded as a segment, and the end signal as it tokenizes
    /// after other text (the reference's `encode_wo_prefix_space`: encode `prefix + signal`
    /// and drop the prefix's tokens, for the first prefix that stays a separate token).
    pub fn stop_sequences(&self, tok: &Tokenizer) -> Result<Vec<Vec<i64>>, TokenizerError> {
        let signal = self.response_end_signal();
        let mut stops = vec![vec![tok.eos_id()]];
        let segment = tok.encode(signal.trim_start_matches(' '), false, false)?;
        stops.push(segment);
        for prefix in STOP_PROBE_PREFIXES {
            let alone = tok.encode(prefix, false, false)?;
            let joined = tok.encode(&format!("{prefix}{signal}"), false, false)?;
            if joined.starts_with(&alone) && joined.len() > alone.len() {
                stops.push(joined[alone.len()..].to_vec());
                break;
            }
        }
        stops.retain(|s| !s.is_empty());
        stops.dedup();
        Ok(stops)
    }

    /// The answer in generated text: everything before the end signal, right-trimmed (as
    /// the reference demos and evaluation do), and whether the signal was found.
    pub fn cut_answer<'a>(&self, generated: &'a str) -> (&'a str, bool) {
        let signal = self.response_end_signal();
        match generated.find(&signal) {
            Some(end) => (generated[..end].trim_end(), true),
            None => (generated, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_answer_only_last() {
        let t = Template::default_conversation();
        let err = t.process(&[Turn::ask("a"), Turn::ask("b")]).unwrap_err();
        assert_eq!(err, ConversationError::MissingAnswer { index: 0, count: 2 });
        assert_eq!(t.process(&[]).unwrap_err(), ConversationError::Empty);
        assert!(matches!(
            Template::named("chatml"),
            Err(ConversationError::UnknownTemplate { .. })
        ));
    }

    #[test]
    fn cut_answer_stops_at_signal() {
        let t = Template::default_conversation();
        assert_eq!(t.cut_answer("Yes. \n### Human: more"), ("Yes.", true));
        assert_eq!(t.cut_answer("no end ###"), ("no end ###", false));
    }
}
