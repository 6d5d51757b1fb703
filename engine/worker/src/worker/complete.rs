//! A document is complete when every page has a result or a page error record; then
//! its merged `results/<doc_id>.json` is written exactly once, by whichever worker
//! finishes the last page first (a conditional create decides the race).
//!
//! Before it, the other formats the deployment asks for ([`Outputs`]: text, hOCR, ALTO,
//! searchable PDF, made by `sphinx-archive`) are written, each with a conditional create,
//! so the JSON is the document's commit mark: a worker that dies in between leaves no
//! JSON, and the next completion check (a redelivered page) writes what is missing.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use sphinx_archive::{Request, Upload};
use sphinx_core::document::sniff;
use sphinx_core::keys;
use sphinx_core::result::{DocumentResult, OutputRecord, PageResult};
use sphinx_core::retry::{retry, RetryPolicy};
use sphinx_core::ErrorRecord;
use sphinx_core::Isolation;
use sphinx_core::Limits;
use sphinx_core::ObjectStore;
use sphinx_core::OutputFormats;

/// What the completion step writes beside the merged JSON, and what it needs for it.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub formats: OutputFormats,
    /// Where the tiler found uploads (`SPHINX_INBOX_PREFIX`): the PDF is made from the
    /// original upload, read back from there.
    pub inbox_prefix: String,
    /// How image uploads are decoded for the PDF (the render child).
    pub isolation: Isolation,
    pub limits: Limits,
}

impl Default for Outputs {
    /// JSON only.
    fn default() -> Self {
        Self {
            formats: OutputFormats::default(),
            inbox_prefix: "inbox/".to_string(),
            isolation: Isolation::this_binary(),
            limits: Limits::default(),
        }
    }
}

/// What a completion check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Pages still running: `done` of `total` accounted for.
    Pending { done: u32, total: u32 },
    /// This call wrote the merged result.
    Written,
    /// Another call had already written it.
    AlreadyWritten,
    /// Every page failed: the page error records are the document's outcome.
    AllPagesFailed,
}

/// Page indices present under a prefix of `page-NNNN.json` keys.
fn pages_under(keys: &[String], prefix: &str) -> Vec<u32> {
    keys.iter()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|name| name.strip_prefix("page-")?.strip_suffix(".json"))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Writes `results/<doc_id>.json` (and the other requested formats before it) if every
