//! The results users pay for: per page, and merged per document, as versioned JSON.
//!
//! A [`PageResult`] is the ONE result object written per page (S3 bills per PUT): every
//! task run on the page, each with the model's raw answer (always kept, whatever the
//! parser made of it), the plain text, the grounded spans with boxes in normalised canvas
//! coordinates, page pixels and PDF points ([`crate::boxes::PageBox`]), parse warnings,
//! why generation stopped, token counts and timings, plus the model id and the prompt
//! version that produced it. A [`DocumentResult`] merges a document's page results in page
//! order and lists pages that have no result yet.
//!
//! **Confidence** (schema 1.3): how sure the model was of an answer, and of each span, is
//! the geometric mean of the probabilities the model gave the tokens that wrote it
//! (`exp` of their mean log-probability; 0..1). It says how sure, not how right: a model
//! reading pages unlike those it learnt from is often unsure, which is when to look.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::boxes::{self, Grounded, PageBox, PageFrame, ParseWarning};
use crate::job::Task;
use crate::output::OutputFormat;
use crate::prompts::PROMPT_VERSION;

/// Schema version of [`PageResult`] and [`DocumentResult`]: `MAJOR.MINOR`. Readers accept
/// any minor of their major (minors only add optional fields) and reject other majors.
pub const RESULT_SCHEMA_VERSION: &str = "1.3";
/// The major part of [`RESULT_SCHEMA_VERSION`].
pub const RESULT_SCHEMA_MAJOR: u32 = 1;

/// Why results cannot be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("result is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("result schema_version {found:?} is not readable (this build reads {RESULT_SCHEMA_MAJOR}.x)")]
    UnsupportedVersion { found: String },
    #[error("page result for document {found} cannot be merged into document {expected}")]
    OtherDocument { expected: String, found: String },
    #[error("page {page_index} appears more than once")]
    DuplicatePage { page_index: u32 },
    #[error("page {page_index} is out of range: the document has {page_count} pages")]
    PageOutOfRange { page_index: u32, page_count: u32 },
    #[error("no page results to merge")]
    NoPages,
}

/// Which model produced a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Stable model identifier, e.g. the checkpoint folder name or `models/<run>` key.
    pub id: String,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted its end-of-sequence token.
    Eos,
    /// The answer reached the conversation's end signal (`"\n###"`).
    Separator,
    /// The max-new-tokens budget ran out: the answer may be cut short.
    MaxTokens,
}

/// Token counts of one task on one page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Text tokens of the prompt, BOS included.
    pub prompt: u32,
    /// Visual positions in the sequence (image tokens, start/end and skip tokens).
    pub visual: u32,
    /// Tokens generated, stop tokens included.
    pub generated: u32,
}

/// Wall-clock milliseconds spent for one task on one page. In a batch, a page's share is
/// the batch's time: the numbers say how long the page waited, not its exclusive cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Visual encoders and projector.
    pub encode_ms: f64,
    /// Prompt prefill through the LLM.
    pub prefill_ms: f64,
    /// Token-by-token decoding.
    pub decode_ms: f64,
    /// Everything, parsing included.
    pub total_ms: f64,
}

/// One task's outcome on one page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: Task,
    /// [`crate::prompts::PROMPT_VERSION`] of the wording used.
    pub prompt_version: String,
    /// The question asked (before the conversation template).
    pub question: String,
    /// The model's answer exactly as generated, cut at the end signal.
    pub raw_text: String,
    /// The answer with phrase tags and box lists removed.
    pub text: String,
    /// Grounded spans with their boxes on the page.
    pub spans: Vec<Grounded<PageBox>>,
    /// What the parser could not read; empty for a well-formed answer.
    pub warnings: Vec<ParseWarning>,
    pub stop: StopReason,
    pub tokens: TokenCounts,
    pub timings: Timings,
    /// The geometric mean probability of the answer's tokens (see the module docs);
    /// absent in results before schema 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// One generated token's log-probability and the bytes of the raw answer it wrote
