//! Many pages through SPHINX-X at once: the compute half of `sphinx serve`, `sphinx run`
//! and `sphinx infer`.
//!
//! Pages arrive as [`PreparedPage`]s (the 8-bit canvas the tiler made, its padding plan,
//! frame, tasks), from a bundle or a bitmap by the same tiling. Each page's views come
//! from [`Sphinx::page_input`](sphinx_model::sphinx::Sphinx::page_input), the one
//! page-to-model path (training uses it too); the views of ALL pages are encoded together
//! (in chunks of `max_views`), so the encoders see large batches across documents. A
//! skip-token model never encodes padding cells; a released model encodes every cell.
//! Every (page, task) pair then becomes one row, assembled from its page's features (a
//! page's views are encoded once however many tasks it has), and the rows stream through
//! `max_rows` decode slots ([`Decoder`]: continuous batching, a finished row's slot
//! takes the next row at once).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use sphinx_core::boxes::PageFrame;
use sphinx_core::manifest::Preprocess;
use sphinx_core::prompts;
use sphinx_core::result::{ModelInfo, PageResult, StopReason, TaskResult, Timings, TokenCounts};
use sphinx_core::tiling::{tile_page, TileConfig, TiledPage};
use sphinx_core::PageBundle;
use sphinx_core::{PageJob, Task};
use sphinx_model::conversation::{Template, Turn};
use sphinx_model::generate::{GenerateConfig, Generated, Sampling, Stop, READ_EVERY};
use sphinx_model::mov::{canvas_tensor, MovConfig, MovViews};
use sphinx_model::sphinx::{self, PageViews, Sphinx};
use sphinx_model::Decoder;
use tch::{Device, Tensor};

use sphinx_model::Loaded;

/// One page ready for the model.
#[derive(Debug, Clone)]
pub struct PreparedPage {
    pub doc_id: String,
    pub page_index: u32,
    pub page_count: u32,
    pub frame: PageFrame,
    /// The tiled page: its 8-bit canvas and row-major padding plan.
    pub tiled: TiledPage,
    pub tasks: Vec<Task>,
}

impl PreparedPage {
    /// From a page bundle the tiler wrote (its canvas rebuilt bit for bit); refuses a
    /// bundle tiled for another layout than the model's (its canvas would not be what the
    /// model was trained on).
    pub fn from_bundle(
        bundle: &PageBundle,
        job: &PageJob,
        tile: &TileConfig,
        model_id: &str,
    ) -> Result<Self> {
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
        if canvas != tile.canvas || grid != tile.grid {
            bail!(
                "bundle {} was tiled for a {canvas} px canvas in a {grid}x{grid} grid; model \
                 {model_id} needs {} px in {}x{} (re-tile with --canvas {} --grid {})",
                job.bundle_key,
                tile.canvas,
                tile.grid,
                tile.grid,
                tile.canvas,
                tile.grid
            );
        }
        if m.preprocess.align != tile.align {
            bail!(
                "bundle {} has the page {:?} on its canvas; model {model_id} needs it {:?} \
                 (re-tile with --align {}; the tiler Lambda: SPHINX_PAD_ALIGN)",
                job.bundle_key,
                m.preprocess.align,
                tile.align,
                tile.align.name()
            );
        }
        if m.preprocess != Preprocess::for_config(tile) {
            bail!(
                "bundle {} was prepared with other constants ({:?}) than this build's",
                job.bundle_key,
                m.preprocess
            );
        }
        let tiled = bundle.tiled()?;
        let frame = PageFrame::new(canvas, m.placement.clone(), m.size_pixels, m.size_points)?;
        Ok(Self {
            doc_id: job.doc_id.clone(),
            page_index: job.page_index,
            page_count: job.page_count,
            frame,
            tiled,
            tasks: job.tasks.clone(),
        })
    }

    /// From a rendered page bitmap, tiled here exactly as the tiler tiles it.
    pub fn from_image(
        image: &RgbImage,
        size_points: [f32; 2],
        (doc_id, page_index, page_count): (String, u32, u32),
        tasks: Vec<Task>,
        tile: &TileConfig,
    ) -> Result<Self> {
        let tiled = tile_page(image, tile)?;
        let frame = PageFrame::new(
            tile.canvas,
            tiled.placement.clone(),
            tiled.page_size,
            size_points,
        )?;
        Ok(Self {
            doc_id,
            page_index,
            page_count,
            frame,
            tiled,
            tasks,
        })
    }

    /// The encoder views of this page and the plan of its image block, for `model`.
    pub fn model_input(&self, model: &Sphinx, device: Device) -> Result<PageViews> {
        self.views_for(model.mov().config(), model.has_skip_token(), device)
    }

