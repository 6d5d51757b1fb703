//! Training data: the reference's unified multi-turn conversation format, several
//! datasets mixed by weight in ONE stage, and `to_predict` supervision.
//!
//! A record (one JSONL line) is `{"image": optional path relative to the JSONL file,
//! "conversations": [{"from": "human", "value": "<image>\n..."}, {"from": "gpt", ...},
//! ...]}` as read by LLaMA2-Accessory's `FinetuneDialogDataset`
//! (`accessory/data/conversation/dataset.py`); `sphinx synth` writes exactly this
//! (`conversations.jsonl`). Roles alternate human/gpt, human first; `<image>` is removed.
//!
//! Supervision follows the reference: the whole conversation rendered by the template is
//! tokenized with BOS and EOS; each answer plus its separator (`to_predict`) is tokenized
//! alone and searched for in the conversation's ids from where the previous one ended;
//! only those ids are targets. Conversations longer than the text budget are truncated
//! (the reference's `max_words`).
//!
//! The mixture is a pure function of the seed and a cursor (samples drawn so far and per
//! dataset), so a resumed run draws exactly what the uninterrupted run would have.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::conversation::{Template, Turn};
use crate::splitmix::SplitMix64;
use crate::tokenizer::Tokenizer;

/// Label of a position that is not supervised (PyTorch's `ignore_index` default).
pub const IGNORE: i64 = -100;
/// What the reference strips from the first question.
const IMAGE_MARK: &str = "<image>";

/// Why a dataset or record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read dataset {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("dataset {path} line {line}: {reason}")]
    Record {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("dataset {path} has no records")]
    Empty { path: PathBuf },
    #[error("record {id}: {reason}")]
    Example { id: String, reason: String },
    #[error("{missing} of the {of} {what} have no image file: {first}")]
    MissingImages {
        missing: usize,
        of: usize,
        what: &'static str,
        /// The first few, comma-separated.
        first: String,
    },
}

/// Refuses `images`, the pages a command is about to read (`what` they are, for the
/// message), when some are not files: all are counted and the first five named, before
/// a model is loaded, instead of failing at the first one minutes or steps later.
pub fn check_images_exist(images: &[PathBuf], what: &'static str) -> Result<(), DataError> {
    let missing: Vec<String> = images
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut first = missing[..missing.len().min(5)].join(", ");
    if missing.len() > 5 {
        first.push_str(", ...");
    }
    Err(DataError::MissingImages {
        missing: missing.len(),
        of: images.len(),
        what,
        first,
    })
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub from: String,
    pub value: String,
}

/// One line of a dataset (other keys, such as `id`, are allowed and ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    pub conversations: Vec<Message>,
}

impl Record {
    /// The conversation as template turns: human/gpt alternating, `<image>` removed.
    pub fn turns(&self) -> Result<Vec<Turn>, String> {
        let msgs = &self.conversations;
        if msgs.is_empty() || !msgs.len().is_multiple_of(2) {
            return Err(format!(
                "needs alternating human/gpt messages, got {} messages",
                msgs.len()
            ));
        }
        let mut turns = Vec::with_capacity(msgs.len() / 2);
        for (i, pair) in msgs.chunks(2).enumerate() {
            if pair[0].from != "human" || pair[1].from != "gpt" {
                return Err(format!(
                    "turn {i} is {:?}/{:?}, expected human/gpt",
                    pair[0].from, pair[1].from
                ));
            }
            let q = pair[0]
                .value
                .replace(&format!("{IMAGE_MARK}\n"), "")
                .replace(IMAGE_MARK, "");
            turns.push(Turn::answered(q.trim().to_owned(), pair[1].value.clone()));
        }
        Ok(turns)
    }
}

/// One dataset: its records and the folder image paths are relative to.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    pub root: PathBuf,
    pub records: Vec<Record>,
}

