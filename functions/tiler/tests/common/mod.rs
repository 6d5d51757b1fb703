//! Shared pieces of the tiler tests: fixture documents, settings, and store/queue
//! wrappers that count requests or inject faults.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sphinx_core::keys;
use sphinx_core::pipeline::{self, TileOptions};
use sphinx_core::queue::{Message, Queue, QueueError};
use sphinx_core::store::{LocalStore, Metadata, ObjectInfo, ObjectStore, StoreError};
use sphinx_tiler::config::Config;

/// The generator that writes the input documents.
pub const GENERATOR: &str = ".venv/bin/python scripts/gen_tiler_fixtures.py";
/// Bucket named in events/*.json.
pub const BUCKET: &str = "sphinx-local";
/// Documents in the mixed batch (events/sqs-batch-mixed.json), by file name.
pub const PDF: &str = "report scan.pdf";
pub const JPEG: &str = "photo.jpg";
pub const CORRUPT: &str = "corrupt.pdf";
/// Pages of the fixture PDF (scripts/gen_tiler_fixtures.py, PAGE_SIZES).
pub const PDF_PAGES: usize = 4;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture_dir() -> PathBuf {
    workspace().join("target/fixtures/tiler/inbox")
}

/// Bytes of a fixture document; fails naming the generator when it was not run.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "missing fixture {} ({e}); generate it with `{GENERATOR}` from the workspace root",
            path.display()
        )
    })
}

pub fn event(name: &str) -> serde_json::Value {
    let path = workspace().join("events").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Settings as the Lambda would read them, plus `extra` variables.
pub fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("SPHINX_BUCKET", BUCKET),
        ("SPHINX_INFER_QUEUE_URL", "memory://infer"),
        ("SPHINX_INGEST_QUEUE_URL", "memory://ingest"),
        ("SPHINX_RETRY_BASE_MS", "1"),
        // This harness is no render child: documents render in tiler child processes.
        ("SPHINX_RENDER_PROGRAM", env!("CARGO_BIN_EXE_sphinx-tiler")),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_vars(&vars).unwrap()
}

/// Uploads the three fixture documents under inbox/: the PDF with a sidecar, the
/// JPEG with task metadata, the corrupt file with neither (stack default).
pub async fn upload_fixtures(store: &dyn ObjectStore) {
    let sidecar = br#"{"schema_version":1,"tasks":[{"task":"caption","detail":"short"},{"task":"grounding","query":"the yellow box, top right"}]}"#;
    store
        .put(&format!("inbox/{PDF}.job.json"), sidecar.to_vec())
        .await
        .unwrap();
    store
        .put(&format!("inbox/{PDF}"), fixture(PDF))
        .await
        .unwrap();
    let mut meta = Metadata::new();
    meta.insert("sphinx-tasks".into(), "ocr,caption".into());
    store
        .put_with_metadata(&format!("inbox/{JPEG}"), fixture(JPEG), &meta)
        .await
        .unwrap();
    store
        .put(&format!("inbox/{CORRUPT}"), fixture(CORRUPT))
        .await
        .unwrap();
}

/// What `sphinx tile` writes for one document: the same pipeline into a LocalStore.
pub fn tile_locally(bytes: Vec<u8>, source: &str, store: &LocalStore) -> String {
    let doc_id = keys::doc_id(&bytes);
    let mut sink = |page: pipeline::PageOutput| -> anyhow::Result<()> {
        store.put_blocking(&page.key, &page.bundle)?;
        Ok(())
    };
    let manifest = pipeline::tile_document(
        Arc::new(bytes),
        source,
        &TileOptions::default(),
        None,
        &mut sink,
    )
    .unwrap();
    store
        .put_blocking(&keys::document_manifest(&doc_id), &manifest.to_json())
        .unwrap();
    doc_id
}

/// Every object under `prefix`, key -> bytes.
pub async fn snapshot(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for key in store.list(prefix).await.unwrap() {
        let body = store.get(&key).await.unwrap();
        out.insert(key, body);
    }
    out
}

/// Counts requests per operation, passing them to the wrapped store.
pub struct CountingStore {
    pub inner: Arc<dyn ObjectStore>,
    pub counts: Mutex<BTreeMap<&'static str, usize>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore {
            inner,
            counts: Mutex::default(),
        }
    }
    fn count(&self, op: &'static str) {
        *self.counts.lock().unwrap().entry(op).or_default() += 1;
    }
    pub fn get_count(&self, op: &str) -> usize {
        self.counts.lock().unwrap().get(op).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap().values().sum()
    }
    pub fn reset(&self) {
        self.counts.lock().unwrap().clear();
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Vec<u8>,
        m: &Metadata,
    ) -> Result<(), StoreError> {
        self.count("put");
        self.inner.put_with_metadata(key, body, m).await
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        self.count("put_if_absent");
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.count("get");
        self.inner.get(key).await
    }
    async fn sha256(&self, key: &str) -> Result<String, StoreError> {
        self.count("sha256");
        self.inner.sha256(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.count("head");
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.count("list");
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count("delete");
        self.inner.delete(key).await
    }
}

/// Refuses every write with a transient error while `down` is set (an S3 outage as
/// the tiler sees it after the SDK's own retries); reads pass through.
pub struct FlakyStore {
    pub inner: Arc<dyn ObjectStore>,
    pub down: AtomicBool,
}

impl FlakyStore {
    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Transient {
                op,
                key: key.to_string(),
                message: "503 Service Unavailable (injected)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Vec<u8>,
        m: &Metadata,
    ) -> Result<(), StoreError> {
        self.check("put", key)?;
        self.inner.put_with_metadata(key, body, m).await
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        self.check("put_if_absent", key)?;
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.inner.get(key).await
    }
    async fn sha256(&self, key: &str) -> Result<String, StoreError> {
        self.inner.sha256(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }
}

/// A queue whose sends fail (transiently) while `down` is set.
pub struct FlakyQueue {
    pub inner: Arc<dyn Queue>,
    pub down: AtomicBool,
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::PartialSend {
                failed: bodies.len(),
                total: bodies.len(),
                message: "ServiceUnavailable (injected)".into(),
                transient: true,
            });
        }
        self.inner.send_batch(bodies).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        vis: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        self.inner.receive(max, wait, vis).await
    }
    async fn change_visibility(&self, receipt: &str, vis: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(receipt, vis).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
}

/// An SQS event carrying `bodies`, one message each, with ids `m0`, `m1`...
pub fn sqs_event(bodies: &[String]) -> serde_json::Value {
    let records: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            serde_json::json!({
                "messageId": format!("m{i}"),
                "receiptHandle": format!("r{i}"),
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:sphinx-ingest",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Message ids listed in a `batchItemFailures` response.
pub fn failed_ids(response: &serde_json::Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("an SQS batch response")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}
