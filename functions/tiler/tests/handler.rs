//! The handler over a local store and in-memory queues (no AWS): layout, request
//! counts, idempotency, continuations, invalid input and transient faults.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sphinx_core::keys;
use sphinx_core::ErrorRecord;
use sphinx_core::{LocalStore, ObjectStore};
use sphinx_core::{MemoryQueue, Queue};
use sphinx_core::{PageJob, Task};
use sphinx_tiler::handler::Tiler;
use tokio::time::Instant;

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

struct Rig {
    _dir: tempfile::TempDir,
    local: Arc<LocalStore>,
    infer: Arc<MemoryQueue>,
    ingest: Arc<MemoryQueue>,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Rig {
            local: Arc::new(LocalStore::new(dir.path().join("bucket")).unwrap()),
            _dir: dir,
            infer: Arc::new(MemoryQueue::new()),
            ingest: Arc::new(MemoryQueue::new()),
        }
    }

    fn tiler(&self, store: Arc<dyn ObjectStore>, extra: &[(&str, &str)]) -> Tiler {
        Tiler::new(
            store,
            self.infer.clone(),
            self.ingest.clone(),
            config(extra),
        )
    }

    fn jobs(&self) -> Vec<PageJob> {
        self.infer
            .bodies()
            .iter()
            .map(|b| PageJob::from_json(b).unwrap())
            .collect()
    }
}

async fn invoke(tiler: &Tiler, payload: serde_json::Value) -> serde_json::Value {
    sphinx_tiler::invoke(tiler, payload, far_deadline())
        .await
        .unwrap()
}

#[tokio::test]
async fn mixed_batch_tiles_like_sphinx_tile_and_enqueues_one_job_per_page() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    let counting = Arc::new(CountingStore::new(rig.local.clone()));
    let tiler = rig.tiler(counting.clone(), &[]);

    let response = invoke(&tiler, event("sqs-batch-mixed.json")).await;
    assert_eq!(
        failed_ids(&response),
        Vec::<String>::new(),
        "no record may fail: {response}"
    );

    // Same objects as the local pipeline (what `sphinx tile` runs) on the same files.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = LocalStore::new(reference_dir.path()).unwrap();
    let pdf_id = tile_locally(fixture(PDF), PDF, &reference);
    let jpeg_id = tile_locally(fixture(JPEG), JPEG, &reference);
    for id in [&pdf_id, &jpeg_id] {
        let prefix = format!("work/{id}/");
        let expected = snapshot(&reference, &prefix).await;
        assert!(!expected.is_empty());
        assert_eq!(
            snapshot(rig.local.as_ref(), &prefix).await,
            expected,
            "{prefix}"
        );
    }

    // One job per good page, with the tasks each upload asked for.
    let jobs = rig.jobs();
    assert_eq!(jobs.len(), PDF_PAGES + 1);
    let pdf_jobs: Vec<_> = jobs.iter().filter(|j| j.doc_id == pdf_id).collect();
    assert_eq!(pdf_jobs.len(), PDF_PAGES);
    for (i, job) in pdf_jobs.iter().enumerate() {
        assert_eq!(
            (job.page_index as usize, job.page_count as usize),
            (i, PDF_PAGES)
        );
        assert_eq!(job.source, PDF);
        assert_eq!(job.bundle_key, keys::page_bundle(&pdf_id, i as u32));
        assert!(rig.local.head(&job.bundle_key).await.is_ok());
        assert_eq!(
            job.tasks[1],
            Task::Grounding {
                query: "the yellow box, top right".into()
            }
        );
    }
    let jpeg_job = jobs.iter().find(|j| j.doc_id == jpeg_id).unwrap();
    assert_eq!(
        jpeg_job.tasks,
        sphinx_core::job::parse_tasks("ocr,caption").unwrap()
    );

    // The corrupt file has a readable error record and no work objects.
    let bad_id = keys::doc_id(&fixture(CORRUPT));
    let record: ErrorRecord =
        serde_json::from_slice(&rig.local.get(&keys::error_record(&bad_id)).await.unwrap())
            .unwrap();
    assert_eq!(
        (record.doc_id.as_str(), record.source.as_str()),
        (bad_id.as_str(), CORRUPT)
    );
    assert!(!record.code.as_str().is_empty() && !record.message.is_empty());
    assert!(rig
        .local
        .list(&format!("work/{bad_id}/"))
        .await
        .unwrap()
        .is_empty());

    // S3 requests: exactly one write per page; the rest is a constant per document.
    let pages = PDF_PAGES + 1;
    assert_eq!(
        counting.get_count("put"),
        pages + 1,
        "one bundle per page + one error record"
    );
    assert_eq!(
        counting.get_count("put_if_absent"),
        2,
        "one manifest per good document"
    );
    assert_eq!(counting.get_count("list") + counting.get_count("delete"), 0);
    // Per upload: head + get of the upload, a head of the manifest, and unless metadata
    // decided a head of the sidecar (PDF: found, then read; corrupt file: absent).
    assert_eq!(
        counting.get_count("get"),
        3 + 1,
        "{:?}",
        counting.counts.lock().unwrap()
    );
    assert_eq!(counting.get_count("head"), 3 * 2 + 2);

    // A redelivered batch rewrites nothing new and sends no second set of jobs.
    let before = snapshot(rig.local.as_ref(), "").await;
    counting.reset();
    let again = invoke(&tiler, event("sqs-batch-mixed.json")).await;
    assert_eq!(failed_ids(&again), Vec::<String>::new());
    assert_eq!(rig.infer.len(), PDF_PAGES + 1);
    assert_eq!(snapshot(rig.local.as_ref(), "").await, before);
    assert_eq!(
        counting.get_count("put"),
        1,
        "only the corrupt file's error record is rewritten"
    );
}

