//! Text <-> token ids for LLaMA-family models, on the `tokenizers` crate.
//!
//! The reference tokenizes with SentencePiece; `scripts/convert_tokenizer.py` turns its
//! `tokenizer.model` into a `tokenizer.json` whose ids are identical (proved by the
//! corpus test in `tests/tokenizer_parity.rs`). BOS/EOS are added here, explicitly,
//! as the reference's `Tokenizer.encode(s, bos, eos)` does, and they are never matched
//! inside text (SentencePiece does not match control pieces there either).

use std::path::{Path, PathBuf};

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("tokenizer {path} has no {piece:?} piece (needed as {role})")]
    MissingPiece {
        path: PathBuf,
        piece: &'static str,
        role: &'static str,
    },
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    BadId { id: i64, vocab_size: usize },
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// Byte ranges from where the text ends after each id (`None`: the id completed
/// nothing): an id that completes a piece gets the bytes since the last end, shared with
/// the ids before it that completed nothing; ids after the last end get an empty range.
fn ranges_from_ends(ends: &[Option<usize>]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::with_capacity(ends.len());
    let (mut start, mut pending) = (0, 0);
    for end in ends {
        pending += 1;
        if let Some(end) = *end {
            ranges.extend(std::iter::repeat_n(start..end, pending));
            (start, pending) = (end, 0);
        }
    }
    ranges.extend(std::iter::repeat_n(start..start, pending));
    ranges
}

/// SentencePiece's control pieces for begin/end of sequence in LLaMA tokenizers.
const BOS_PIECE: &str = "<s>";
const EOS_PIECE: &str = "</s>";

/// A LLaMA tokenizer loaded from a converted `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: i64,
    eos_id: i64,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` (made by `scripts/convert_tokenizer.py`).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_inner(inner, path)
    }

    /// Loads the JSON of a `tokenizer.json` held in memory; `name` stands for its path in
    /// errors.
    pub fn from_bytes(json: &[u8], name: &Path) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| TokenizerError::Load {
            path: name.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_inner(inner, name)
    }

    fn from_inner(inner: tokenizers::Tokenizer, path: &Path) -> Result<Self, TokenizerError> {
        let id = |piece: &'static str, role: &'static str| {
            inner
                .token_to_id(piece)
                .map(i64::from)
                .ok_or_else(|| TokenizerError::MissingPiece {
                    path: path.to_path_buf(),
                    piece,
                    role,
                })
        };
        let bos_id = id(BOS_PIECE, "begin of sequence")?;
        let eos_id = id(EOS_PIECE, "end of sequence")?;
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self {
            inner,
            bos_id,
            eos_id,
            vocab_size,
        })
    }

    pub fn bos_id(&self) -> i64 {
        self.bos_id
    }

    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Token ids of `text`, with BOS/EOS around them when asked.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Result<Vec<i64>, TokenizerError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 2);
        if bos {
            ids.push(self.bos_id);
        }
        ids.extend(enc.get_ids().iter().map(|&i| i64::from(i)));
        if eos {
            ids.push(self.eos_id);
        }
        Ok(ids)
    }

    /// Text of `ids`; BOS/EOS are dropped (as SentencePiece drops control pieces).
    pub fn decode(&self, ids: &[i64]) -> Result<String, TokenizerError> {
        let mut kept = Vec::with_capacity(ids.len());
        for &id in ids {
            if id < 0 || id as usize >= self.vocab_size {
                return Err(TokenizerError::BadId {
                    id,
                    vocab_size: self.vocab_size,
                });
            }
            if id != self.bos_id && id != self.eos_id {
                kept.push(id as u32);
            }
        }
        self.inner
            .decode(&kept, false)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Text of `ids` and, for each id, the bytes of that text it produced (`start..end`,
    /// in order, tiling the text): what decoding through it adds to decoding the ids
    /// before it. Ids that add nothing alone (the first bytes of a character spelt by
    /// byte-fallback pieces) share the range of the id that completes it; BOS/EOS and
    /// trailing ids that complete nothing get an empty range. Token scores are mapped
    /// onto the answer's spans with these.
    ///
    /// Each id decodes a small window (the ids since the last piece it completed), as
    /// streaming servers do: linear in the length. Should a decoder rewrite earlier text,
    /// so that the windows do not add up to the whole, every prefix is decoded instead.
    pub fn decode_with_offsets(
        &self,
        ids: &[i64],
    ) -> Result<(String, Vec<std::ops::Range<usize>>), TokenizerError> {
        let text = self.decode(ids)?;
        let mut ends: Vec<Option<usize>> = Vec::with_capacity(ids.len());
        let (mut prefix, mut read, mut emitted) = (0, 0, 0);
        let mut windows_add_up = true;
        for i in 0..ids.len() {
            let before = self.decode(&ids[prefix..read])?;
            let after = self.decode(&ids[prefix..=i])?;
            let piece = after.strip_prefix(before.as_str()).unwrap_or_default();
            if piece.is_empty() || after.ends_with('\u{FFFD}') {
                ends.push(None);
                continue;
            }
            if text.get(emitted..emitted + piece.len()) != Some(piece) {
                windows_add_up = false;
                break;
            }
            emitted += piece.len();
            ends.push(Some(emitted));
            (prefix, read) = (read, i + 1);
        }
        if !windows_add_up || emitted != text.len() {
            ends.clear();
            let mut end = 0;
            for i in 0..ids.len() {
                let upto = self.decode(&ids[..=i])?;
                let grew = upto.len() > end && text.starts_with(upto.as_str());
                end = if grew { upto.len() } else { end };
                ends.push(grew.then_some(end));
            }
        }
        Ok((text, ranges_from_ends(&ends)))
    }

    /// The piece string of one id (e.g. "▁the", "<0x0A>"), for debugging and stop rules.
    pub fn id_to_piece(&self, id: i64) -> Option<String> {
        u32::try_from(id)
            .ok()
            .and_then(|i| self.inner.id_to_token(i))
    }
}
