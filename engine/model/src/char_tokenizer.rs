//! A character-level tokenizer for small models trained from scratch (tests, nano).
//!
//! Why: the LLaMA vocabulary (32,000 pieces) would make a nano model's embedding and
//! output layers larger than the rest of it, and slow CPU tests down. This tokenizer has
//! the LLaMA control pieces (`<unk>`, `<s>`, `</s>`), the 256 byte-fallback pieces
//! `<0x00>`..`<0xFF>` and one piece per printable ASCII character plus `\n`, so every
//! string encodes (non-ASCII through its UTF-8 bytes) and encoding is concatenative:
//! `encode(a + b) == encode(a) + encode(b)`, which makes the reference's "find each answer
//! inside the tokenized conversation" exact. It is written as an ordinary `tokenizer.json`
//! (a BPE model with no merges), so [`crate::tokenizer::Tokenizer`] loads it unchanged and
//! it ships inside every exported model folder.
//!
//! [`prompt_tokenizer_json`] adds one piece per fixed phrase of the conversation template
//! and of the task questions (the system line, the role markers, the separators, the OCR
//! question...). Why: character by character the OCR prompt is ~265 tokens, and an
//! answer then reads its image block from 300-470 positions back; a small LLaMA learns
//! such a fixed-offset look-up far more slowly the more positions lie in between
//! (docs/nano.md, third attempt). SentencePiece makes the same prompt ~60 pieces; with
//! the phrases it is 6.

use serde_json::{json, Map, Value};

/// Control pieces first, with the ids SentencePiece gives them in LLaMA tokenizers.
const CONTROL: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// Pieces in id order.
fn pieces() -> Vec<String> {
    let mut v: Vec<String> = CONTROL.iter().map(|s| s.to_string()).collect();
    v.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    v.push("\n".into());
    v.extend((0x20u8..=0x7e).map(|b| (b as char).to_string()));
    v
}

/// Number of pieces (355); a model's `vocab_size` must be at least this.
pub fn vocab_size() -> usize {
    pieces().len()
}

/// The fixed phrases [`prompt_tokenizer_json`] gives a piece each: what the default
/// conversation template writes around every turn, and the task questions.
pub fn prompt_phrases() -> Vec<String> {
    let t = crate::conversation::Template::default_conversation();
    let mut v = vec![
        t.system.clone(),
        format!("\n\n{}", t.sep),
        format!(" {}: ", t.roles.0),
        format!("\n{}", t.sep),
        format!(" {}:", t.roles.1),
    ];
    v.extend(
        [
            sphinx_core::prompts::OCR,
            sphinx_core::prompts::CAPTION_DETAILED,
            sphinx_core::prompts::CAPTION_SHORT,
            sphinx_core::prompts::GROUNDING_PREFIX,
        ]
        .map(String::from),
    );
    v
}

/// Number of pieces of [`prompt_tokenizer_json`].
pub fn prompt_vocab_size() -> usize {
    vocab_size() + prompt_phrases().len()
}

/// The `tokenizer.json` text.
pub fn tokenizer_json() -> String {
    json_with(&[])
}

/// The character tokenizer plus one piece per [`prompt_phrases`] phrase (ids from
/// [`vocab_size`] on). The phrases are added tokens: matched whole (longest first) before
/// the characters, so a string that contains none encodes as with [`tokenizer_json`].
pub fn prompt_tokenizer_json() -> String {
    json_with(&prompt_phrases())
}

fn json_with(phrases: &[String]) -> String {
    let mut vocab = Map::new();
    let base = pieces();
    let n = base.len();
    for (i, p) in base.into_iter().enumerate() {
        vocab.insert(p, json!(i));
    }
    for (i, p) in phrases.iter().enumerate() {
        vocab.insert(p.clone(), json!(n + i));
    }
    let mut added: Vec<Value> = CONTROL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": i, "content": c, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    added.extend(phrases.iter().enumerate().map(|(i, p)| {
        json!({"id": n + i, "content": p, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": false})
    }));
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    });
    serde_json::to_string(&doc).expect("tokenizer JSON serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Tokenizer;

    #[test]
    fn round_trips_and_is_concatenative() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tokenizer_json()).unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        assert_eq!((tok.bos_id(), tok.eos_id()), (1, 2));
        assert_eq!(tok.vocab_size(), vocab_size());
        let (a, b) = ("<p>Ten boats 42</p>[0.04,0.05]\n###", " Human: é!");
        let whole = tok.encode(&format!("{a}{b}"), false, false).unwrap();
        let mut parts = tok.encode(a, false, false).unwrap();
        parts.extend(tok.encode(b, false, false).unwrap());
        assert_eq!(whole, parts);
        assert_eq!(whole.len(), a.len() + b.len());
        assert_eq!(tok.decode(&whole).unwrap(), format!("{a}{b}"));
    }

    /// The OCR prompt shrinks to a handful of pieces, answers still encode character by
    /// character with the separator as one piece, and everything decodes back.
    #[test]
    fn prompt_phrases_are_one_piece_each() {
        use crate::conversation::{Template, Turn};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, prompt_tokenizer_json()).unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        assert_eq!(tok.vocab_size(), prompt_vocab_size());
        let t = Template::default_conversation();
        let prompt = t.prompt(&[Turn::ask(sphinx_core::prompts::OCR)]).unwrap();
        let ids = tok.encode(&prompt, false, false).unwrap();
        assert_eq!(ids.len(), 6, "{prompt:?} -> {ids:?}");
        assert!(ids.iter().all(|&i| i as usize >= vocab_size()));
        assert_eq!(tok.decode(&ids).unwrap(), prompt);
        let answer = "<p>Ten boats 42</p>[0.04,0.05,0.50,0.30]";
        let ids = tok.encode(&format!("{answer}\n###"), false, false).unwrap();
        assert_eq!(ids.len(), answer.len() + 1);
        assert_eq!(ids[answer.len()] as usize, vocab_size() + 3);
        assert_eq!(tok.decode(&ids).unwrap(), format!("{answer}\n###"));
        let grounding = format!("{}the title", sphinx_core::prompts::GROUNDING_PREFIX);
        let ids = tok.encode(&grounding, false, false).unwrap();
        assert_eq!(ids.len(), 1 + "the title".len());
    }
}