/// page of the document is accounted for. `source` is the upload's name below the inbox.
pub async fn complete_document(
    store: &dyn ObjectStore,
    doc_id: &str,
    source: &str,
    page_count: u32,
    policy: RetryPolicy,
    outputs: &Outputs,
) -> Result<Completion> {
    let merged_key = keys::document_result(doc_id);
    let results_prefix = keys::page_results_prefix(doc_id);
    let errors_prefix = keys::page_errors_prefix(doc_id);
    let listed = retry(policy, "list page results", || store.list(&results_prefix)).await?;
    let mut done = pages_under(&listed, &results_prefix);
    let failed = retry(policy, "list page errors", || store.list(&errors_prefix)).await?;
    let failed = pages_under(&failed, &errors_prefix);
    done.sort_unstable();
    let mut accounted: Vec<u32> = done.iter().chain(&failed).copied().collect();
    accounted.sort_unstable();
    accounted.dedup();
    let accounted = accounted.iter().filter(|&&p| p < page_count).count() as u32;
    if accounted < page_count {
        return Ok(Completion::Pending {
            done: accounted,
            total: page_count,
        });
    }
    match retry(policy, "head merged result", || store.head(&merged_key)).await {
        Ok(_) => return Ok(Completion::AlreadyWritten),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let mut pages = Vec::with_capacity(done.len());
    for index in done.into_iter().filter(|&p| p < page_count) {
        let key = keys::page_result(doc_id, index);
        let bytes = retry(policy, "get page result", || store.get(&key)).await?;
        pages.push(PageResult::from_json(&bytes).with_context(|| format!("page result {key}"))?);
    }
    if pages.is_empty() {
        return Ok(Completion::AllPagesFailed);
    }
    let mut merged = DocumentResult::merge(pages)?;
    if outputs.formats.archives().next().is_some() {
        let failed: Vec<u32> = failed.into_iter().filter(|p| *p < page_count).collect();
        merged.outputs = write_archives(store, &merged, &failed, source, policy, outputs).await?;
    }
    let body = merged.to_json()?;
    let created = retry(policy, "write merged result", || {
        store.put_if_absent(&merged_key, body.clone())
    })
    .await?;
    Ok(if created {
        Completion::Written
    } else {
        Completion::AlreadyWritten
    })
}

/// Makes and writes the requested formats; returns what became of each.
async fn write_archives(
    store: &dyn ObjectStore,
    merged: &DocumentResult,
    failed: &[u32],
    source: &str,
    policy: RetryPolicy,
    outputs: &Outputs,
) -> Result<Vec<OutputRecord>> {
    let doc_id = merged.doc_id.clone();
    let mut reasons = BTreeMap::new();
    for &page in failed {
        let key = keys::page_error(&doc_id, page);
        let reason = match retry(policy, "get page error", || store.get(&key)).await {
            Ok(bytes) => serde_json::from_slice::<ErrorRecord>(&bytes)
                .map(|r| format!("{}: {}", r.code, r.message))
                .unwrap_or_else(|e| format!("unreadable error record {key}: {e}")),
            Err(e) => format!("error record {key}: {e}"),
        };
        reasons.insert(page, reason);
    }
    let upload_key = keys::upload(&outputs.inbox_prefix, source);
    let upload = match retry(policy, "get upload", || store.get(&upload_key)).await {
        Ok(bytes) if keys::doc_id(&bytes) != doc_id => Err(format!(
            "the upload {upload_key} has changed since it was read (its SHA-256 is not the \
             document id)"
        )),
        Ok(bytes) => Ok(Arc::new(bytes)),
        Err(e) if e.is_not_found() => Err(format!("the upload {upload_key} no longer exists")),
        Err(e) => return Err(e.into()),
    };
    let (merged, outputs_cfg) = (merged.clone(), outputs.clone());
    let source = source.to_string();
    let archives = tokio::task::spawn_blocking(move || {
        let upload = match &upload {
            Ok(bytes) => match sniff(bytes) {
                Ok(kind) => Ok(Upload {
                    bytes,
                    kind,
                    isolation: &outputs_cfg.isolation,
                    limits: &outputs_cfg.limits,
                }),
                Err(e) => Err(format!("the upload cannot be read again: {e}")),
            },
            Err(e) => Err(e.clone()),
        };
        let model = merged
            .pages
            .first()
            .map(|p| p.model.id.as_str())
            .unwrap_or("?");
        let system = format!(
            "sphinx {} (SPHINX-X model {model})",
            env!("CARGO_PKG_VERSION")
        );
        sphinx_archive::make(&Request {
            result: &merged,
            failed_pages: &reasons,
            source_name: &source,
            upload,
            formats: &outputs_cfg.formats,
            system: &system,
        })
    })
    .await
    .context("the archive step panicked")?;
    for file in archives.files {
        let body = file.bytes;
        retry(policy, "write result file", || {
            store.put_if_absent(&file.key, body.clone())
        })
        .await
        .with_context(|| format!("cannot write {}", file.key))?;
    }
    for r in &archives.records {
        if let Some(reason) = &r.reason {
            tracing::warn!(doc_id, format = %r.format, reason, "result file not made");
        }
    }
    Ok(archives.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_indices_are_read_from_keys() {
        let keys = vec![
            "results/d/page-0000.json".to_string(),
            "results/d/page-0012.json".to_string(),
            "results/d/page-x.json".to_string(),
            "results/d/other.json".to_string(),
        ];
        assert_eq!(pages_under(&keys, "results/d/"), vec![0, 12]);
    }
}
