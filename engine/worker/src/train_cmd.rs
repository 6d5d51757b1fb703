//! `sphinx train --config <job.json> [--resume] [--out <dir>]`: one-stage fine-tuning
//! as a batch job (see `sphinx_model::train`). Prints one JSON metrics line per step on
//! stdout; SIGTERM or ctrl-c writes a checkpoint after the current step and exits with
//! status 3, so a scheduler reruns it with `--resume`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sphinx_core::settings::S3Args;
use sphinx_core::store::{LocalStore, ObjectStore, S3Store};
use sphinx_model::train::checkpoint::Output;
use sphinx_model::train::spec::TrainSpec;
use sphinx_model::train::trainer::{RunControl, TrainOutcome, Trainer};
use tch::Device;

use crate::model_source::ModelCacheArgs;

/// Output root when neither `--out` nor the spec's `output` names one.
const DEFAULT_OUT: &str = "out/train";
/// Exit status of a run stopped by a signal after its checkpoint.
const STOPPED: u8 = 3;

/// Arguments of `sphinx train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// The job spec (JSON): a file or s3://bucket/key.
    #[arg(long)]
    pub config: String,
    /// Continue from the run's newest checkpoint (a fresh start when there is none).
    #[arg(long)]
    pub resume: bool,
    /// Output root (checkpoints/<run>/, models/<run>/, models/latest): a folder or
    /// s3://bucket/prefix; overrides the spec's `output`. Without either: s3://$SPHINX_BUCKET
    /// when that is set (the cloud job), else out/train.
    #[arg(long)]
    pub out: Option<String>,
    /// Where datasets named by s3:// URIs are copied before training.
    #[arg(long, env = "SPHINX_DATA_CACHE", default_value = "/tmp/sphinx-data")]
    pub data_cache: PathBuf,
    /// The stack's bucket: without `--out` or the spec's `output`, the run writes to
    /// s3://<bucket>.
    #[arg(long, env = "SPHINX_BUCKET")]
    pub bucket: Option<String>,
    /// Where a base model named by an s3:// `model.dir` is copied (the cache `sphinx serve`
    /// uses too), and how S3 is reached.
    #[command(flatten)]
    pub models: ModelCacheArgs,
    /// Train on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// No progress bar on stderr (the metrics lines on stdout stay).
    #[arg(long)]
    pub quiet: bool,
}

/// The object store and prefix of an output root: a local folder or `s3://bucket/prefix`.
/// Its store calls run on `rt`.
pub fn open_output(root: &str, s3: &S3Args, rt: tokio::runtime::Handle) -> Result<Output> {
    if let Some((bucket, prefix)) = parse_s3(root) {
        let store = s3_store(&bucket, s3)?;
        return Ok(Output::new(Arc::new(store), &prefix, rt)?);
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create output {root}"))?;
    let store = LocalStore::new(Path::new(root)).with_context(|| format!("output {root}"))?;
    Ok(Output::new(Arc::new(store), "", rt)?)
}

/// A flag that turns true on SIGTERM (a Spot interruption notice, `docker stop`) or
/// ctrl-c, watched by a task on `rt`, for [`RunControl::stop`].
fn stop_on_signals(rt: &tokio::runtime::Runtime) -> Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let mut term = {
        let _entered = rt.enter();
        signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?
    };
    rt.spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("stop requested: checkpointing after this step (ctrl-c again to abort)");
        set.store(true, Ordering::SeqCst);
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("aborted: this step is not checkpointed; the last checkpoint stands");
            crate::worker::exit_now(130);
        }
    });
    Ok(flag)
}

/// `s3://bucket/some/prefix` -> (`bucket`, `some/prefix`).
fn parse_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Some((bucket.to_string(), key.trim_matches('/').to_string()))
}

