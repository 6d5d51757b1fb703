//! Many pages through SPHINX-X at once: the compute half of `sphinx serve`, `sphinx run`
//! and `sphinx infer`.
//!
//! Pages arrive as [`PreparedPage`]s (kept views decoded, skip plan, frame, tasks). The
//! kept views of ALL pages are encoded together (in chunks of `max_views`), so the
//! encoders see large batches across documents; skipped sub-images never reach them.
//! Every (page, task) pair then becomes one row of a batched generation (chunks of
//! `max_rows`), each row assembled from its page's features, so a page's views are
//! encoded once however many tasks it has.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use sphinx_core::boxes::PageFrame;
use sphinx_core::bundle::PageBundle;
use sphinx_core::job::{PageJob, Task};
use sphinx_core::prompts;
use sphinx_core::result::{ModelInfo, PageResult, StopReason, TaskResult, Timings, TokenCounts};
use sphinx_core::tiling::{tile_page, CLIP_MEAN, CLIP_STD};
use sphinx_model::conversation::{Template, Turn};
use sphinx_model::generate::{generate, GenerateConfig, Sampling, Stop};
use tch::{Kind, Tensor};

use crate::infer_cmd::Loaded;

/// One page ready for the model.
#[derive(Debug, Clone)]
pub struct PreparedPage {
    pub doc_id: String,
    pub page_index: u32,
    pub page_count: u32,
    pub frame: PageFrame,
    /// One flag per sub-image slot, row-major (empty for the one-view layout).
    pub skipped: Vec<bool>,
    /// The views the encoders see: global first, then the kept sub-images row-major.
    pub views: Vec<RgbImage>,
    pub tasks: Vec<Task>,
}

impl PreparedPage {
    /// From a page bundle the tiler wrote; refuses a bundle tiled for another layout
    /// than the model's (its views would not be what the model was trained on).
    pub fn from_bundle(bundle: &PageBundle, job: &PageJob, loaded: &Loaded) -> Result<Self> {
        let m = &bundle.manifest;
        if m.doc_id != job.doc_id || m.page_index != job.page_index {
            bail!(
                "bundle {} holds page {} of {}, not page {} of {}",
                job.bundle_key,
                m.page_index,
                m.doc_id,
                job.page_index,
                job.doc_id
            );
        }
        let (canvas, grid) = (m.preprocess.canvas, m.preprocess.grid);
        if canvas != loaded.tile.canvas || grid != loaded.tile.grid {
            bail!(
                "bundle {} was tiled for a {canvas} px canvas in a {grid}x{grid} grid; model {} \
                 needs {} px in {}x{} (re-tile with --canvas {} --grid {})",
                job.bundle_key,
                loaded.id,
                loaded.tile.canvas,
                loaded.tile.grid,
                loaded.tile.grid,
                loaded.tile.canvas,
                loaded.tile.grid
            );
        }
        let mut views = Vec::new();
        let mut skipped = Vec::new();
        for (i, entry) in m.views.iter().enumerate() {
            if i > 0 {
                skipped.push(entry.skip);
            }
            if let Some(img) = bundle.view_image(i)? {
                views.push(img);
            }
        }
        let frame = PageFrame::new(canvas, m.placement.clone(), m.size_pixels, m.size_points)?;
        Ok(Self::layout(
            loaded,
            Self {
                doc_id: job.doc_id.clone(),
                page_index: job.page_index,
                page_count: job.page_count,
                frame,
                skipped,
                views,
                tasks: job.tasks.clone(),
            },
        ))
    }

    /// From a rendered page bitmap, tiled here exactly as the tiler tiles it.
    pub fn from_image(
        image: &RgbImage,
        size_points: [f32; 2],
        (doc_id, page_index, page_count): (String, u32, u32),
        tasks: Vec<Task>,
        loaded: &Loaded,
    ) -> Result<Self> {
        let tiled = tile_page(image, &loaded.tile)?;
        let frame = PageFrame::new(
            loaded.tile.canvas,
            tiled.placement.clone(),
            tiled.page_size,
            size_points,
        )?;
        let views = tiled.views().flatten().cloned().collect();
        let skipped = tiled.plan.flags().to_vec();
        Ok(Self::layout(
            loaded,
            Self {
                doc_id,
                page_index,
                page_count,
                frame,
                skipped,
                views,
                tasks,
            },
        ))
    }

    /// The one-view layout (SPHINX-Tiny) sees only the global view and has no skip plan.
    fn layout(loaded: &Loaded, mut page: Self) -> Self {
        if loaded.single_view {
            page.views.truncate(1);
            page.skipped.clear();
        }
        page
    }
}

/// How pages are generated and how big the batches on the device may get.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Views per encoder call (bounds activation memory of the encoders).
    pub max_views: usize,
    /// (page, task) rows per generation call (bounds KV-cache memory).
    pub max_rows: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: crate::infer_cmd::DEFAULT_MAX_NEW_TOKENS,
            sampling: Sampling::Greedy,
            max_views: 32,
            max_rows: 32,
        }
    }
}

/// What one batch cost, for logs and metrics.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub pages: usize,
    pub views: usize,
    pub rows: usize,
    pub generated_tokens: usize,
    pub encode: Duration,
    pub prefill: Duration,
    pub decode: Duration,
}