#[tokio::test]
async fn long_documents_continue_on_the_ingest_queue() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    let tiler = rig.tiler(rig.local.clone(), &[("SPHINX_PAGES_PER_INVOCATION", "3")]);
    let pdf_id = keys::doc_id(&fixture(PDF));

    let response = invoke(&tiler, event("sqs-s3-put.json")).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(
        rig.local
            .list(&format!("work/{pdf_id}/"))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        rig.local
            .head(&keys::document_manifest(&pdf_id))
            .await
            .is_err(),
        "not complete yet"
    );
    assert!(rig.infer.is_empty());

    let continuation = rig
        .ingest
        .receive(10, Duration::ZERO, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(continuation.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&continuation[0].body).unwrap();
    assert_eq!(
        (body["start"].as_u64(), body["end"].as_u64()),
        (Some(3), Some(PDF_PAGES as u64))
    );

    let response = invoke(&tiler, sqs_event(&[continuation[0].body.clone()])).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    rig.ingest.delete(&continuation[0].receipt).await.unwrap();
    assert!(rig.ingest.is_empty(), "no further continuation");
    assert_eq!(rig.jobs().len(), PDF_PAGES);

    // Identical to tiling the whole document in one go.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = LocalStore::new(reference_dir.path()).unwrap();
    tile_locally(fixture(PDF), PDF, &reference);
    let prefix = format!("work/{pdf_id}/");
    assert_eq!(
        snapshot(rig.local.as_ref(), &prefix).await,
        snapshot(&reference, &prefix).await
    );
}

