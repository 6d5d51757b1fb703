//! End to end through the real Lambda runtime API: `cargo lambda watch` (emulator)
//! serves the built `sphinx-tiler` binary, `cargo lambda invoke` drives it with
//! events/*.json, and moto_server (scripts/local-aws.sh) plays S3 and SQS.
//!
//! The function reaches moto through a small TCP proxy in this test, which the test
//! closes to simulate an S3/SQS outage. Objects are compared byte for byte with what
//! the `sphinx tile` binary writes for the same files.
//!
//! Needs: `.venv` (moto, cargo-lambda; scripts/setup.sh), the fixtures
//! (`.venv/bin/python scripts/gen_tiler_fixtures.py`) and `target/debug/sphinx`
//! (`cargo build -p sphinx-worker`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sphinx_core::keys;
use sphinx_core::store::{LocalStore, ObjectStore, S3Store};
use sphinx_core::PageJob;
use sphinx_core::{MemoryQueue, Queue, SqsQueue};
use sphinx_tiler::event::ObjectRef;
use sphinx_tiler::handler::Tiler;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest wait for a child service (moto, the emulator, the function) to come up.
const STARTUP: Duration = Duration::from_secs(60);
/// Longest wait for one `cargo lambda invoke` (tiling 5 pages in a debug build).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(240);
/// Visibility timeout when the test reads the infer queue: long enough that the
/// jobs it has seen stay invisible for the rest of the test.
const PEEK_VISIBILITY: Duration = Duration::from_secs(600);
/// Name the emulator gives a function started with --only-lambda-apis.
const FUNCTION_NAME: &str = "_";

/// Kills a child process when the test ends, however it ends.
struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("stopping the {}: {e}", self.1);
        }
        let _ = self.0.wait();
    }
}

/// Kills a process we only know by id (moto, started in the background by the script).
struct PidGuard(u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require(path: &Path, how: &str) -> PathBuf {
    assert!(path.exists(), "{} is missing: {how}", path.display());
    path.to_path_buf()
}

/// Starts moto via scripts/local-aws.sh and returns its settings.
fn local_aws(port: u16) -> (HashMap<String, String>, PidGuard) {
    let out = Command::new(workspace().join("scripts/local-aws.sh"))
        .arg(port.to_string())
        .output()
        .expect("run scripts/local-aws.sh");
    assert!(
        out.status.success(),
        "scripts/local-aws.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vars: HashMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let pid = vars["LOCAL_AWS_PID"].parse().unwrap();
    (vars, PidGuard(pid))
}

/// A TCP proxy to `target` that can refuse service: while `open` is false it drops
/// new connections at once and cuts the ones in flight (an endpoint that is down).
async fn fault_proxy(target: u16) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let mut rx = rx.clone();
            if !*rx.borrow() {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = rx.wait_for(|open| !*open) => {}
                }
            });
        }
    });
    (port, tx)
}

