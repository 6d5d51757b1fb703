//! A document is complete when every page has a result or a page error record; then
//! its merged `results/<doc_id>.json` is written exactly once, by whichever worker
//! finishes the last page first (a conditional create decides the race).

use anyhow::{Context, Result};
use sphinx_core::keys;
use sphinx_core::result::{DocumentResult, PageResult};
use sphinx_core::retry::{retry, RetryPolicy};
use sphinx_core::store::ObjectStore;

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

/// Writes `results/<doc_id>.json` if every page of the document is accounted for.
pub async fn complete_document(
    store: &dyn ObjectStore,
    doc_id: &str,
    page_count: u32,
    policy: RetryPolicy,
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
    let merged = DocumentResult::merge(pages)?;
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