/// An S3 store from the environment's AWS settings (region, credentials, endpoint).
fn s3_store(bucket: &str, s3: &S3Args) -> Result<S3Store> {
    if bucket.is_empty() {
        bail!("an s3:// location needs a bucket");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sdk = rt.block_on(aws_config::load_from_env());
    Ok(S3Store::new(crate::aws::s3_client(&sdk, s3), bucket))
}

/// Blocks on one store call (the trainer is synchronous).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// Reads the job spec from a file or `s3://bucket/key`.
fn read_spec(uri: &str, s3: &S3Args) -> Result<String> {
    if let Some((bucket, key)) = parse_s3(uri) {
        let bytes = block_on(s3_store(&bucket, s3)?.get(&key))?
            .with_context(|| format!("cannot read job spec {uri}"))?;
        return String::from_utf8(bytes).with_context(|| format!("job spec {uri} is not UTF-8"));
    }
    std::fs::read_to_string(uri).with_context(|| format!("cannot read job spec {uri}"))
}

/// Copies a dataset under `s3://bucket/prefix/name.jsonl` (the JSONL and everything
/// beside it: its images) into `cache`, returning the local JSONL path. Files already
/// cached with the same size are kept.
fn fetch_dataset(uri: &str, cache: &Path, s3: &S3Args) -> Result<String> {
    let Some((bucket, key)) = parse_s3(uri) else {
        return Ok(uri.to_string());
    };
    let store = s3_store(&bucket, s3)?;
    let folder = key.rsplit_once('/').map_or("", |(f, _)| f).to_string();
    let listed = block_on(store.list(&folder))??;
    let local_root = cache.join(&bucket);
    for k in listed {
        // A key is copied to a file of its name: one that could leave the cache is refused.
        sphinx_core::store::validate_key(&k)
            .with_context(|| format!("dataset {uri}: s3://{bucket}/{k} cannot be cached"))?;
        let dest = local_root.join(&k);
        let size = block_on(store.head(&k))??.size;
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bytes = block_on(store.get(&k))?.with_context(|| format!("s3://{bucket}/{k}"))?;
        std::fs::write(&dest, bytes)?;
    }
    let local = local_root.join(&key);
    if !local.exists() {
        bail!("dataset {uri} not found");
    }
    Ok(local.display().to_string())
}

/// The local folder of the base model `dir`: itself, or the copy in the model cache of an
/// `s3://bucket/models/<run>/` (or `.../models/latest`, the run it names) prefix.
fn fetch_model(dir: &str, models: &ModelCacheArgs) -> Result<String> {
    let local = models
        .local_folder_blocking(Path::new(dir))
        .with_context(|| format!("base model {dir}"))?;
    Ok(local.display().to_string())
}

/// Runs `sphinx train`.
pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let text = read_spec(&args.config, &args.models.s3)?;
    let mut spec = TrainSpec::from_json(&text, &args.config)?;
    for d in &mut spec.datasets {
        d.path = fetch_dataset(&d.path, &args.data_cache, &args.models.s3)?;
    }
    if let Some(dir) = &spec.model.dir {
        spec.model.dir = Some(fetch_model(dir, &args.models)?);
    }
    let root = args
        .out
        .clone()
        .or_else(|| spec.output.clone())
        .or_else(|| {
            args.bucket
                .as_ref()
                .filter(|b| !b.is_empty())
                .map(|b| format!("s3://{b}"))
        })
        .unwrap_or_else(|| DEFAULT_OUT.to_owned());
    let device = if args.cpu {
        Device::Cpu
    } else {
        Device::cuda_if_available()
    };
    // The process's runtime: the checkpoint store's calls and the signal watch run on its
    // worker thread while this thread trains.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let ctl = RunControl {
        stop: stop_on_signals(&rt)?,
        halt_at: None,
    };
    let output = open_output(&root, &args.models.s3, rt.handle().clone())?;
    let mut trainer = Trainer::new(spec, output, device, args.resume)?
        .with_isolation(sphinx_core::isolate::Isolation::this_binary());
    eprintln!(
        "training {} on {device:?} from step {} to {}",
        trainer.spec.run,
        trainer.step(),
        trainer.spec.steps
    );
    let progress = sphinx_cli::progress::bar(trainer.spec.steps, "steps", args.quiet);
    progress.set_position(trainer.step());
    progress.reset_eta();
    let outcome = trainer.run(&ctl, &mut |m| {
        // Metrics are also in the run's metrics.jsonl: a failed write loses no record.
        progress.suspend(|| {
            let _ = sphinx_cli::stdout::line(serde_json::to_string(m).unwrap_or_default());
        });
        progress.set_position(m.step);
        progress.set_message(format!("loss {:.4}  lr {:.2e}", m.loss, m.lr));
    })?;
    progress.finish_and_clear();
    match outcome {
        TrainOutcome::Finished { model } => {
            eprintln!("model written to {root}/{model}");
            Ok(ExitCode::SUCCESS)
        }
        TrainOutcome::Stopped { step, checkpoint } => {
            eprintln!(
                "stopped at step {step}; checkpoint {}",
                checkpoint.as_deref().unwrap_or("none")
            );
            Ok(ExitCode::from(STOPPED))
        }
    }
}