/// Waits until a line containing `needle` appears in the file at `log`.
fn wait_for_log(log: &Path, needle: &str, child: &mut Child) {
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(needle)
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "process exited ({status}) before logging {needle:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < STARTUP,
            "no {needle:?} in {} after {STARTUP:?}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cargo lambda invoke` with an event file; returns the function's JSON response.
fn invoke(cargo_lambda: &Path, port: u16, event_file: &str) -> serde_json::Value {
    let mut child = Command::new(cargo_lambda)
        .args([
            "lambda",
            "invoke",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
        ])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(workspace().join("events").join(event_file))
        .args(["--output-format", "json", FUNCTION_NAME])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo lambda invoke");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > INVOKE_TIMEOUT {
            let _ = child.kill();
            panic!("cargo lambda invoke {event_file} took over {INVOKE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cargo lambda invoke {event_file} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "response is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Receives every visible job from the infer queue (they then stay invisible).
async fn drain_jobs(queue: &SqsQueue) -> Vec<PageJob> {
    let mut jobs = Vec::new();
    loop {
        let batch = queue
            .receive(10, Duration::from_secs(1), PEEK_VISIBILITY)
            .await
            .unwrap();
        if batch.is_empty() {
            return jobs;
        }
        jobs.extend(batch.iter().map(|m| PageJob::from_json(&m.body).unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_end_to_end_against_local_s3_and_sqs() {
    let venv = workspace().join(".venv/bin");
    let cargo_lambda = require(&venv.join("cargo-lambda"), "run scripts/setup.sh");
    require(&venv.join("moto_server"), "run scripts/setup.sh");
    let sphinx = require(
        &workspace().join("target/debug/sphinx"),
        "build it with `cargo build -p sphinx-worker`",
    );
    // `sphinx serve` runs in the engine beside it.
    require(
        &workspace().join("target/debug/sphinx-engine"),
        "build it with `cargo build -p sphinx-worker`",
    );
    let inbox = fixture_dir();
    for name in [PDF, JPEG, CORRUPT] {
        fixture(name);
    }
    // Logs stay in target/ for a look after a failure.
    let log_dir = workspace().join("target/e2e-tiler-logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    struct Logs(PathBuf);
    impl Logs {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    let logs = Logs(log_dir);

    // Local S3 + SQS, and the proxy the function talks to.
    let (aws, _moto) = local_aws(free_port());
    let moto_port: u16 = aws["AWS_ENDPOINT_URL"]
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (proxy_port, proxy_open) = fault_proxy(moto_port).await;

    // The emulator's runtime API, and the function binary serving it.
    let invoke_port = free_port();
    let emulator_log = logs.path().join("emulator.log");
    let mut emulator = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
        ])
        .arg(invoke_port.to_string())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::fs::File::create(&emulator_log).unwrap())
        .stderr(std::fs::File::create(logs.path().join("emulator.err")).unwrap())
        .spawn()
        .expect("start cargo lambda watch");
    wait_for_log(&emulator_log, "starting Runtime server", &mut emulator);
    let _emulator = Guard(emulator, "emulator");

    let function_log = logs.path().join("function.log");
    let mut function = Command::new(env!("CARGO_BIN_EXE_sphinx-tiler"));
    function
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{invoke_port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{proxy_port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        // Fail fast while the endpoint is down: 2 SDK attempts x 2 handler attempts.
        .env("AWS_MAX_ATTEMPTS", "2")
        .env("SPHINX_RETRY_ATTEMPTS", "2")
        .env("SPHINX_RETRY_BASE_MS", "50")
        .env("SPHINX_TASKS", "ocr")
        // The emulator's invocation deadline is short; keep little of it in reserve.
        .env("SPHINX_TIME_RESERVE_S", "1")
        .env("RUST_LOG", "info");
    for key in [
        "SPHINX_BUCKET",
        "SPHINX_INGEST_QUEUE_URL",
        "SPHINX_INFER_QUEUE_URL",
        "SPHINX_S3_FORCE_PATH_STYLE",
    ] {
        function.env(key, &aws[key]);
    }
    let mut function = function
        .stdout(std::fs::File::create(&function_log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the sphinx-tiler binary");
    wait_for_log(&function_log, "initialized", &mut function);
    let _function = Guard(function, "function");
    let init_line = BufReader::new(std::fs::File::open(&function_log).unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("initialized"))
        .unwrap();
    eprintln!("function init: {init_line}");

    // The test's own clients talk to moto directly.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&aws["AWS_ENDPOINT_URL"])
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "e2e",
        ))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bucket = S3Store::new(s3.clone(), BUCKET);
    let infer = SqsQueue::new(sqs.clone(), &aws["SPHINX_INFER_QUEUE_URL"]);
    let ingest = SqsQueue::new(sqs, &aws["SPHINX_INGEST_QUEUE_URL"]);
    upload_fixtures(&bucket).await;
    // The hash of an upload too large to hold, streamed from S3: the id of its bytes.
    assert_eq!(
        bucket.sha256(&format!("inbox/{PDF}")).await.unwrap(),
        keys::doc_id(&fixture(PDF))
    );
    assert!(bucket
        .sha256("inbox/none")
        .await
        .unwrap_err()
        .is_not_found());

    // 1. The endpoint refuses service: every document record comes back as an item
    //    failure, and nothing is marked complete.
    proxy_open.send(false).unwrap();
    let cl = cargo_lambda.clone();
    let response =
        tokio::task::spawn_blocking(move || invoke(&cl, invoke_port, "sqs-batch-mixed.json"))
            .await
            .unwrap();
    let failed = failed_ids(&response);
    assert_eq!(
        failed.len(),
        3,
        "PDF, JPEG and corrupt file must be retried: {response}"
    );
    assert!(bucket
        .list("work/")
        .await
        .unwrap()
        .iter()
        .all(|k| !k.ends_with("manifest.json")));
    assert!(bucket.list("errors/").await.unwrap().is_empty());
    assert!(drain_jobs(&infer).await.is_empty());

    // 2. The endpoint is back: the retry completes.
    proxy_open.send(true).unwrap();
    let cl = cargo_lambda.clone();
    let started = Instant::now();
    let response =
        tokio::task::spawn_blocking(move || invoke(&cl, invoke_port, "sqs-batch-mixed.json"))
            .await
            .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        failed_ids(&response),
        Vec::<String>::new(),
        "no record may fail: {response}"
    );
    eprintln!(
        "mixed batch: {} pages in {:.2} s through the emulator ({:.1} pages/s, debug build)",
        PDF_PAGES + 1,
        elapsed.as_secs_f64(),
        (PDF_PAGES + 1) as f64 / elapsed.as_secs_f64()
    );

    // Byte-identical to `sphinx tile` on the same files.
    let local_dir = tempfile::tempdir().unwrap();
    let status = Command::new(&sphinx)
        .arg("tile")
        .arg(&inbox)
        .arg("--out")
        .arg(local_dir.path())
        .arg("--quiet")
        .stdout(Stdio::null())
        .status()
        .expect("run sphinx tile");
    assert!(status.code().is_some(), "sphinx tile was killed");
    let local = LocalStore::new(local_dir.path()).unwrap();
    let pdf_id = keys::doc_id(&fixture(PDF));
    let jpeg_id = keys::doc_id(&fixture(JPEG));
    let bad_id = keys::doc_id(&fixture(CORRUPT));
    let mut compared = 0;
    for prefix in [
        format!("work/{pdf_id}/"),
        format!("work/{jpeg_id}/"),
        keys::error_record(&bad_id),
    ] {
        let expected = snapshot(&local, &prefix).await;
        assert!(
            !expected.is_empty(),
            "sphinx tile wrote nothing under {prefix}"
        );
        compared += expected.len();
        assert_eq!(
            snapshot(&bucket, &prefix).await,
            expected,
            "S3 differs from sphinx tile under {prefix}"
        );
    }
    assert_eq!(
        compared,
        PDF_PAGES + 1 + 2 + 1,
        "bundles + manifests + error record"
    );

    // Exactly one job per good page; the ingest queue holds no continuation.
    let jobs = drain_jobs(&infer).await;
    let mut pages: Vec<(String, u32)> = jobs
        .iter()
        .map(|j| (j.doc_id.clone(), j.page_index))
        .collect();
    pages.sort();
    let mut expected: Vec<(String, u32)> =
        (0..PDF_PAGES as u32).map(|i| (pdf_id.clone(), i)).collect();
    expected.push((jpeg_id.clone(), 0));
    expected.sort();
    assert_eq!(pages, expected);
    assert!(ingest
        .receive(10, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());

    // 3. The same event again: the same objects, no new jobs.
    let before: BTreeMap<_, _> = snapshot(&bucket, "").await;
    let cl = cargo_lambda.clone();
    let response =
        tokio::task::spawn_blocking(move || invoke(&cl, invoke_port, "sqs-batch-mixed.json"))
            .await
            .unwrap();
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(snapshot(&bucket, "").await, before);
    let attrs = infer_counts(&aws["SPHINX_INFER_QUEUE_URL"], &sdk).await;
    assert_eq!(
        attrs,
        (0, (PDF_PAGES + 1) as u64),
        "(visible, in flight) jobs after redelivery"
    );

    // The S3 test event is acknowledged.
    let cl = cargo_lambda.clone();
    let response =
        tokio::task::spawn_blocking(move || invoke(&cl, invoke_port, "s3-test-event.json"))
            .await
            .unwrap();
    assert_eq!(failed_ids(&response), Vec::<String>::new());

    // 4. S3 keys are names, not paths: an upload whose tool wrote a backslash and a
    //    doubled slash is read, hashed and tiled like any other (it went to the DLQ).
    let odd = "inbox/scans\\2026//palette.png";
    let png = std::fs::read(workspace().join("tests/data/formats/palette.png")).unwrap();
    bucket.put(odd, png.clone()).await.unwrap();
    assert_eq!(bucket.head(odd).await.unwrap().size, png.len() as u64);
    assert_eq!(bucket.sha256(odd).await.unwrap(), keys::doc_id(&png));
    let jobs = Arc::new(MemoryQueue::new());
    let tiler = Tiler::new(
        Arc::new(S3Store::new(s3.clone(), BUCKET)),
        jobs.clone(),
        Arc::new(MemoryQueue::new()),
        config(&[]),
    );
    let object = ObjectRef {
        bucket: BUCKET.to_string(),
        key: odd.to_string(),
    };
    let outcome = tiler
        .handle_s3(vec![object], tokio::time::Instant::now() + INVOKE_TIMEOUT)
        .await
        .unwrap();
    let png_id = keys::doc_id(&png);
    assert_eq!(
        format!("{outcome:?}"),
        format!("[Enqueued {{ doc_id: {png_id:?}, pages: 1 }}]")
    );
    let manifest = bucket.get(&keys::document_manifest(&png_id)).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["source"]["name"], "scans\\2026//palette.png");
    assert_eq!(jobs.sent(), 1);
}

/// (visible, in flight) message counts of a queue.
async fn infer_counts(url: &str, sdk: &aws_config::SdkConfig) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    let get = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
    )
}
