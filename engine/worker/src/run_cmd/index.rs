//! `<out>/documents.jsonl`: a JSON line per input saying what became of it. Results are
//! keyed by content hash; this maps each input back to its result (or its failure).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sphinx_core::result::OutputRecord;

use super::report::DocumentOutcome;

/// The run's per-document index under `--out`, for scripts: results are keyed by
/// content hash, and this maps each input back to them.
const INDEX_FILE: &str = "documents.jsonl";

/// How a document ended, as the index says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// Every page has a result.
    Ok,
    /// Some pages have results, others failed or were not run.
    Partial,
    /// No page has a result (refused at upload, every page failed).
    Failed,
    /// The run was stopped (ctrl-c) before this document was finished: the same command
    /// again finishes it. Some pages may have results (`pages_done`).
    Interrupted,
    /// No document: a job sidecar, read with the document it names.
    Skipped,
}

/// One line of [`INDEX_FILE`].
#[derive(Debug, serde::Serialize)]
struct IndexLine<'a> {
    /// The input's path, as given or found under a folder given.
    input: &'a str,
    /// Its name below the inputs given: the key below `inbox/`, the merged result's
    /// `source`.
    source: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    doc_id: Option<&'a str>,
    pages: u32,
    pages_done: u32,
    /// The merged result's path below `--out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    /// The lowest confidence of its answers on any page.
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    outputs: &'a [OutputRecord],
    /// The error record's code when the upload was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Why a skipped input is no document.
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'a str>,
}

impl<'a> IndexLine<'a> {
    fn of(d: &'a DocumentOutcome) -> Self {
        let status = match (d.pages_done, &d.error) {
            _ if d.skipped.is_some() => Status::Skipped,
            _ if d.interrupted => Status::Interrupted,
            (0, _) => Status::Failed,
            (_, None) if d.pages_done == d.pages => Status::Ok,
            _ => Status::Partial,
        };
        Self {
            input: &d.input,
            source: &d.source,
            status,
            doc_id: d.doc_id.as_deref(),
            pages: d.pages,
            pages_done: d.pages_done,
            result: d.result.as_deref(),
            confidence: d.confidence,
            outputs: &d.outputs,
            code: d.code.as_deref(),
            error: d.error.as_deref(),
            skipped: d.skipped.as_deref(),
        }
    }
}

/// Writes `<out>/documents.jsonl`: a JSON line per input, in input order, replacing the
/// last run's (written beside and renamed, so a reader never sees half of it).
pub(super) fn write_index(docs: &[DocumentOutcome], out: &Path) -> Result<PathBuf> {
    let mut body = Vec::new();
    for d in docs {
        serde_json::to_writer(&mut body, &IndexLine::of(d)).expect("plain data serializes");
        body.push(b'\n');
    }
    let (path, partial) = (
        out.join(INDEX_FILE),
        out.join(format!(".{INDEX_FILE}.part")),
    );
    std::fs::write(&partial, body)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_core::keys;

    /// The index calls a document ok only with every page done, partial with some,
    /// interrupted when the run stopped before it was finished.
    #[test]
    fn index_lines_say_ok_partial_or_failed() {
        let mut d = DocumentOutcome::new("scans/a.pdf");
        d.code = Some("encrypted".into());
        d.error = Some("PDF is encrypted".into());
        let line = serde_json::to_value(IndexLine::of(&d)).unwrap();
        assert_eq!(line["status"], "failed");
        assert_eq!(line["code"], "encrypted");
        assert_eq!(line["error"], "PDF is encrypted");
        assert!(line.get("doc_id").is_none() && line.get("result").is_none());

        d.code = None;
        d.doc_id = Some("d1".into());
        d.pages = 3;
        d.pages_done = 2;
        d.error = Some("1 of 3 pages failed".into());
        d.result = Some(keys::document_result("d1"));
        let line = serde_json::to_value(IndexLine::of(&d)).unwrap();
        assert_eq!(line["status"], "partial");
        assert_eq!(line["result"], "results/d1.json");

        d.interrupted = true;
        d.error = Some("1 of 3 pages not run: the run was interrupted".into());
        let line = serde_json::to_value(IndexLine::of(&d)).unwrap();
        assert_eq!(line["status"], "interrupted");
        assert_eq!(line["pages_done"], 2);

        d.interrupted = false;
        d.pages_done = 3;
        d.error = None;
        assert_eq!(
            serde_json::to_value(IndexLine::of(&d)).unwrap()["status"],
            "ok"
        );
    }
}
