//! The converted tokenizer against the `sentencepiece` library on the committed corpus
//! (tests/data/tokenizer/corpus.txt, >= 2,000 varied lines): ids identical on 100% of
//! lines, decoding identical to SentencePiece's and round-tripping the text.
//! Fixtures: `.venv/bin/python scripts/parity/tokenizer.py`.

use serde::Deserialize;
use sphinx_model::tokenizer::{Tokenizer, TokenizerError};

mod common;
use common::{workspace, Fixtures};

const FIXTURES: Fixtures = Fixtures::new("tokenizer", "scripts/parity/tokenizer.py");

/// The acceptance criterion's minimum corpus size.
const MIN_LINES: usize = 2000;

#[derive(Deserialize)]
struct Reference {
    bos_id: i64,
    eos_id: i64,
    vocab_size: usize,
    ids: Vec<Vec<i64>>,
    decoded: Vec<String>,
}

fn load() -> (Tokenizer, Vec<String>, Reference) {
    let tok = Tokenizer::from_file(&FIXTURES.path("tokenizer.json")).unwrap();
    let text =
        std::fs::read_to_string(workspace().join("tests/data/tokenizer/corpus.txt")).unwrap();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    assert_eq!(
        lines.pop().as_deref(),
        Some(""),
        "corpus must end with a newline"
    );
    let r: Reference = FIXTURES.json("sentencepiece.json");
    assert_eq!(
        r.ids.len(),
        lines.len(),
        "fixture is stale: rerun `{}`",
        FIXTURES.command()
    );
    (tok, lines, r)
}

#[test]
fn corpus_is_large_and_varied() {
    let (_t, lines, _r) = load();
    assert!(lines.len() >= MIN_LINES, "{} lines", lines.len());
    let count = |f: &dyn Fn(&str) -> bool| lines.iter().filter(|l| f(l)).count();
    assert!(
        count(&|l| l.starts_with("        ")) >= 50,
        "deep indentation"
    );
    assert!(
        count(&|l| l.trim().contains("   ")) >= 50,
        "inner space runs"
    );
    assert!(count(&|l| l.contains('\t')) >= 20, "tabs");
    assert!(
        count(&|l| l.chars().any(|c| c.is_ascii_digit())) >= 100,
        "digits"
    );
    assert!(
        count(&|l| l.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))) >= 50,
        "CJK"
    );
    assert!(
        count(&|l| l.chars().any(|c| ('\u{1f300}'..='\u{1faff}').contains(&c))) >= 50,
        "emoji"
    );
    assert!(
        count(&|l| l.contains("def ") || l.contains("return")) >= 50,
        "code"
    );
}

#[test]
fn ids_identical_to_sentencepiece_on_every_line() {
    let (tok, lines, r) = load();
    let mut byte_fallback_lines = 0;
    let mismatches: Vec<String> = lines
        .iter()
        .zip(&r.ids)
        .filter_map(|(line, want)| {
            let got = tok.encode(line, false, false).unwrap();
            if got.iter().any(|&i| (3..259).contains(&i)) {
                byte_fallback_lines += 1;
            }
            (&got != want).then(|| format!("{line:?}: got {got:?}, sentencepiece {want:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} lines differ, first: {:#?}",
        mismatches.len(),
        lines.len(),
        &mismatches[..mismatches.len().min(5)]
    );
    // The byte-fallback pieces <0x00>..<0xFF> are ids 3..258 in the LLaMA vocabulary.
    assert!(
        byte_fallback_lines >= 50,
        "only {byte_fallback_lines} lines used byte fallback"
    );
}

#[test]
fn decode_matches_sentencepiece_and_round_trips() {
    let (tok, lines, r) = load();
    let mut round_trips = 0;
    for ((line, ids), want) in lines.iter().zip(&r.ids).zip(&r.decoded) {
        let text = tok.decode(ids).unwrap();
        assert_eq!(&text, want, "decode of {line:?}");
        // SentencePiece itself turns a literal "▁" into a space; every other line round-trips.
        if !line.contains('\u{2581}') {
            assert_eq!(&text, line, "round trip");
            round_trips += 1;
        }
    }
    assert!(round_trips >= MIN_LINES);
}

#[test]
fn bos_eos_are_added_explicitly_and_never_matched_in_text() {
    let (tok, _lines, r) = load();
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.vocab_size()),
        (r.bos_id, r.eos_id, r.vocab_size)
    );
    let plain = tok.encode("Hello world", false, false).unwrap();
    let framed = tok.encode("Hello world", true, true).unwrap();
    assert_eq!(framed.first(), Some(&r.bos_id));
    assert_eq!(framed.last(), Some(&r.eos_id));
    assert_eq!(&framed[1..framed.len() - 1], plain.as_slice());
    assert_eq!(tok.decode(&framed).unwrap(), "Hello world");
    let literal = tok.encode("<s></s>", false, false).unwrap();
    assert!(!literal.contains(&r.bos_id) && !literal.contains(&r.eos_id));
    assert_eq!(tok.encode("", false, false).unwrap(), Vec::<i64>::new());
}

#[test]
fn bad_ids_and_files_are_typed_errors() {
    let (tok, _lines, r) = load();
    let err = tok.decode(&[5, r.vocab_size as i64]).unwrap_err();
    assert!(matches!(err, TokenizerError::BadId { .. }), "{err}");
    assert!(tok.decode(&[-1]).is_err());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{not json").unwrap();
    let err = Tokenizer::from_file(&bad).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

/// Token offsets on every corpus line (byte fallback, CJK, emoji, spaces): the ranges
/// tile the text in order, and the range of the id that completes a piece ends where
/// decoding the ids through it ends (the tokenizer's own decode, identical to
/// SentencePiece's above), so a score given to an id lands on the text that id wrote.
#[test]
fn token_offsets_tile_the_text_and_end_where_each_prefix_decodes() {
    let (tok, _lines, r) = load();
    let mut shared = 0;
    for ids in &r.ids {
        let mut with_bos = vec![r.bos_id];
        with_bos.extend(ids);
        with_bos.push(r.eos_id);
        let (text, ranges) = tok.decode_with_offsets(&with_bos).unwrap();
        assert_eq!(text, tok.decode(&with_bos).unwrap());
        assert_eq!(ranges.len(), with_bos.len());
        let mut at = 0;
        for (k, range) in ranges.iter().enumerate() {
            assert!(range.start <= range.end && range.start >= at.min(range.start));
            if range.end > at {
                assert_eq!(range.start, at, "id {k} of {with_bos:?}");
            }
            // The last id of a group of ids sharing a range completes its piece.
            if !range.is_empty() && ranges.get(k + 1) != Some(range) {
                assert_eq!(
                    &tok.decode(&with_bos[..=k]).unwrap(),
                    &text[..range.end],
                    "id {k} of {with_bos:?}"
                );
            }
            shared += usize::from(k > 0 && range == &ranges[k - 1] && !range.is_empty());
            at = at.max(range.end);
        }
        assert_eq!(at, text.len());
        // BOS and EOS write nothing.
        assert!(ranges[0].is_empty() || ranges[0] == ranges[1]);
        assert!(ranges.last().unwrap().is_empty());
    }
    // Byte fallback spells some characters over several ids, which share the range.
    assert!(shared > 0);
}
