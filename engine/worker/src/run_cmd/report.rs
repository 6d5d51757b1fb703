//! What a run did, per document: pages done, why others are missing, the other result
//! files, overlays, and the summary `sphinx run` prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sphinx_core::isolate::{render_page, Isolation};
use sphinx_core::keys;
use sphinx_core::result::OutputRecord;
use sphinx_core::Limits;
use sphinx_core::{DocumentResult, ObjectStore, PageResult};
use sphinx_model::model_folder::Loaded;

use crate::overlay;

/// What one document became.
#[derive(Debug, Clone)]
pub struct DocumentOutcome {
    /// The input's path as the command line led to it.
    pub input: String,
    /// Its name in `inbox/`, manifests and results.
    pub source: String,
    pub doc_id: Option<String>,
    pub pages: u32,
    pub pages_done: u32,
    /// The error record's code when the upload itself was refused (`malformed`, ...).
    pub code: Option<String>,
    /// The reason the whole document or some of its pages failed.
    pub error: Option<String>,
    /// Why an input is no document and was rightly left alone (a job sidecar).
    pub skipped: Option<String>,
    /// The run was stopped (ctrl-c) before it finished this document: the same command
    /// again finishes it.
    pub interrupted: bool,
    /// The start of the document's first task text.
    pub preview: String,
    /// The lowest confidence of its tasks' answers on any page (see
    /// [`sphinx_core::result`]): how sure the model was where it was least sure.
    pub confidence: Option<f32>,
    /// `results/<doc_id>.json`, once written (every page has a result or an error record).
    pub result: Option<String>,
    /// The other result files: written (`results/<doc_id>.txt`, ...) or why not.
    pub outputs: Vec<OutputRecord>,
}

impl DocumentOutcome {
    /// Nothing known yet but the name.
    pub(super) fn new(source: &str) -> Self {
        Self {
            input: String::new(),
            source: source.to_string(),
            doc_id: None,
            pages: 0,
            pages_done: 0,
            code: None,
            error: None,
            skipped: None,
            interrupted: false,
            preview: String::new(),
            confidence: None,
            result: None,
            outputs: Vec::new(),
        }
    }
}

/// What drawing a run's overlays needs: the model's canvas, the render limits, and
/// where they go (`<out>/overlays/`).
pub(super) struct Overlays<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) limits: &'a Limits,
    pub(super) dir: PathBuf,
}

/// Fills in each tiled document's pages done, preview, result files and, for a document
/// short of pages, why; draws the overlays when asked. True when every document has all
/// its pages.
pub(super) async fn settle(
    docs: &mut [DocumentOutcome],
    store: &dyn ObjectStore,
    out: &Path,
    interrupted: bool,
    overlays: Option<&Overlays<'_>>,
) -> Result<bool> {
    let mut complete = true;
    for doc in docs {
        let Some(doc_id) = doc.doc_id.clone() else {
            complete &= doc.skipped.is_some();
            continue;
        };
        let results = page_results(store, &doc_id, doc.pages).await?;
        doc.pages_done = results.len() as u32;
        if doc.pages_done < doc.pages {
            complete = false;
            let (why, not_run) = missing_pages(store, doc, out, interrupted).await;
            doc.interrupted |= interrupted && not_run > 0;
            doc.error.get_or_insert(why);
        }
        if let Ok(merged) = DocumentResult::merge(results.clone()) {
            doc.preview = merged
                .tasks
                .first()
                .map(|t| preview(&t.text))
                .unwrap_or_default();
            doc.confidence = merged
                .tasks
                .iter()
                .filter_map(|t| t.confidence)
                .reduce(f32::min);
        }
        let result_key = keys::document_result(&doc_id);
        if let Ok(written) = store.get(&result_key).await {
            if let Ok(merged) = DocumentResult::from_json(&written) {
                doc.outputs = merged.outputs;
                doc.result = Some(result_key);
            }
        }
        if let Some(o) = overlays {
            let file = Path::new(&doc.input);
            draw_overlays(file, &results, o.loaded, o.limits, &o.dir)?;
        }
    }
    Ok(complete)
}

