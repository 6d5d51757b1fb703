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

/// The `tokenizer.json` text.
pub fn tokenizer_json() -> String {
    let mut vocab = Map::new();
    for (i, p) in pieces().into_iter().enumerate() {
        vocab.insert(p, json!(i));
    }
    let added: Vec<Value> = CONTROL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": i, "content": c, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
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
}
