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
use sphinx_core::DocumentManifest;
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
    merged.source = Some(source.to_string());
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
    let upload = read_upload(store, &upload_key, &doc_id, policy).await?;
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

/// The original upload of `doc_id` (for the searchable PDF), or why it cannot be had.
/// Its size is checked against the manifest before it is read: an upload replaced since
/// by a larger object (of any size) is never read whole.
async fn read_upload(
    store: &dyn ObjectStore,
    key: &str,
    doc_id: &str,
    policy: RetryPolicy,
) -> Result<Result<Arc<Vec<u8>>, String>> {
    let gone = || format!("the upload {key} no longer exists");
    let changed = |how: String| format!("the upload {key} has changed since it was read ({how})");
    let manifest_key = keys::document_manifest(doc_id);
    let manifest = retry(policy, "get manifest", || store.get(&manifest_key)).await?;
    let was = DocumentManifest::from_json(&manifest)
        .with_context(|| format!("document manifest {manifest_key}"))?
        .source
        .bytes;
    match retry(policy, "head upload", || store.head(key)).await {
        Ok(info) if info.size != was => {
            return Ok(Err(changed(format!("{} bytes, not {was}", info.size))))
        }
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(Err(gone())),
        Err(e) => return Err(e.into()),
    }
    Ok(match retry(policy, "get upload", || store.get(key)).await {
        Ok(bytes) if keys::doc_id(&bytes) != doc_id => {
            Err(changed("its SHA-256 is not the document id".to_string()))
        }
        Ok(bytes) => Ok(Arc::new(bytes)),
        Err(e) if e.is_not_found() => Err(gone()),
        Err(e) => return Err(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use sphinx_core::boxes::PageFrame;
    use sphinx_core::result::{ModelInfo, StopReason, TaskResult};
    use sphinx_core::{IngestConfig, Ingestor, LocalStore, PageBundle, Task, TileOptions};

    const UPLOAD: &str = "inbox/palette.png";

    /// A one-page image document in a fresh store, tiled, with a page result: ready to
    /// complete. Returns the store (in its folder) and the document id.
    async fn tiled_document_with_a_result() -> (tempfile::TempDir, Arc<LocalStore>, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(dir.path()).unwrap());
        let png = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/data/formats/palette.png"),
        )
        .unwrap();
        store.put(UPLOAD, png.clone()).await.unwrap();
        let tile = TileOptions {
            tile: Default::default(),
            limits: Limits::default(),
            isolation: Isolation::InProcess,
        };
        let config = IngestConfig::local("local", vec![Task::Ocr], tile);
        Ingestor::new(store.clone(), None, None, config)
            .ingest_upload(UPLOAD, sphinx_core::ingest::far_deadline())
            .await
            .unwrap();
        let doc_id = keys::doc_id(&png);
        let bundle = store.get(&keys::page_bundle(&doc_id, 0)).await.unwrap();
        let frame =
            PageFrame::from_manifest(&PageBundle::decode(bundle).unwrap().manifest).unwrap();
        let task = TaskResult::from_answer(
            Task::Ocr,
            "read".into(),
            "Hello".into(),
            &frame,
            StopReason::Eos,
            Default::default(),
            Default::default(),
        );
        let model = ModelInfo { id: "m".into() };
        let page = PageResult::new(doc_id.clone(), 0, 1, model, frame, vec![task]);
        store
            .put(&keys::page_result(&doc_id, 0), page.to_json().unwrap())
            .await
            .unwrap();
        (dir, store, doc_id)
    }

    /// Completes the document with a searchable PDF asked for; what became of the PDF.
    async fn pdf_outcome(store: &LocalStore, doc_id: &str) -> OutputRecord {
        let outputs = Outputs {
            formats: "pdf".parse().unwrap(),
            isolation: Isolation::InProcess,
            ..Outputs::default()
        };
        let policy = RetryPolicy {
            attempts: 1,
            base: std::time::Duration::from_millis(1),
        };
        let done = complete_document(store, doc_id, "palette.png", 1, policy, &outputs)
            .await
            .unwrap();
        assert_eq!(done, Completion::Written);
        let merged = store.get(&keys::document_result(doc_id)).await.unwrap();
        let merged = DocumentResult::from_json(&merged).unwrap();
        assert_eq!(merged.source.as_deref(), Some("palette.png"));
        merged.outputs.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn the_pdf_is_made_from_the_upload_the_tiler_read_and_no_other() {
        // Untouched: the PDF is made.
        let (_dir, store, doc_id) = tiled_document_with_a_result().await;
        let made = pdf_outcome(&store, &doc_id).await;
        assert!(made.key.is_some() && made.reason.is_none(), "{made:?}");

        // Replaced by a larger object: refused from its size, before any of it is read.
        let (_dir, store, doc_id) = tiled_document_with_a_result().await;
        let was = store.head(UPLOAD).await.unwrap().size;
        store
            .put(UPLOAD, vec![7u8; 3 * was as usize])
            .await
            .unwrap();
        let reason = pdf_outcome(&store, &doc_id).await.reason.unwrap();
        assert!(
            reason.contains(&format!(
                "changed since it was read ({} bytes, not {was})",
                3 * was
            )),
            "{reason}"
        );

        // Replaced by as many other bytes: refused from their hash.
        let (_dir, store, doc_id) = tiled_document_with_a_result().await;
        store.put(UPLOAD, vec![7u8; was as usize]).await.unwrap();
        let reason = pdf_outcome(&store, &doc_id).await.reason.unwrap();
        assert!(
            reason.contains("its SHA-256 is not the document id"),
            "{reason}"
        );

        // Deleted.
        let (_dir, store, doc_id) = tiled_document_with_a_result().await;
        store.delete(UPLOAD).await.unwrap();
        let reason = pdf_outcome(&store, &doc_id).await.reason.unwrap();
        assert!(reason.contains("no longer exists"), "{reason}");
    }

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