    /// [`Self::model_input`] for a model with these encoders and (or not) a skip token.
    pub fn views_for(
        &self,
        vision: &MovConfig,
        skip_tokens: bool,
        device: Device,
    ) -> Result<PageViews> {
        let canvas = canvas_tensor(&self.tiled.canvas).to_device(device);
        Ok(sphinx::page_input(
            vision,
            skip_tokens,
            &canvas,
            self.tiled.plan.flags(),
        )?)
    }
}

/// Default answer budget: the reference's `generate_response` default `max_gen_len`.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;

/// Default bound on the KV cache: 32 slots of a SPHINX-Tiny-1k page (1,295 image
/// positions, its prompt and 512 new tokens) fit.
pub const DEFAULT_MAX_TOKENS_IN_FLIGHT: usize = 65_536;

/// How pages are generated and how big the batches on the device may get.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Views per encoder call (bounds activation memory of the encoders).
    pub max_views: usize,
    /// Decode slots: (page, task) rows generated at once, each admitted as soon as a
    /// slot frees (continuous batching; the KV cache holds this many rows).
    pub max_rows: usize,
    /// Positions (prompt and answer) the KV cache may hold in all: fewer slots when rows
    /// are long, so the cache's memory is bounded by tokens, not by rows.
    pub max_tokens_in_flight: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            sampling: Sampling::Greedy,
            max_views: 32,
            max_rows: 32,
            max_tokens_in_flight: DEFAULT_MAX_TOKENS_IN_FLIGHT,
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
    /// Reads of device state by the host while decoding (not one per token).
    pub host_reads: usize,
    /// Decode slots used (rows generated at once).
    pub slots: usize,
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
    }

    // 1. Every page's views (the one page-to-model path), encoded all together.
    let encode_start = Instant::now();
    let inputs = pages
        .iter()
        .map(|p| p.model_input(&loaded.model, loaded.device))
        .collect::<Result<Vec<_>>>()?;
    let parts: Vec<MovViews> = inputs
        .iter()
        .map(|i| MovViews {
            convnext: i.views.convnext.shallow_clone(),
            dinov2: i.views.dinov2.shallow_clone(),
        })
        .collect();
    let all = MovViews::cat(&parts);
    drop(parts);
    let total_views = all.len();
    stats.views = total_views as usize;
    let chunk = opts.max_views.max(1) as i64;
    let mut feats = Vec::new();
    let mut start = 0;
    while start < total_views {
        let n = chunk.min(total_views - start);
        let views = MovViews {
            convnext: all.convnext.narrow(0, start, n),
            dinov2: all.dinov2.narrow(0, start, n),
        };
        feats.push(loaded.model.encode_views(&views)?);
        start += n;
    }
    drop(all);
    let feats = Tensor::cat(&feats, 0);
    let mut per_page = Vec::with_capacity(pages.len());
    let mut offset = 0;
    for input in &inputs {
        let n = input.views.len();
        let block = loaded
            .model
            .image_block(&feats.narrow(0, offset, n), &input.skipped)?;
        per_page.push(block);
        offset += n;
    }
    drop(inputs);
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
    // Continuous batching: rows stream through `max_rows` decode slots; a row that
    // stops frees its slot for the next at once.
    let longest = rows.iter().map(|r| r.seq.size()[0]).max().unwrap_or(1);
    let capacity = longest + opts.max_new_tokens as i64;
    let by_tokens = (opts.max_tokens_in_flight as i64 / capacity.max(1)).max(1) as usize;
    let slots = opts.max_rows.max(1).min(by_tokens).min(rows.len());
    stats.slots = slots;
    let kind = rows
        .first()
        .map(|r| r.seq.kind())
        .unwrap_or(tch::Kind::Float);
    let mut decoder = Decoder::new(
        loaded.model.llm(),
        &cfg,
        slots,
        capacity,
        READ_EVERY,
        kind,
        loaded.device,
    )?;
    let mut outputs: Vec<Option<Generated>> = vec![None; rows.len()];
    let mut next = 0;
    while next < rows.len() || !decoder.is_idle() {
        while next < rows.len() && decoder.free_slots() > 0 {
            decoder
                .admit(next, &rows[next].seq, opts.max_new_tokens)
                .with_context(|| format!("row {next} of {} cannot be generated", rows.len()))?;
            next += 1;
        }
        for done in decoder.step().context("decoding failed")? {
            outputs[done.id] = Some(done.output);
        }
    }
    (stats.prefill, stats.decode) = decoder.timings();
    stats.host_reads = decoder.host_reads();
    let outputs: Vec<Generated> = outputs
        .into_iter()
        .map(|o| o.expect("every admitted row finishes"))
        .collect();

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