/// (empty for a token that wrote nothing alone).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenScore {
    pub bytes: std::ops::Range<usize>,
    pub logprob: f32,
}

/// `exp` of the mean of `logprobs`; `None` without any.
fn geometric_mean(logprobs: impl Iterator<Item = f32>) -> Option<f32> {
    let (sum, n) = logprobs.fold((0f64, 0u32), |(s, n), l| (s + f64::from(l), n + 1));
    (n > 0).then(|| (sum / f64::from(n)).exp() as f32)
}

impl TaskResult {
    /// Sets the answer's and each span's confidence from the scores of the tokens that
    /// wrote `raw_text` (tokens after it, such as the end signal, are left out): a span's
    /// is over the tokens whose bytes overlap its phrase (or its bare list).
    pub fn score(&mut self, tokens: &[TokenScore]) {
        let len = self.raw_text.len();
        let answer = tokens.iter().filter(|t| t.bytes.start < len);
        self.confidence = geometric_mean(answer.map(|t| t.logprob));
        let sources = boxes::parse(&self.raw_text).sources;
        for (span, source) in self.spans.iter_mut().zip(sources) {
            span.confidence = geometric_mean(
                tokens
                    .iter()
                    .filter(|t| t.bytes.start < source.end && t.bytes.end > source.start)
                    .map(|t| t.logprob),
            );
        }
    }

    /// Parses `raw_text` and maps its boxes onto the page described by `frame`.
    pub fn from_answer(
        task: Task,
        question: String,
        raw_text: String,
        frame: &PageFrame,
        stop: StopReason,
        tokens: TokenCounts,
        timings: Timings,
    ) -> Self {
        let parsed = boxes::parse(&raw_text);
        Self {
            task,
            prompt_version: PROMPT_VERSION.to_owned(),
            question,
            text: parsed.plain_text,
            spans: frame.map_spans(&parsed.spans),
            warnings: parsed.warnings,
            raw_text,
            stop,
            tokens,
            timings,
            confidence: None,
        }
    }
}

/// All results of one page: the one result object written per page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageResult {
    pub schema_version: String,
    /// SHA-256 (lowercase hex) of the uploaded bytes.
    pub doc_id: String,
    pub page_index: u32,
    pub page_count: u32,
    pub model: ModelInfo,
    /// The page's geometry: how boxes were mapped (canvas, placement, sizes).
    pub frame: PageFrame,
    pub tasks: Vec<TaskResult>,
}

impl PageResult {
    /// A result of the current schema version.
    pub fn new(
        doc_id: String,
        page_index: u32,
        page_count: u32,
        model: ModelInfo,
        frame: PageFrame,
        tasks: Vec<TaskResult>,
    ) -> Self {
        Self {
            schema_version: RESULT_SCHEMA_VERSION.to_owned(),
            doc_id,
            page_index,
            page_count,
            model,
            frame,
            tasks,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, ResultError> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// Reads a page result, refusing other major versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ResultError> {
        let r: Self = serde_json::from_slice(bytes)?;
        check_version(&r.schema_version)?;
        Ok(r)
    }
}

fn check_version(found: &str) -> Result<(), ResultError> {
    let major = found.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major != Some(RESULT_SCHEMA_MAJOR) {
        return Err(ResultError::UnsupportedVersion {
            found: found.to_owned(),
        });
    }
    Ok(())
}

/// A grounded span of a merged document result, with the page it lies on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentSpan {
    pub page_index: u32,
    pub text: String,
    pub boxes: Vec<PageBox>,
    /// The span's confidence on its page (schema 1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// One task across a document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedTask {
    pub task: Task,
    /// Pages' plain texts in page order, separated by a blank line.
    pub text: String,
    pub spans: Vec<DocumentSpan>,
    /// Pages of the document on which this task has a parse warning.
    pub pages_with_warnings: Vec<u32>,
    pub tokens: TokenCounts,
    /// The lowest of its pages' confidences: the page to look at first (schema 1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// A document's results, merged from its page results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentResult {
    pub schema_version: String,
    pub doc_id: String,
    /// The upload's name below the inbox (schema 1.2), so a result found by its id says
    /// which file it is. Uploads of the same bytes share one `doc_id` and one result: it
    /// names the one whose page jobs completed the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub page_count: u32,
    /// Pages without a result (yet): the merge is partial when this is not empty.
    pub missing_pages: Vec<u32>,
    /// Each task, in order of first appearance.
    pub tasks: Vec<MergedTask>,
    /// The page results, in page order.
    pub pages: Vec<PageResult>,
    /// The other result files the deployment asked for (schema 1.1): written, or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputRecord>,
}

