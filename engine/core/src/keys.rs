//! Object keys: the one place that decides where every artefact of a document lives.
//!
//! Keys derive only from `doc_id` (SHA-256 of the uploaded bytes) and the page index,
//! so a redelivered message rewrites the same objects instead of creating new ones.

/// Prefix under which the tiler writes page bundles and document manifests.
pub const WORK_PREFIX: &str = "work";
/// Prefix under which results are written by the worker.
pub const RESULTS_PREFIX: &str = "results";
/// Prefix under which a readable error record is written for a document that failed.
pub const ERRORS_PREFIX: &str = "errors";

/// `work/<doc_id>/manifest.json`: the document manifest, written after all its pages.
pub fn document_manifest(doc_id: &str) -> String {
    format!("{WORK_PREFIX}/{doc_id}/manifest.json")
}

/// `work/<doc_id>/page-NNNN.bundle`: one page's views and manifest in one object.
pub fn page_bundle(doc_id: &str, page_index: u32) -> String {
    format!("{WORK_PREFIX}/{doc_id}/page-{page_index:04}.bundle")
}

/// `errors/<doc_id>.json`: why a document could not be processed.
pub fn error_record(doc_id: &str) -> String {
    format!("{ERRORS_PREFIX}/{doc_id}.json")
}

/// `results/<doc_id>/page-NNNN.json`: one page's task results.
pub fn page_result(doc_id: &str, page_index: u32) -> String {
    format!("{RESULTS_PREFIX}/{doc_id}/page-{page_index:04}.json")
}

/// Where a page that can never be processed records why (the document's other pages
/// still get results; the merged result lists this page as missing).
pub fn page_error(doc_id: &str, page_index: u32) -> String {
    format!("{ERRORS_PREFIX}/{doc_id}/page-{page_index:04}.json")
}

/// `errors/jobs/<message id>.json`: why a queue message that names no page (it is not
/// a page job) was dropped. Characters other than ASCII letters, digits and `-` in the
/// id (SQS ids are UUIDs) become `_`.
pub fn job_error(message_id: &str) -> String {
    let safe: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{ERRORS_PREFIX}/jobs/{safe}.json")
}

/// Prefix of a document's page results (for listing which pages are done).
pub fn page_results_prefix(doc_id: &str) -> String {
    format!("{RESULTS_PREFIX}/{doc_id}/")
}

/// Prefix of a document's page error records.
pub fn page_errors_prefix(doc_id: &str) -> String {
    format!("{ERRORS_PREFIX}/{doc_id}/")
}

/// `results/<doc_id>.json`: the merged results of a whole document.
pub fn document_result(doc_id: &str) -> String {
    format!("{RESULTS_PREFIX}/{doc_id}.json")
}

/// `results/<doc_id>.<ext>`: one of a document's result files (`.json` is
/// [`document_result`]; `.txt`, `.hocr`, `.alto.xml`, `.pdf`).
pub fn document_output(doc_id: &str, format: crate::output::OutputFormat) -> String {
    format!("{RESULTS_PREFIX}/{doc_id}.{}", format.extension())
}

/// `<inbox prefix><source>`: where the upload a page job names was placed.
pub fn upload(inbox_prefix: &str, source: &str) -> String {
    format!("{inbox_prefix}{source}")
}

/// The document id: lowercase hex SHA-256 of the exact uploaded bytes.
pub fn doc_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// [`doc_id`] of a stream, for inputs too large to hold in memory (they still get an
/// error record under the id the same bytes would have had).
pub fn doc_id_of_reader(mut reader: impl std::io::Read) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_from_doc_id_and_page() {
        let id = doc_id(b"abc");
        assert_eq!(
            id,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(page_bundle(&id, 7), format!("work/{id}/page-0007.bundle"));
        assert_eq!(document_manifest(&id), format!("work/{id}/manifest.json"));
        assert_eq!(error_record(&id), format!("errors/{id}.json"));
        assert_eq!(doc_id_of_reader(&b"abc"[..]).unwrap(), id);
        assert_eq!(page_result(&id, 12), format!("results/{id}/page-0012.json"));
        assert_eq!(page_error(&id, 3), format!("errors/{id}/page-0003.json"));
        assert!(page_result(&id, 3).starts_with(&page_results_prefix(&id)));
        assert!(page_error(&id, 3).starts_with(&page_errors_prefix(&id)));
        use crate::output::OutputFormat;
        assert_eq!(
            document_output(&id, OutputFormat::Json),
            document_result(&id)
        );
        assert_eq!(
            document_output(&id, OutputFormat::Alto),
            format!("results/{id}.alto.xml")
        );
        assert_eq!(upload("inbox/", "a/b.pdf"), "inbox/a/b.pdf");
        assert_eq!(job_error("ab-12/x.y"), "errors/jobs/ab-12_x_y.json");
    }
}