impl Dataset {
    /// Reads a JSONL file; every line must be a record.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|error| DataError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec: Record = serde_json::from_str(line).map_err(|e| DataError::Record {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            rec.turns().map_err(|reason| DataError::Record {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            })?;
            records.push(rec);
        }
        if records.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            root,
            records,
        })
    }

    /// Where a record's image is.
    pub fn image_path(&self, rec: &Record) -> Option<PathBuf> {
        rec.image.as_ref().map(|p| self.root.join(p))
    }
}

/// Token ids of a conversation and their labels ([`IGNORE`] where not supervised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<i64>,
    pub labels: Vec<i64>,
}

/// Where `needle` first occurs in `hay` at or after `from`.
fn find_sublist(hay: &[i64], needle: &[i64], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

/// Renders, tokenizes and labels `turns` (the reference's `to_predict` semantics), then
/// truncates to `max_tokens`.
pub fn tokenize(
    template: &Template,
    tokenizer: &Tokenizer,
    turns: &[Turn],
    max_tokens: usize,
) -> Result<Tokenized, String> {
    let processed = template.process(turns).map_err(|e| e.to_string())?;
    let enc = |s: &str| tokenizer.encode(s, false, false).map_err(|e| e.to_string());
    let mut ids = tokenizer
        .encode(&processed.conv, true, true)
        .map_err(|e| e.to_string())?;
    let mut labels = vec![IGNORE; ids.len()];
    let mut check = 0;
    // How an answer tokenizes after other text: SentencePiece adds a word-start marker to
    // a string encoded alone, so as the reference does, try the plain encoding and then
    // the encoding after a probe prefix with the prefix's own ids removed.
    let probe = enc("\n")?;
    for value in &processed.to_predict {
        let plain = enc(value)?;
        let after = enc(&format!("\n{value}"))?;
        let candidates = [
            plain,
            after
                .get(probe.len()..)
                .map(<[i64]>::to_vec)
                .unwrap_or_default(),
        ];
        let found = candidates
            .iter()
            .find_map(|c| find_sublist(&ids, c, check).map(|at| (at, c.len())));
        let Some((at, len)) = found else {
            return Err(format!(
                "answer {value:?} is not found in the tokenized conversation"
            ));
        };
        // The template writes `" Assistant: " + answer`, and generation starts right
        // after `" Assistant:"`, so the space before the answer is the first token the
        // model generates. SentencePiece folds it into the answer's first piece (`▁`);
        // a tokenizer with a piece of its own for " " (the character tokenizer) must
        // learn it too, or the first generated token is one it was never taught.
        let end = at + len;
        let at = if at > check && tokenizer.id_to_piece(ids[at - 1]).as_deref() == Some(" ") {
            at - 1
        } else {
            at
        };
        labels[at..end].copy_from_slice(&ids[at..end]);
        check = end;
    }
    ids.truncate(max_tokens);
    labels.truncate(max_tokens);
    Ok(Tokenized { ids, labels })
}

/// Which sample comes next: samples drawn in all, and per dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub samples: u64,
    pub per_dataset: Vec<u64>,
}

/// Weighted, seeded mixture of datasets: the dataset of sample `n` is drawn from the
/// weights with a generator keyed by `(seed, n)`; within a dataset records are taken in
/// a seeded random order, reshuffled each pass.
#[derive(Debug, Clone)]
pub struct Mixture {
    seed: u64,
    cumulative: Vec<f64>,
    lens: Vec<usize>,
}

/// SplitMix64's output function as a hash of a counter, so every draw is addressable
/// without replaying a stream.
fn mix(z: u64) -> u64 {
    SplitMix64::hash(z)
}

/// Uniform in [0, 1) from a hash (top 53 bits).
fn unit(h: u64) -> f64 {
    SplitMix64::unit(h)
}

impl Mixture {
    /// A mixture of datasets with `lens` records and relative `weights`.
    pub fn new(seed: u64, lens: Vec<usize>, weights: &[f64]) -> Self {
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self {
            seed,
            cumulative,
            lens,
        }
    }

