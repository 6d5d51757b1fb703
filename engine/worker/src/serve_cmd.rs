//! `sphinx serve`: the GPU worker of the cloud path. Drains the infer queue (SQS) in
//! micro-batches, reads page bundles from and writes results to the bucket (S3). Every
//! setting has a `SPHINX_*` variable so a container needs no arguments; see
//! [`crate::worker`] for what it guarantees.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sphinx_core::settings::DeviceArgs;
use sphinx_core::store::{ObjectStore, S3Store};
use sphinx_core::OutputFormats;
use sphinx_core::{Queue, SqsQueue};

use crate::batch::BatchOptions;
use crate::batch::{DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_TOKENS_IN_FLIGHT};
use crate::model_source::ModelCacheArgs;
use crate::worker::metrics::emf_line;
use crate::worker::{spawn_grace_guard, Outputs, Poison, Shutdown, Worker, WorkerConfig};

/// Arguments of `sphinx serve` (each also read from its environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Bucket holding work/ (bundles), results/ and errors/.
    #[arg(long, env = "SPHINX_BUCKET")]
    pub bucket: String,
    /// URL of the infer queue (page jobs).
    #[arg(long, env = "SPHINX_INFER_QUEUE_URL")]
    pub queue_url: String,
    /// Model folder, or s3://bucket/models/<run>/ (or .../models/latest), cached locally.
    #[arg(long, env = "SPHINX_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub models: ModelCacheArgs,
    /// Most pages received and encoded at once (a micro-batch; the next joins the running
    /// decode as slots free).
    #[arg(long, env = "SPHINX_MAX_BATCH_PAGES", value_parser = sphinx_core::settings::at_least_one, default_value_t = 16)]
    pub max_batch_pages: usize,
    /// Rows decoded at once (continuous batching: a finished row's slot takes the next).
    #[arg(long, env = "SPHINX_DECODE_SLOTS", value_parser = sphinx_core::settings::at_least_one, default_value_t = 32)]
    pub decode_slots: usize,
    /// Replay each decode step from a CUDA graph (one launch per token instead of one per
    /// kernel). CUDA only; anywhere else, or where a capture fails, decoding is eager.
    #[arg(long, env = "SPHINX_CUDA_GRAPHS", value_parser = clap::builder::BoolishValueParser::new())]
    pub cuda_graphs: bool,
    /// Positions the KV cache may hold across all slots (fewer slots for long rows).
    #[arg(long, env = "SPHINX_MAX_TOKENS_IN_FLIGHT", value_parser = sphinx_core::settings::at_least_one, default_value_t = DEFAULT_MAX_TOKENS_IN_FLIGHT)]
    pub max_tokens_in_flight: usize,
    /// Milliseconds to wait for more pages once the first arrived.
    #[arg(long, env = "SPHINX_BATCH_WAIT_MS", default_value_t = 2000)]
    pub batch_wait_ms: u64,
    /// Long-poll seconds on an empty queue (0-20).
    #[arg(long, env = "SPHINX_POLL_WAIT_S", default_value_t = 20)]
    pub poll_wait_s: u64,
    /// Visibility timeout of received jobs; renewed every third of it while they run.
    #[arg(long, env = "SPHINX_VISIBILITY_S", default_value_t = 300)]
    pub visibility_s: u64,
    /// Exit after this many seconds without work (0: never), so Batch scales to zero.
    #[arg(long, env = "SPHINX_IDLE_EXIT_S", default_value_t = 120)]
    pub idle_exit_s: u64,
    /// Seconds after SIGTERM to finish the running batch before releasing it.
    #[arg(long, env = "SPHINX_GRACE_S", default_value_t = 100)]
    pub grace_s: u64,
    /// Seconds a job stays hidden after a transient fault or a failed attempt.
    #[arg(long, env = "SPHINX_RELEASE_BACKOFF_S", default_value_t = 10)]
    pub release_backoff_s: u64,
    /// Most tokens generated per task.
    #[arg(long, env = "SPHINX_MAX_NEW_TOKENS", value_parser = sphinx_core::settings::at_least_one, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Result files per document beside the JSON: a comma list of txt, hocr, alto, pdf
    /// (or all); JSON is always written.
    #[arg(long, env = "SPHINX_OUTPUT_FORMATS", default_value = "json")]
    pub formats: OutputFormats,
    /// Key prefix of uploads (the tiler's): the searchable PDF is made from the original.
    #[arg(long, env = "SPHINX_INBOX_PREFIX", default_value = "inbox/")]
    pub inbox_prefix: String,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    #[command(flatten)]
    pub devices: DeviceArgs,
}

impl ServeArgs {
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            max_batch_pages: self.max_batch_pages.max(1),
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            poll_wait: Duration::from_secs(self.poll_wait_s.min(20)),
            visibility: Duration::from_secs(self.visibility_s.max(1)),
            idle_exit: (self.idle_exit_s > 0).then(|| Duration::from_secs(self.idle_exit_s)),
            release_backoff: Duration::from_secs(self.release_backoff_s),
            poison: Poison::DeadLetter,
            batch: BatchOptions {
                max_new_tokens: self.max_new_tokens,
                max_rows: self.decode_slots.max(1),
                max_tokens_in_flight: self.max_tokens_in_flight.max(1),
                cuda_graphs: self.cuda_graphs,
                ..BatchOptions::default()
            },
            outputs: Outputs {
                formats: self.formats.clone(),
                inbox_prefix: self.inbox_prefix.clone(),
                ..Outputs::default()
            },
            ..WorkerConfig::default()
        }
    }
}

/// `sphinx serve`.
pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let sdk = aws_config::load_from_env().await;
    let s3 = crate::aws::s3_client(&sdk, &args.models.s3);
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3, args.bucket.clone()));
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        args.queue_url.clone(),
    ));
    let dir = args.models.local_folder(Path::new(&args.model)).await?;
    let started = std::time::Instant::now();
    let loaded = crate::devices::load(&dir, &args.devices, args.cpu)?;
    let device = loaded.device;
    tracing::info!(
        model = %loaded.id,
        ?device,
        placement = %loaded.placement,
        load_s = started.elapsed().as_secs_f64(),
        "model loaded"
    );

    let shutdown = Arc::new(Shutdown::default());
    let worker = Worker::new(
        &loaded,
        store,
        queue.clone(),
        args.worker_config(),
        shutdown.clone(),
    );
    spawn_signal_handler(shutdown.clone())?;
    spawn_grace_guard(
        shutdown,
        worker.inflight(),
        queue,
        Duration::from_secs(args.grace_s),
    );
    let summary = worker
        .run(&mut |report| {
            // A metric line that cannot be written must not stop the worker.
            if let Err(e) = sphinx_cli::stdout::line(emf_line("serve", report)) {
                tracing::warn!(error = %e, "cannot write the metrics line to stdout");
            }
        })
        .await?;
    tracing::info!(?summary, "worker stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (Spot reclaim, scale-in, `docker stop`) and ctrl-c request a drain.
fn spawn_signal_handler(shutdown: Arc<Shutdown>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        shutdown.request();
    });
    Ok(())
}