#[tokio::test]
async fn store_outage_fails_records_without_marking_anything_complete() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    let flaky = Arc::new(FlakyStore {
        inner: rig.local.clone(),
        down: true.into(),
    });
    let tiler = rig.tiler(flaky.clone(), &[("SPHINX_RETRY_ATTEMPTS", "2")]);

    let response = invoke(&tiler, event("sqs-batch-mixed.json")).await;
    let mut failed = failed_ids(&response);
    failed.sort();
    let ids: Vec<String> = event("sqs-batch-mixed.json")["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap().to_string())
        .collect();
    // PDF, JPEG and the corrupt file (its error record could not be written); the
    // S3 test event needs no write and is acknowledged.
    assert_eq!(failed, ids[..3].to_vec());
    assert!(rig.local.list("work/").await.unwrap().is_empty());
    assert!(rig.local.list("errors/").await.unwrap().is_empty());
    assert!(rig.infer.is_empty());

    flaky.down.store(false, Ordering::SeqCst);
    let response = invoke(&tiler, event("sqs-batch-mixed.json")).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(rig.infer.len(), PDF_PAGES + 1);
    assert_eq!(rig.local.list("errors/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn failed_job_send_withdraws_the_manifest_so_a_retry_enqueues() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    let infer = Arc::new(FlakyQueue {
        inner: rig.infer.clone(),
        down: true.into(),
    });
    let tiler = Tiler::new(
        rig.local.clone(),
        infer.clone(),
        rig.ingest.clone(),
        config(&[]),
    );
    let pdf_id = keys::doc_id(&fixture(PDF));

    let response = invoke(&tiler, event("sqs-s3-put.json")).await;
    assert_eq!(failed_ids(&response).len(), 1);
    assert!(rig
        .local
        .head(&keys::document_manifest(&pdf_id))
        .await
        .is_err());

    infer.down.store(false, Ordering::SeqCst);
    let response = invoke(&tiler, event("sqs-s3-put.json")).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(rig.jobs().len(), PDF_PAGES);
    assert!(rig
        .local
        .head(&keys::document_manifest(&pdf_id))
        .await
        .is_ok());
}

#[tokio::test]
async fn invalid_task_settings_are_recorded_not_retried() {
    let rig = Rig::new();
    let mut meta = sphinx_core::store::Metadata::new();
    meta.insert("sphinx-tasks".into(), "ocr,summarize".into());
    rig.local
        .put_with_metadata("inbox/photo.jpg", fixture(JPEG), &meta)
        .await
        .unwrap();
    let tiler = rig.tiler(rig.local.clone(), &[]);
    let body = event("sqs-batch-mixed.json")["Records"][1]["body"]
        .as_str()
        .unwrap()
        .to_string();
    let response = invoke(&tiler, sqs_event(&[body])).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let id = keys::doc_id(&fixture(JPEG));
    let record: ErrorRecord =
        serde_json::from_slice(&rig.local.get(&keys::error_record(&id)).await.unwrap()).unwrap();
    assert_eq!(record.code, "invalid_tasks");
    assert!(record.message.contains("summarize"), "{}", record.message);
    assert!(rig.infer.is_empty());
}

#[tokio::test]
async fn several_records_per_body_and_plain_s3_events_are_accepted() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    let tiler = rig.tiler(rig.local.clone(), &[]);
    let mixed = event("sqs-batch-mixed.json");
    let record = |i: usize| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(mixed["Records"][i]["body"].as_str().unwrap())
            .unwrap()["Records"][0]
            .clone()
    };
    let two = serde_json::json!({ "Records": [record(1), record(2)] }).to_string();
    let response = invoke(&tiler, sqs_event(&[two])).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(rig.infer.len(), 1, "the JPEG's page");
    assert_eq!(
        rig.local.list("errors/").await.unwrap().len(),
        1,
        "the corrupt file"
    );

    // A plain S3 event (direct trigger) with the URL-encoded key `report+scan.pdf`.
    let out = sphinx_tiler::invoke(&tiler, event("s3-put.json"), far_deadline())
        .await
        .unwrap();
    assert!(
        out["outcomes"][0].as_str().unwrap().starts_with("Enqueued"),
        "{out}"
    );
    assert_eq!(rig.infer.len(), 1 + PDF_PAGES);
}

#[tokio::test]
async fn uploads_that_are_not_documents_are_acknowledged() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    rig.local
        .put("work/elsewhere.pdf", fixture(PDF))
        .await
        .unwrap();
    let tiler = rig.tiler(rig.local.clone(), &[]);
    let s3_event = |key: &str, bucket: &str| {
        serde_json::json!({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}
        }]})
        .to_string()
    };
    let bodies = vec![
        s3_event("inbox/report+scan.pdf.job.json", BUCKET),
        s3_event("work/elsewhere.pdf", BUCKET),
        s3_event("inbox/deleted.pdf", BUCKET),
        event("s3-test-event.json")["Records"][0]["body"]
            .as_str()
            .unwrap()
            .to_string(),
        s3_event("inbox/photo.jpg", "another-bucket"),
        "not json at all".to_string(),
    ];
    let response = invoke(&tiler, sqs_event(&bodies)).await;
    // Ignored: sidecar, key outside inbox/, deleted object, S3 test event.
    // Retried (and then dead-lettered): a bucket this tiler does not serve, garbage.
    assert_eq!(
        failed_ids(&response),
        vec!["m4".to_string(), "m5".to_string()]
    );
    assert!(rig.infer.is_empty());
    assert!(rig.local.list("work/").await.unwrap() == vec!["work/elsewhere.pdf".to_string()]);
}