    /// A cursor at the start.
    pub fn start(&self) -> Cursor {
        Cursor {
            samples: 0,
            per_dataset: vec![0; self.lens.len()],
        }
    }

    /// The next sample `(dataset, record)`; advances the cursor.
    pub fn next(&self, cursor: &mut Cursor) -> (usize, usize) {
        let u = unit(mix(mix(self.seed) ^ cursor.samples));
        let d = self
            .cumulative
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.lens.len() - 1);
        let taken = cursor.per_dataset[d];
        let len = self.lens[d] as u64;
        let (pass, k) = (taken / len, taken % len);
        let record = self.permutation(d, pass)[k as usize];
        cursor.samples += 1;
        cursor.per_dataset[d] += 1;
        (d, record)
    }

    /// Fisher-Yates order of dataset `d` for pass `pass`.
    fn permutation(&self, d: usize, pass: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.lens[d]).collect();
        let key = mix(mix(self.seed ^ 0x5eed) ^ ((d as u64) << 40) ^ pass);
        for i in (1..order.len()).rev() {
            let j = (mix(key ^ i as u64) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the character tokenizer, the space between `" Assistant:"` and the answer is
    /// supervised (it is the first token generation must produce); the question is not.
    #[test]
    fn char_tokenizer_learns_the_space_before_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, super::super::char_tokenizer::tokenizer_json()).unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        let template = Template::default_conversation();
        let turns = [Turn {
            question: "Read?".into(),
            answer: Some("<p>ab</p>".into()),
        }];
        let t = tokenize(&template, &tok, &turns, 10_000).unwrap();
        let supervised: Vec<i64> = t
            .ids
            .iter()
            .zip(&t.labels)
            .filter(|(_, &l)| l != IGNORE)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(tok.decode(&supervised).unwrap(), " <p>ab</p>\n###");
        let prompt = template.prompt(&[Turn::ask("Read?")]).unwrap();
        let n = tok.encode(&prompt, true, false).unwrap().len();
        assert_eq!(
            t.labels[n], t.ids[n],
            "the first token after the prompt is learnt"
        );
        assert!(t.labels[..n].iter().all(|&l| l == IGNORE));
    }

    #[test]
    fn mixture_follows_weights_and_visits_every_record() {
        let m = Mixture::new(3, vec![10, 5], &[3.0, 1.0]);
        let mut c = m.start();
        let draws: Vec<_> = (0..4000).map(|_| m.next(&mut c)).collect();
        let first = draws.iter().filter(|(d, _)| *d == 0).count();
        assert!((2800..3200).contains(&first), "{first}");
        // Each pass over dataset 1 visits all of its records once.
        let ones: Vec<usize> = draws.iter().filter(|(d, _)| *d == 1).map(|x| x.1).collect();
        let mut pass: Vec<usize> = ones[..5].to_vec();
        pass.sort();
        assert_eq!(pass, vec![0, 1, 2, 3, 4]);
        // Resuming from a saved cursor continues identically.
        let mut c2 = m.start();
        for _ in 0..1000 {
            m.next(&mut c2);
        }
        let again: Vec<_> = (0..100).map(|_| m.next(&mut c2)).collect();
        assert_eq!(again, draws[1000..1100].to_vec());
    }

    #[test]
    fn turns_need_alternating_roles() {
        let rec = |from: [&str; 2]| Record {
            id: None,
            image: None,
            conversations: from
                .iter()
                .map(|f| Message {
                    from: f.to_string(),
                    value: "<image>\nx".into(),
                })
                .collect(),
        };
        assert_eq!(rec(["human", "gpt"]).turns().unwrap()[0].question, "x");
        assert!(rec(["gpt", "human"])
            .turns()
            .unwrap_err()
            .contains("human/gpt"));
    }
}