/// One result file of a document: its key (and pages that gave no text), or why it was
/// not made.
fn describe_output(o: &OutputRecord) -> String {
    match (&o.key, &o.reason) {
        (Some(key), _) if o.pages_without_text.is_empty() => key.clone(),
        (Some(key), _) => format!("{key} (pages without text: {:?})", o.pages_without_text),
        (None, reason) => format!(
            "no {}: {}",
            o.format,
            reason.as_deref().unwrap_or("not made")
        ),
    }
}

/// Why some of a document's pages have no result: those with an error record failed,
/// the others were never run (the run was interrupted before them). Also returns how
/// many were never run.
async fn missing_pages(
    store: &dyn ObjectStore,
    doc: &DocumentOutcome,
    out: &Path,
    interrupted: bool,
) -> (String, u32) {
    let doc_id = doc.doc_id.as_deref().unwrap_or_default();
    let mut failed = 0u32;
    for page in 0..doc.pages {
        if store.head(&keys::page_error(doc_id, page)).await.is_ok() {
            failed += 1;
        }
    }
    let not_run = (doc.pages - doc.pages_done).saturating_sub(failed);
    let mut why = Vec::new();
    if failed > 0 {
        why.push(format!(
            "{failed} of {} pages failed (see {}/errors/{doc_id}/)",
            doc.pages,
            out.display()
        ));
    }
    if not_run > 0 {
        why.push(format!(
            "{not_run} of {} pages not run{}",
            doc.pages,
            if interrupted {
                ": the run was interrupted (the same command again finishes them)"
            } else {
                ""
            }
        ));
    }
    (why.join("; "), not_run)
}

async fn page_results(
    store: &dyn ObjectStore,
    doc_id: &str,
    pages: u32,
) -> Result<Vec<PageResult>> {
    let mut out = Vec::new();
    for page in 0..pages {
        if let Ok(bytes) = store.get(&keys::page_result(doc_id, page)).await {
            out.push(PageResult::from_json(&bytes)?);
        }
    }
    Ok(out)
}

/// Draws each page's boxes on a fresh render of the page.
fn draw_overlays(
    file: &Path,
    results: &[PageResult],
    loaded: &Loaded,
    limits: &Limits,
    dir: &Path,
) -> Result<()> {
    let bytes = Arc::new(std::fs::read(file)?);
    for r in results {
        let (_, page) = render_page(
            &Isolation::this_binary(),
            &bytes,
            limits,
            loaded.tile.canvas,
            r.page_index,
        )?;
        let spans: Vec<_> = r.tasks.iter().flat_map(|t| t.spans.clone()).collect();
        let img = overlay::draw(&page.image, r.frame.size_pixels, &spans)?;
        let path = dir
            .join(&r.doc_id)
            .join(format!("page-{:04}.png", r.page_index));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        overlay::write_png(&img, &path)?;
    }
    Ok(())
}

fn preview(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one_line.chars().take(70).collect();
    if one_line.chars().count() > 70 {
        p.push('…');
    }
    p
}

/// Documents the summary lists one by one; a larger run lists only those that did not
/// end ok (at most this many): `documents.jsonl` has every one.
const LISTED: usize = 50;