/// Runs every task of every page; results come back in page order. Timings in each task
/// result are those of the batch the page ran in (encode, prefill and decode are shared).
pub fn run_batch(
    loaded: &Loaded,
    pages: &[PreparedPage],
    opts: &BatchOptions,
) -> Result<(Vec<PageResult>, BatchStats)> {
    let started = Instant::now();
    let _guard = tch::no_grad_guard();
    let mut stats = BatchStats {
        pages: pages.len(),
        ..Default::default()
    };
    for p in pages {
        if p.tasks.is_empty() {
            bail!("page {} of {} has no task", p.page_index, p.doc_id);
        }
        if p.views.is_empty() {
            bail!("page {} of {} has no view", p.page_index, p.doc_id);
        }
    }

    // 1. Encode the kept views of all pages together.
    let encode_start = Instant::now();
    let all: Vec<&RgbImage> = pages.iter().flat_map(|p| &p.views).collect();
    stats.views = all.len();
    let mut feats = Vec::new();
    for chunk in all.chunks(opts.max_views.max(1)) {
        let pixels = Tensor::stack(&chunk.iter().map(|v| normalized(v)).collect::<Vec<_>>(), 0)
            .to_device(loaded.device);
        let views = loaded.model.tile_views(&pixels)?;
        feats.push(loaded.model.encode_views(&views)?);
    }
    let feats = Tensor::cat(&feats, 0);
    let mut per_page = Vec::with_capacity(pages.len());
    let mut offset = 0;
    for p in pages {
        let n = p.views.len() as i64;
        let block = loaded
            .model
            .image_block(&feats.narrow(0, offset, n), &p.skipped)?;
        per_page.push(block);
        offset += n;
    }
    stats.encode = encode_start.elapsed();

    // 2. One generation row per (page, task).
    let template = Template::default_conversation();
    struct Row {
        page: usize,
        task: Task,
        question: String,
        prompt_len: u32,
        visual: u32,
        seq: Tensor,
    }
    let mut rows = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        for task in &p.tasks {
            let question = prompts::question(task)?;
            let prompt = template.prompt(&[Turn::ask(question.clone())])?;
            let ids = loaded.tokenizer.encode(&prompt, true, false)?;
            let ids_t = Tensor::from_slice(&ids).to_device(loaded.device);
            let (seq, n_image) = loaded
                .model
                .assemble_with_image(&ids_t, Some(&per_page[i]))?;
            rows.push(Row {
                page: i,
                task: task.clone(),
                question,
                prompt_len: ids.len() as u32,
                visual: n_image as u32,
                seq: seq.squeeze_dim(0),
            });
        }
    }
    stats.rows = rows.len();
    let cfg = GenerateConfig {
        max_new_tokens: opts.max_new_tokens,
        sampling: opts.sampling,
        stop: template.stop_sequences(&loaded.tokenizer)?,
        vocab: Some(loaded.tokenizer.vocab_size() as i64),
    };
    let mut outputs = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(opts.max_rows.max(1)) {
        let seqs: Vec<Tensor> = chunk.iter().map(|r| r.seq.shallow_clone()).collect();
        let batch = generate(loaded.model.llm(), &seqs, &cfg)
            .with_context(|| format!("generation over {} rows failed", seqs.len()))?;
        stats.prefill += batch.prefill;
        stats.decode += batch.decode;
        outputs.extend(batch.outputs);
    }

    // 3. Answers -> task results -> page results.
    let mut tasks: Vec<Vec<TaskResult>> = pages.iter().map(|_| Vec::new()).collect();
    let total = started.elapsed();
    for (row, out) in rows.into_iter().zip(outputs) {
        stats.generated_tokens += out.generated;
        let text = loaded.tokenizer.decode(&out.tokens)?;
        let (answer, cut) = template.cut_answer(&text);
        let stop = match out.stop {
            Stop::Sequence { index: 0 } => StopReason::Eos,
            Stop::Sequence { .. } => StopReason::Separator,
            Stop::MaxTokens if cut => StopReason::Separator,
            Stop::MaxTokens => StopReason::MaxTokens,
        };
        tasks[row.page].push(TaskResult::from_answer(
            row.task,
            row.question,
            answer.to_owned(),
            &pages[row.page].frame,
            stop,
            TokenCounts {
                prompt: row.prompt_len,
                visual: row.visual,
                generated: out.generated as u32,
            },
            Timings {
                encode_ms: ms(stats.encode),
                prefill_ms: ms(stats.prefill),
                decode_ms: ms(stats.decode),
                total_ms: ms(total),
            },
        ));
    }
    let results = pages
        .iter()
        .zip(tasks)
        .map(|(p, tasks)| {
            PageResult::new(
                p.doc_id.clone(),
                p.page_index,
                p.page_count,
                ModelInfo {
                    id: loaded.id.clone(),
                },
                p.frame.clone(),
                tasks,
            )
        })
        .collect();
    Ok((results, stats))
}

/// `[3, H, W]` float32, CLIP-normalised, of an RGB8 view.
fn normalized(img: &RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    let t = Tensor::from_slice(img.as_raw())
        .view([i64::from(h), i64::from(w), 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0;
    let mean = Tensor::from_slice(&CLIP_MEAN).view([3, 1, 1]);
    let std = Tensor::from_slice(&CLIP_STD).view([3, 1, 1]);
    (t - mean) / std
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