/// What became of one requested result file of a document (`txt`, `hocr`, `alto`, `pdf`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub format: OutputFormat,
    /// The object written; absent when the file was not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why the file was not made (e.g. the OCR task did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pages that have no text in the file (their page failed): kept in place, marked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages_without_text: Vec<u32>,
}

impl DocumentResult {
    /// Merges page results of one document (any order); refuses duplicates, pages of
    /// other documents and pages out of range.
    pub fn merge(mut pages: Vec<PageResult>) -> Result<Self, ResultError> {
        let first = pages.first().ok_or(ResultError::NoPages)?;
        let doc_id = first.doc_id.clone();
        let page_count = first.page_count;
        let mut seen = BTreeSet::new();
        for p in &pages {
            check_version(&p.schema_version)?;
            if p.doc_id != doc_id {
                return Err(ResultError::OtherDocument {
                    expected: doc_id,
                    found: p.doc_id.clone(),
                });
            }
            if p.page_index >= page_count || p.page_count != page_count {
                return Err(ResultError::PageOutOfRange {
                    page_index: p.page_index,
                    page_count,
                });
            }
            if !seen.insert(p.page_index) {
                return Err(ResultError::DuplicatePage {
                    page_index: p.page_index,
                });
            }
        }
        pages.sort_by_key(|p| p.page_index);
        let missing_pages = (0..page_count).filter(|i| !seen.contains(i)).collect();
        let mut tasks: Vec<MergedTask> = Vec::new();
        for page in &pages {
            for tr in &page.tasks {
                let merged = match tasks.iter_mut().position(|m| m.task == tr.task) {
                    Some(i) => &mut tasks[i],
                    None => {
                        tasks.push(MergedTask {
                            task: tr.task.clone(),
                            text: String::new(),
                            spans: Vec::new(),
                            pages_with_warnings: Vec::new(),
                            tokens: TokenCounts::default(),
                            confidence: None,
                        });
                        tasks.last_mut().expect("just pushed")
                    }
                };
                if !merged.text.is_empty() && !tr.text.is_empty() {
                    merged.text.push_str("\n\n");
                }
                merged.text.push_str(&tr.text);
                merged.spans.extend(tr.spans.iter().map(|g| DocumentSpan {
                    page_index: page.page_index,
                    text: g.text.clone(),
                    boxes: g.boxes.clone(),
                    confidence: g.confidence,
                }));
                if let Some(c) = tr.confidence {
                    merged.confidence = Some(merged.confidence.map_or(c, |m| m.min(c)));
                }
                if !tr.warnings.is_empty() {
                    merged.pages_with_warnings.push(page.page_index);
                }
                merged.tokens.prompt += tr.tokens.prompt;
                merged.tokens.visual += tr.tokens.visual;
                merged.tokens.generated += tr.tokens.generated;
            }
        }
        Ok(Self {
            schema_version: RESULT_SCHEMA_VERSION.to_owned(),
            doc_id,
            source: None,
            page_count,
            missing_pages,
            tasks,
            pages,
            outputs: Vec::new(),
        })
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, ResultError> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// Reads a document result, refusing other major versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ResultError> {
        let r: Self = serde_json::from_slice(bytes)?;
        check_version(&r.schema_version)?;
        Ok(r)
    }
}