/// What `sphinx run` prints at the end: totals, then a line per document (with its other
/// result files, or why not; past [`LISTED`] documents, only the ones not ok). Inputs
/// with the same bytes are one document with one result: its pages count once, and the
/// later names point to the first. `ran` is the pages this run computed (a rerun finds
/// the others done): the rate is of those.
pub(super) fn summary(
    docs: &[DocumentOutcome],
    model_id: &str,
    random: bool,
    ran: u32,
    took: Duration,
) -> String {
    let mut first_name: HashMap<&str, &str> = HashMap::new();
    let mut pages = 0u32;
    for d in docs {
        match &d.doc_id {
            Some(id) if first_name.contains_key(id.as_str()) => {}
            Some(id) => {
                first_name.insert(id, &d.source);
                pages += d.pages_done;
            }
            None => pages += d.pages_done,
        }
    }
    let inputs = docs.iter().filter(|d| d.skipped.is_none()).count();
    let distinct = first_name.len()
        + docs
            .iter()
            .filter(|d| d.doc_id.is_none() && d.skipped.is_none())
            .count();
    let secs = took.as_secs_f64();
    let mut lines = vec![format!(
        "{inputs} documents{}, {pages} pages{} in {secs:.1} s ({:.2} pages/s) with model {model_id}{}",
        if distinct < inputs {
            format!(" ({distinct} distinct)")
        } else {
            String::new()
        },
        if ran < pages {
            format!(" ({ran} run now, {} by an earlier run)", pages - ran)
        } else {
            String::new()
        },
        f64::from(ran) / secs.max(1e-9),
        if random { " (RANDOM WEIGHTS)" } else { "" }
    )];
    // Each document's lines, and whether it ended ok (or was rightly skipped).
    let mut blocks: Vec<(bool, Vec<String>)> = Vec::with_capacity(docs.len());
    for d in docs {
        let mut lines = Vec::new();
        let ok = d.error.is_none();
        let first = d.doc_id.as_deref().and_then(|id| first_name.get(id));
        if let (Some(first), None) = (first.filter(|f| **f != d.source), &d.error) {
            let id = d.doc_id.as_deref().unwrap_or_default();
            lines.push(format!(
                "  ok      {}  the same bytes as {first}: results/{id}.json",
                d.source
            ));
            blocks.push((ok, lines));
            continue;
        }
        if let Some(why) = &d.skipped {
            lines.push(format!("  --      {}  {why}", d.source));
            blocks.push((true, lines));
            continue;
        }
        lines.push(match (&d.error, &d.doc_id) {
            (None, Some(id)) => format!(
                "  ok      {}  {} pages  results/{id}.json  {:?}{}",
                d.source,
                d.pages_done,
                d.preview,
                d.confidence
                    .map(|c| format!("  (confidence {c:.2})"))
                    .unwrap_or_default()
            ),
            (Some(e), _) if d.interrupted => format!("  STOPPED {}  {e}", d.source),
            (Some(e), _) => match &d.code {
                Some(code) => format!("  FAILED  {}  {e} ({code})", d.source),
                None => format!("  FAILED  {}  {e}", d.source),
            },
            (None, None) => format!("  ?       {}", d.source),
        });
        lines.extend(
            d.outputs
                .iter()
                .map(|o| format!("          {}", describe_output(o))),
        );
        blocks.push((ok, lines));
    }
    if blocks.len() <= LISTED {
        lines.extend(blocks.into_iter().flat_map(|(_, l)| l));
    } else {
        let not_ok: Vec<Vec<String>> = blocks
            .into_iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, l)| l)
            .collect();
        let ok = docs.len() - not_ok.len();
        lines.push(match not_ok.len() {
            0 => format!("  all {ok} ended ok (every document is in documents.jsonl)"),
            n if n <= LISTED => {
                format!("  {ok} ended ok, {n} did not (every document is in documents.jsonl):")
            }
            n => format!(
                "  {ok} ended ok, {n} did not, the first {LISTED} below (every document is \
                 in documents.jsonl):"
            ),
        });
        lines.extend(not_ok.into_iter().take(LISTED).flatten());
    }
    lines
        .iter()
        .map(|l| sphinx_cli::stdout::printable(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphinx_core::LocalStore;

    /// Two inputs with the same bytes are one document: its pages count once, and the
    /// second name points to the first.
    #[test]
    fn the_summary_counts_identical_inputs_once() {
        let doc = |source: &str, id: &str, pages: u32| {
            let mut d = DocumentOutcome::new(source);
            d.doc_id = Some(id.into());
            (d.pages, d.pages_done) = (pages, pages);
            d
        };
        let mut refused = DocumentOutcome::new("bad.pdf");
        refused.code = Some("malformed".into());
        refused.error = Some("malformed PDF: truncated".into());
        let docs = [
            doc("a.pdf", "d1", 3),
            doc("b.pdf", "d1", 3),
            {
                let mut c = doc("c.pdf", "d2", 1);
                c.confidence = Some(0.873);
                c
            },
            refused,
        ];
        let text = summary(&docs, "nano", false, 4, Duration::from_secs(2));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("4 documents (3 distinct), 4 pages in 2.0 s (2.00 pages/s)"),
            "{text}"
        );
        // A rerun: the rate is of the pages it ran.
        let rerun = summary(&docs, "nano", false, 1, Duration::from_secs(2));
        assert!(
            rerun.starts_with(
                "4 documents (3 distinct), 4 pages (1 run now, 3 by an earlier run) in 2.0 s \
                 (0.50 pages/s)"
            ),
            "{rerun}"
        );
        assert_eq!(
            lines[2],
            "  ok      b.pdf  the same bytes as a.pdf: results/d1.json"
        );
        assert!(
            lines[3].starts_with("  ok      c.pdf  1 pages  results/d2.json")
                && lines[3].ends_with("  (confidence 0.87)"),
            "{text}"
        );
        assert_eq!(
            lines[4],
            "  FAILED  bad.pdf  malformed PDF: truncated (malformed)"
        );
    }

    /// A run of more documents than are listed lists those not ok, and says how many of
    /// each there are.
    #[test]
    fn a_large_run_lists_the_documents_that_did_not_end_ok() {
        let mut docs: Vec<DocumentOutcome> = (0..LISTED + 10)
            .map(|i| {
                let mut d = DocumentOutcome::new(&format!("p{i}.pdf"));
                d.doc_id = Some(format!("d{i}"));
                (d.pages, d.pages_done) = (1, 1);
                d
            })
            .collect();
        for i in [3, 40] {
            docs[i].pages_done = 0;
            docs[i].error = Some("1 of 1 pages failed".into());
        }
        let ran = (LISTED + 8) as u32;
        let text = summary(&docs, "nano", false, ran, Duration::from_secs(1));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[1],
            format!(
                "  {} ended ok, 2 did not (every document is in documents.jsonl):",
                LISTED + 8
            )
        );
        assert!(lines[2].starts_with("  FAILED  p3.pdf"), "{text}");
        assert!(lines[3].starts_with("  FAILED  p40.pdf"), "{text}");
    }

    /// A name with a newline or an escape sequence stays on its document's line, shown
    /// escaped.
    #[test]
    fn names_with_control_characters_stay_on_one_line() {
        let mut d = DocumentOutcome::new("scan\n\u{1b}[31mred.pdf");
        d.error = Some("unknown document format".into());
        let text = summary(&[d], "nano", false, 0, Duration::from_secs(1));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[1],
            "  FAILED  scan\\n\\u{1b}[31mred.pdf  unknown document format"
        );
    }

    /// A page with an error record failed; one with neither a result nor a record was
    /// never run, and the summary must not send the user to an errors folder for it.
    #[tokio::test]
    async fn pages_without_results_are_failed_or_not_run() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::new(tmp.path()).unwrap();
        let mut doc = DocumentOutcome::new("a.pdf");
        doc.doc_id = Some("d1".into());
        doc.pages = 4;
        doc.pages_done = 1;
        store
            .put(&keys::page_error("d1", 2), b"{}".to_vec())
            .await
            .unwrap();
        let out = Path::new("/results/here");
        assert_eq!(
            missing_pages(&store, &doc, out, true).await,
            (
                "1 of 4 pages failed (see /results/here/errors/d1/); 2 of 4 pages not run: \
                 the run was interrupted (the same command again finishes them)"
                    .to_string(),
                2
            )
        );
        doc.pages_done = 3;
        assert_eq!(
            missing_pages(&store, &doc, out, false).await,
            (
                "1 of 4 pages failed (see /results/here/errors/d1/)".to_string(),
                0
            )
        );
    }
}
