//! `sphinx infer [--model <dir>] --task ocr <image or pdf> [--page N] [--overlay out.png]`:
//! runs SPHINX-X on one page and prints its [`PageResult`] JSON, the same object the
//! batch worker writes per page.
//!
//! One page, every requested task in ONE batch (the rows share the page's visual block
//! and differ in their prompts). The page is tiled exactly as the tiler does
//! ([`sphinx_core::tiling::tile_page`] on the render at the canvas size), each task's
//! question is wrapped in the reference conversation template, generation stops at EOS or
//! the template's end signal, and the answer's boxes are mapped back onto the page.
//!
//! The model folder holds what `scripts/convert_checkpoint.py` and
//! `scripts/convert_tokenizer.py` write: `config.json`, `model.safetensors`,
//! `tokenizer.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use image::RgbImage;
use sphinx_core::isolate::{render_page, Isolation};
use sphinx_core::keys;
use sphinx_core::Limits;
use sphinx_core::PageResult;
use sphinx_core::Task;
use sphinx_model::model_folder::Loaded;
use sphinx_model::Sampling;

use crate::batch::{BatchOptions, PreparedPage, DEFAULT_MAX_NEW_TOKENS};
use crate::overlay;
use crate::stream::run_batch;

/// Arguments of `sphinx infer`.
#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    /// Converted model folder (config.json, model.safetensors, tokenizer.json), or
    /// s3://bucket/models/<run>/ (or .../models/latest), copied once into --model-cache.
    /// Default: the bundled sphinx-nano (it reads one-line synthetic pages only).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub models: crate::model_source::ModelCacheArgs,
    /// Task to run; repeat for several: ocr, caption, caption:short, grounding:<query>,
    /// ask:<question>.
    #[arg(long = "task", required = true)]
    pub tasks: Vec<Task>,
    /// The page: an image (PNG, JPEG, TIFF, WebP) or a PDF.
    pub input: PathBuf,
    /// Zero-based page of a multi-page input.
    #[arg(long, default_value_t = 0)]
    pub page: u32,
    /// Most tokens generated per task.
    #[arg(long, value_parser = sphinx_core::settings::at_least_one, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus mass for sampling (with --temperature > 0).
    #[arg(long, default_value_t = 0.5)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also draw the boxes and labels on the page into this PNG.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    #[command(flatten)]
    pub devices: sphinx_core::DeviceArgs,
}

/// Generation settings from the command line.
fn gen_config(args: &InferArgs) -> Result<Sampling> {
    if args.temperature < 0.0 || !args.temperature.is_finite() {
        bail!("--temperature must be >= 0, got {}", args.temperature);
    }
    Ok(if args.temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }
    })
}

/// `sphinx infer`.
pub fn run(args: InferArgs) -> Result<ExitCode> {
    let sampling = gen_config(&args)?;
    // A wrong path is said before a model is loaded.
    std::fs::metadata(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let model = match &args.model {
        Some(spec) => args.models.local_folder_blocking(spec)?,
        None => crate::model_source::bundled_nano().context(
            "no --model given, and this build has no bundled model (models/sphinx-nano/)",
        )?,
    };
    let loaded = crate::devices::load(&model, &args.devices, args.cpu)?;
    let (result, page) = infer_file(
        &loaded,
        &args.input,
        args.page,
        &args.tasks,
        args.max_new_tokens,
        sampling,
    )?;
    if let Some(path) = &args.overlay {
        let spans: Vec<_> = result.tasks.iter().flat_map(|t| t.spans.clone()).collect();
        let img = overlay::draw(&page, result.frame.size_pixels, &spans)?;
        overlay::write_png(&img, path)?;
    }
    sphinx_cli::stdout::line(String::from_utf8(result.to_json()?)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `tasks` on page `page_index` of the file at `input`; returns the result and the
/// page bitmap the boxes refer to.
pub fn infer_file(
    loaded: &Loaded,
    input: &Path,
    page_index: u32,
    tasks: &[Task],
    max_new_tokens: usize,
    sampling: Sampling,
) -> Result<(PageResult, RgbImage)> {
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let doc_id = keys::doc_id(&bytes);
    // Opened and rendered in a child process under hard limits, as uploads are.
    let (doc, page) = render_page(
        &Isolation::this_binary(),
        &Arc::new(bytes),
        &Limits::default(),
        loaded.tile.canvas,
        page_index,
    )
    .with_context(|| format!("cannot render page {page_index} of {}", input.display()))?;
    let result = infer_page(
        loaded,
        &page.image,
        page.size_points,
        (doc_id, page_index, doc.page_count),
        tasks,
        max_new_tokens,
        sampling,
    )?;
    Ok((result, page.image))
}

/// Runs every task on one page bitmap in one batch (see [`crate::batch`]).
pub fn infer_page(
    loaded: &Loaded,
    image: &RgbImage,
    size_points: [f32; 2],
    identity: (String, u32, u32),
    tasks: &[Task],
    max_new_tokens: usize,
    sampling: Sampling,
) -> Result<PageResult> {
    if tasks.is_empty() {
        bail!("no task given");
    }
    let page =
        PreparedPage::from_image(image, size_points, identity, tasks.to_vec(), &loaded.tile)?;
    let opts = BatchOptions {
        max_new_tokens,
        sampling,
        ..BatchOptions::default()
    };
    let (mut results, _) = run_batch(loaded, std::slice::from_ref(&page), &opts)?;
    Ok(results.remove(0))
}
