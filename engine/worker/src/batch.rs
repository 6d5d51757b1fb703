//! Pages ready for SPHINX-X and how big their batches on the device may get.
//!
//! Pages arrive as [`PreparedPage`]s (the 8-bit canvas the tiler made, its padding plan,
//! frame, tasks), from a bundle or a bitmap by the same tiling. Each page's views come
//! from [`Sphinx::page_input`](sphinx_model::sphinx::Sphinx::page_input), the one
//! page-to-model path (training uses it too). A skip-token model never encodes padding
//! cells; a released model encodes every cell. [`crate::stream`] runs them: views of many
//! pages encoded together, then (page, task) rows through continuous-batching decode
//! slots.

use anyhow::{bail, Result};
use image::RgbImage;
use sphinx_core::boxes::PageFrame;
use sphinx_core::manifest::Preprocess;
use sphinx_core::tiling::{tile_page, TileConfig, TiledPage};
use sphinx_core::PageBundle;
use sphinx_core::{PageJob, Task};
use sphinx_model::generate::Sampling;
use sphinx_model::mov::MovConfig;
use sphinx_model::sphinx::{self, PageViews, Sphinx};
use sphinx_model::views::canvas_tensor;
use std::time::Duration;
use tch::Device;

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
        let frame = PageFrame::from_manifest(m)?;
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

/// Default bound on one prefill pass: 12 rows of a SPHINX-Tiny-1k page.
pub const DEFAULT_MAX_PREFILL_TOKENS: usize = 16_384;

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
    /// Positions prefilled in one pass: rows of one length admitted together are
    /// prefilled as one batch of at most this many positions (bounds its activations).
    pub max_prefill_tokens: usize,
    /// Replay each decode step from a CUDA graph (one launch instead of one per kernel).
    /// On a CUDA device only; elsewhere, or where a capture fails, decoding is eager.
    pub cuda_graphs: bool,
    /// Decode with the shapes graphs replay (attention over cache widths rounded up to
    /// [`sphinx_model::decode_graphs::KEYS_BUCKET`]) even without graphs, so a benchmark
    /// can tell what the rounding changes from what the graphs change.
    pub static_shapes: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            sampling: Sampling::Greedy,
            max_views: 32,
            max_rows: 32,
            max_tokens_in_flight: DEFAULT_MAX_TOKENS_IN_FLIGHT,
            max_prefill_tokens: DEFAULT_MAX_PREFILL_TOKENS,
            cuda_graphs: false,
            static_shapes: false,
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
    /// Decode steps replayed from CUDA graphs (zero when decoding eagerly).
    pub graph_replays: usize,
    /// Decode slots used (rows generated at once).
    pub slots: usize,
    /// Rows admitted while other rows were decoding (continuous batching at work: a
    /// freed slot refilled, or a page of a later micro-batch joining a running decode).
    pub joined: usize,
    /// Answers with a confidence, and the sum of those confidences: their mean is the
    /// metric that drifts down when the documents stop looking like what the model
    /// learnt from.
    pub scored_answers: usize,
    pub confidence_sum: f64,
}

impl BatchStats {
    /// Adds `s` in (device counters of pages run outside a stream's decoder); slots are
    /// the most used at once, not a sum.
    pub fn add(&mut self, s: &BatchStats) {
        self.pages += s.pages;
        self.views += s.views;
        self.rows += s.rows;
        self.generated_tokens += s.generated_tokens;
        self.encode += s.encode;
        self.prefill += s.prefill;
        self.decode += s.decode;
        self.host_reads += s.host_reads;
        self.graph_replays += s.graph_replays;
        self.joined += s.joined;
        self.scored_answers += s.scored_answers;
        self.confidence_sum += s.confidence_sum;
        self.slots = self.slots.max(s.slots);
    }
}