#[tokio::test]
async fn no_time_left_means_retry_later_with_nothing_written() {
    let rig = Rig::new();
    upload_fixtures(rig.local.as_ref()).await;
    let tiler = rig.tiler(rig.local.clone(), &[("SPHINX_TIME_RESERVE_S", "30")]);
    let soon = Instant::now() + Duration::from_secs(5);
    let response = sphinx_tiler::invoke(&tiler, event("sqs-s3-put.json"), soon)
        .await
        .unwrap();
    assert_eq!(failed_ids(&response).len(), 1);
    assert!(rig.local.list("work/").await.unwrap().is_empty());
    assert!(rig.infer.is_empty() && rig.ingest.is_empty());
}

#[tokio::test]
async fn an_upload_over_the_byte_limit_is_recorded_without_being_read_whole() {
    let rig = Rig::new();
    let bytes = fixture(JPEG);
    rig.local
        .put("inbox/photo.jpg", bytes.clone())
        .await
        .unwrap();
    let limit = (bytes.len() / 2).to_string();
    let counting = Arc::new(CountingStore::new(rig.local.clone()));
    let tiler = rig.tiler(counting.clone(), &[("SPHINX_MAX_BYTES", &limit)]);
    let body = event("sqs-batch-mixed.json")["Records"][1]["body"]
        .as_str()
        .unwrap()
        .to_string();
    let response = invoke(&tiler, sqs_event(&[body])).await;
    assert_eq!(
        failed_ids(&response),
        Vec::<String>::new(),
        "recorded, not retried"
    );
    // Its id is the hash of its bytes, as for any upload, though nothing read them whole.
    let id = keys::doc_id(&bytes);
    let record: ErrorRecord =
        serde_json::from_slice(&rig.local.get(&keys::error_record(&id)).await.unwrap()).unwrap();
    assert_eq!(record.code, "too_large");
    assert!(record.message.contains(&limit), "{}", record.message);
    assert_eq!(counting.get_count("get"), 0, "{:?}", counting.counts);
    assert_eq!(counting.get_count("sha256"), 1, "{:?}", counting.counts);
    assert!(rig.infer.is_empty());
}

#[tokio::test]
async fn an_oversized_sidecar_is_recorded_without_being_read() {
    let rig = Rig::new();
    rig.local
        .put("inbox/photo.jpg", fixture(JPEG))
        .await
        .unwrap();
    let huge = vec![b' '; sphinx_core::ingest::MAX_SIDECAR_BYTES as usize + 1];
    rig.local
        .put("inbox/photo.jpg.job.json", huge)
        .await
        .unwrap();
    let counting = Arc::new(CountingStore::new(rig.local.clone()));
    let tiler = rig.tiler(counting.clone(), &[]);
    let body = event("sqs-batch-mixed.json")["Records"][1]["body"]
        .as_str()
        .unwrap()
        .to_string();
    let response = invoke(&tiler, sqs_event(&[body])).await;
    assert_eq!(
        failed_ids(&response),
        Vec::<String>::new(),
        "recorded, not retried"
    );
    let id = keys::doc_id(&fixture(JPEG));
    let record: ErrorRecord =
        serde_json::from_slice(&rig.local.get(&keys::error_record(&id)).await.unwrap()).unwrap();
    assert_eq!(record.code, "invalid_tasks");
    assert!(
        record
            .message
            .contains("photo.jpg.job.json is 262145 bytes"),
        "{}",
        record.message
    );
    // The upload itself is read (its id); the sidecar never is.
    assert_eq!(counting.get_count("get"), 1, "{:?}", counting.counts);
    assert!(rig.infer.is_empty());
}
