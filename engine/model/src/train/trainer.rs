//! The training loop: builds the model from the job spec, draws conversations from the
//! mixture, runs frozen encoders without gradients and the trainable parts with them,
//! accumulates gradients over micro-batches, clips, steps AdamW on the schedule, logs a
//! JSON metrics line per step, checkpoints, and exports the model folder at the end.
//!
//! The loss of a step is the mean cross-entropy over ALL supervised tokens of its
//! micro-batches (each micro-batch's summed loss is divided by the step's target count
//! before its backward), so accumulation is exactly a larger batch.
//!
//! bf16: on CUDA (precision `auto` or `bf16`) the whole model is stored in bf16 and AdamW
//! keeps float32 master weights; on the CPU everything is float32 (CPU bf16 is slow and
//! the tests compare bits).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sphinx_core::isolate::Isolation;
use tch::{nn, Device, Kind, Reduction, Tensor};

use super::checkpoint::{Output, TrainState, METRICS};
use super::groups::{is_encoder_param, param_group, Group};
use super::optimizer::{AdamW, AdamWConfig};
use super::pages::{PageCache, RenderedPage};
use super::schedule::Schedule;
use super::spec::{Precision, TrainSpec};
use crate::char_tokenizer;
use crate::config::ModelConfig;
use crate::conversation::Template;
use crate::dataset::{tokenize, Cursor, Dataset, Mixture, IGNORE};
use crate::model_folder;
use crate::mov::ViewLayout;
use crate::sphinx::Sphinx;
use crate::tokenizer::Tokenizer;
use crate::weights;

/// How a run may end early.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Set by SIGTERM / ctrl-c: checkpoint after the current step, then return.
    pub stop: Arc<AtomicBool>,
    /// Return after this many steps in all WITHOUT a final checkpoint, as a killed
    /// process would (tests use it to interrupt a run).
    pub halt_at: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// All steps done; the model folder's key.
    Finished { model: String },
    /// Stopped at `step`, with the checkpoint written then (if any).
    Stopped {
        step: u64,
        checkpoint: Option<String>,
    },
}

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepMetrics {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Gradient norms (before clipping) of the encoders, of `visual_proj` + image tags,
    /// and of the LLM: whether the image side learns at all.
    pub grad_norm_encoders: f64,
    pub grad_norm_proj: f64,
    pub grad_norm_llm: f64,
    /// Spread of the projected visual tokens across the step's pages: the standard
    /// deviation over pages of each global-view token feature, averaged (0 = every page
    /// looks the same to the LLM).
    pub image_spread: f64,
    /// Supervised tokens in the step.
    pub targets: u64,
    /// Sequence positions (image + text) through the LLM.
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub step_s: f64,
}

/// One conversation ready for the model.
struct Example {
    ids: Vec<i64>,
    labels: Vec<i64>,
    image: Option<RenderedPage>,
}

/// A training run.
pub struct Trainer {
    pub spec: TrainSpec,
    pub config: ModelConfig,
    pub device: Device,
    vs: nn::VarStore,
    model: Sphinx,
    tokenizer: Tokenizer,
    tokenizer_json: Vec<u8>,
    template: Template,
    datasets: Vec<Dataset>,
    mixture: Mixture,
    opt: AdamW,
    schedule: Schedule,
    cursor: Cursor,
    step: u64,
    /// Dataset pages rendered and tiled, up to `spec.cache_pages` of them.
    pages: PageCache,
    max_text: usize,
    output: Output,
    /// Every metrics line of the run (restored on resume).
    pub metrics: Vec<String>,
}

impl Trainer {
    /// Builds the run; with `resume`, continues from the newest checkpoint if any.
    pub fn new(spec: TrainSpec, output: Output, device: Device, resume: bool) -> Result<Self> {
        // The data first: a missing image is said now, not at the step that draws it.
        let datasets = spec
            .datasets
            .iter()
            .map(|d| Dataset::load(Path::new(&d.path)))
            .collect::<Result<Vec<_>, _>>()?;
        // (A run would otherwise fail, and fail again on resume, at the step that draws it.)
        let images: Vec<PathBuf> = datasets
            .iter()
            .flat_map(|ds| ds.records.iter().filter_map(|r| ds.image_path(r)))
            .collect();
        crate::dataset::check_images_exist(&images, "records that name an image")?;
        let (config, tokenizer_json, weights_dir) = model_source(&spec)?;
        let vision = config.vision();
        if let Some(dir) = &weights_dir {
            // The inference floor (weights + one KV cache), before anything is allocated;
            // training's optimizer state comes on top of it.
            let path = dir.join(model_folder::WEIGHTS_FILE);
            crate::memory::ensure_fits(&path, &config.sphinx.llm, device)?;
        }
        let mut vs = nn::VarStore::new(device);
        let model = crate::seeded::with_seed(spec.model.seed as i64, || {
            Sphinx::build(
                &vs.root(),
                &config.sphinx.llm,
                &vision,
                config.sphinx.skip_tokens,
            )
        })?;
        if let Some(dir) = &weights_dir {
            let path = dir.join(model_folder::WEIGHTS_FILE);
            weights::load_files(&mut vs, &[path.as_path()])
                .with_context(|| format!("cannot load weights {}", path.display()))?;
        }
        let tokenizer = Tokenizer::from_bytes(&tokenizer_json, Path::new("model.tokenizer"))?;
        if tokenizer.vocab_size() as i64 > config.sphinx.llm.vocab_size {
            bail!(
                "the tokenizer has {} pieces but the model's vocab_size is {}",
                tokenizer.vocab_size(),
                config.sphinx.llm.vocab_size
            );
        }
        let bf16 = match spec.precision {
            Precision::Auto => device.is_cuda(),
            Precision::Bf16 => true,
            Precision::F32 => false,
        };
        if bf16 {
            vs.bfloat16();
        }
        let mut names: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut trainable = Vec::new();
        for (name, t) in names {
            let frozen = !spec.train_vision && is_encoder_param(&name);
            if frozen {
                let _ = t.set_requires_grad(false);
            } else {
                trainable.push((name, t));
            }
        }
        let mut opt = AdamW::new(
            AdamWConfig {
                weight_decay: spec.weight_decay,
                ..Default::default()
            },
            trainable,
        );
        for p in &mut opt.params {
            if param_group(&p.name) != Group::Llm {
                p.lr_scale = spec.vision_lr_scale;
            }
        }
        let weights: Vec<f64> = spec.datasets.iter().map(|d| d.weight).collect();
        let mixture = Mixture::new(
            spec.seed,
            datasets.iter().map(|d| d.records.len()).collect(),
            &weights,
        );
        let (tile, single_view) = (
            vision.tiling(config.sphinx.skip_tokens),
            vision.layout == ViewLayout::Single,
        );
        let image_tokens = if single_view {
            vision.tokens_per_view() + 2
        } else {
            vision.layout.slots() as i64 * (vision.tokens_per_view() + 2)
        };
        let room = (config.sphinx.llm.max_seq_len - image_tokens).max(1) as u64;
        let max_text = spec.max_text_tokens.unwrap_or(room).min(room) as usize;
        let schedule = Schedule {
            lr: spec.lr,
            min_lr: spec.min_lr,
            warmup_steps: spec.warmup_steps,
            total_steps: spec.steps,
        };
        let template = Template::named(&spec.template)?;
        let pages = PageCache::new(tile, spec.cache_pages);
        let mut trainer = Self {
            cursor: mixture.start(),
            spec,
            config,
            device,
            vs,
            model,
            tokenizer,
            tokenizer_json,
            template,
            datasets,
            mixture,
            opt,
            schedule,
            step: 0,
            pages,
            max_text,
            output,
            metrics: Vec::new(),
        };
        if resume {
            trainer.restore()?;
        }
        Ok(trainer)
    }

    /// Renders dataset pages where `isolation` says: `sphinx train` uses a child process
    /// under hard limits, as for uploads (datasets may hold anyone's PDFs); the default is
    /// in-process.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.pages.set_isolation(isolation);
        self
    }

    /// Optimizer steps done.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The trained parameters by name (float32 masters where kept).
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.opt
            .params
            .iter()
            .map(|p| {
                let t = p.master.as_ref().unwrap_or(&p.param);
                (p.name.clone(), t.detach().to_kind(Kind::Float))
            })
            .collect()
    }

    fn optimizer_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for p in &self.opt.params {
            v.push((format!("exp_avg/{}", p.name), p.exp_avg.shallow_clone()));
            v.push((
                format!("exp_avg_sq/{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
        }
        v
    }

    /// Writes a checkpoint of the current step; returns its key.
    pub fn save_checkpoint(&self) -> Result<String> {
        let state = TrainState {
            step: self.step,
            cursor: self.cursor.clone(),
            seed: self.spec.seed,
            spec: serde_json::to_value(&self.spec)?,
        };
        let dir = self.output.save_checkpoint(
            &self.spec.run,
            &state,
            &self.trainable(),
            &self.optimizer_tensors(),
            &self.metrics,
        )?;
        tracing::info!(step = self.step, checkpoint = %dir, "checkpoint written");
        Ok(dir)
    }

    /// Loads the newest checkpoint of this run, if there is one.
    fn restore(&mut self) -> Result<()> {
        let Some(dir) = self.output.newest_checkpoint(&self.spec.run)? else {
            tracing::warn!(run = %self.spec.run, "--resume: no checkpoint yet, starting fresh");
            return Ok(());
        };
        let (state, trainable, optimizer, metrics) = self.output.load_checkpoint(&dir)?;
        if state.seed != self.spec.seed {
            bail!(
                "checkpoint {dir} was written with seed {} but the job spec says {}",
                state.seed,
                self.spec.seed
            );
        }
        let find = |set: &[(String, Tensor)], name: &str| {
            set.iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .with_context(|| format!("checkpoint {dir} has no tensor {name}"))
        };
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.opt.params {
                let w = find(&trainable, &p.name)?.to_device(self.device);
                if let Some(m) = &mut p.master {
                    m.copy_(&w);
                }
                p.param.copy_(&w);
                p.exp_avg
                    .copy_(&find(&optimizer, &format!("exp_avg/{}", p.name))?);
                p.exp_avg_sq
                    .copy_(&find(&optimizer, &format!("exp_avg_sq/{}", p.name))?);
            }
            Ok(())
        })?;
        self.step = state.step;
        self.opt.step = state.step;
        self.cursor = state.cursor;
        self.metrics = metrics;
        tracing::info!(step = self.step, checkpoint = %dir, "resumed");
        Ok(())
    }

    /// Tokenized conversation and page views of record `r` of dataset `d`.
    fn example(&self, d: usize, r: usize) -> Result<Example> {
        let ds = &self.datasets[d];
        let rec = &ds.records[r];
        let name = rec
            .id
            .clone()
            .unwrap_or_else(|| format!("{}#{r}", ds.path.display()));
        let turns = rec
            .turns()
            .map_err(|e| anyhow::anyhow!("record {name}: {e}"))?;
        let tok = tokenize(&self.template, &self.tokenizer, &turns, self.max_text)
            .map_err(|e| anyhow::anyhow!("record {name}: {e}"))?;
        let image = match ds.image_path(rec) {
            None => None,
            Some(path) => Some(
                self.pages
                    .get(&path)
                    .with_context(|| format!("record {name}"))?,
            ),
        };
        Ok(Example {
            ids: tok.ids,
            labels: tok.labels,
            image,
        })
    }

    /// Renders the first `spec.cache_pages` distinct pages of the datasets into the page
    /// cache on every core, so a run's first epoch is not bound by one core's rendering
    /// (and step times measured early are the steady ones).
    pub fn warm_page_cache(&self) -> Result<usize> {
        let paths = self
            .datasets
            .iter()
            .flat_map(|ds| ds.records.iter().filter_map(|rec| ds.image_path(rec)));
        self.pages.warm(paths)
    }

    /// Forward + backward of one micro-batch; returns (summed loss, positions, spread of
    /// the projected global views across its pages).
    fn micro_batch(&self, batch: &[Example], step_targets: f64) -> Result<(f64, u64, f64)> {
        let dev = self.device;
        let mut seqs = Vec::with_capacity(batch.len());
        let mut globals = Vec::new();
        let (mut rows, mut cols, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        for (b, ex) in batch.iter().enumerate() {
            let ids = Tensor::from_slice(&ex.ids).to_device(dev);
            let image = match &ex.image {
                None => None,
                Some((canvas, padding)) => {
                    let page = self.model.page_input(&canvas.to_device(dev), padding)?;
                    let feats = if self.spec.train_vision {
                        self.model.mov().encode_with_grad(&page.views)?
                    } else {
                        self.model.mov().encode(&page.views)?
                    };
                    let proj = self.model.project(&feats);
                    globals.push(proj.get(0).detach());
                    Some(self.model.image_block(&proj, &page.skipped)?)
                }
            };
            let (seq, n_image) = self.model.assemble_with_image(&ids, image.as_ref())?;
            // Sequence: BOS at 0, the image block at 1..=n_image, ids[i] (i > 0) at
            // n_image + i. ids[j] is predicted at the position before it: the last image
            // token for ids[1] (as the reference's `h[:, image_words:]` reads it, and as
            // generation does), n_image + j - 1 after that. Without an image, j - 1.
            for j in 1..ex.ids.len() {
                if ex.labels[j] != IGNORE {
                    let at = n_image + j as i64 - 1;
                    rows.push(b as i64);
                    cols.push(at);
                    targets.push(ex.labels[j]);
                }
            }
            seqs.push(seq);
        }
        let longest = seqs.iter().map(|s| s.size()[1]).max().unwrap_or(0);
        let dim = self.config.sphinx.llm.dim;
        // Right padding: causal attention keeps it out of every real position.
        let padded: Vec<Tensor> = seqs
            .iter()
            .map(|s| {
                let pad = longest - s.size()[1];
                if pad == 0 {
                    s.shallow_clone()
                } else {
                    Tensor::cat(
                        &[
                            s.shallow_clone(),
                            s.zeros_like().narrow(1, 0, 1).expand([1, pad, dim], false),
                        ],
                        1,
                    )
                }
            })
            .collect();
        let positions = (padded.len() as i64 * longest) as u64;
        let spread = if globals.len() > 1 {
            Tensor::stack(&globals, 0)
                .to_kind(Kind::Float)
                .std_dim(0, true, false)
                .mean(Kind::Float)
                .double_value(&[])
        } else {
            0.0
        };
        if targets.is_empty() {
            return Ok((0.0, positions, spread));
        }
        let hidden = self
            .model
            .llm()
            .forward_embeds(&Tensor::cat(&padded, 0), 0, None, None)?;
        let rows = Tensor::from_slice(&rows).to_device(dev);
        let cols = Tensor::from_slice(&cols).to_device(dev);
        let picked = hidden.index(&[Some(rows), Some(cols)]);
        let logits = self.model.llm().logits(&picked).to_kind(Kind::Float);
        let targets = Tensor::from_slice(&targets).to_device(dev);
        let loss = logits.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Sum, IGNORE, 0.0);
        let value = loss.double_value(&[]);
        (loss / step_targets).backward();
        Ok((value, positions, spread))
    }

    /// One optimizer step over `batch_size * grad_accum` conversations.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let lr = self.schedule.lr_at(self.step);
        let per_micro = self.spec.batch_size as usize;
        let draws: Vec<(usize, usize)> = (0..per_micro * self.spec.grad_accum as usize)
            .map(|_| self.mixture.next(&mut self.cursor))
            .collect();
        let examples = draws
            .iter()
            .map(|&(d, r)| self.example(d, r))
            .collect::<Result<Vec<_>>>()?;
        let n_targets: usize = examples
            .iter()
            .map(|e| e.labels.iter().skip(1).filter(|&&l| l != IGNORE).count())
            .sum();
        self.opt.zero_grad();
        let (mut loss_sum, mut tokens, mut spread) = (0.0, 0, 0.0);
        let micros = examples.chunks(per_micro).len().max(1);
        for micro in examples.chunks(per_micro) {
            let (l, t, s) = self.micro_batch(micro, n_targets.max(1) as f64)?;
            loss_sum += l;
            tokens += t;
            spread += s / micros as f64;
        }
        let group_norm = |g: Group| {
            let squares: Vec<Tensor> = self
                .opt
                .params
                .iter()
                .filter(|p| param_group(&p.name) == g)
                .filter_map(|p| {
                    let grad = p.param.grad();
                    grad.defined()
                        .then(|| grad.to_kind(Kind::Float).square().sum(Kind::Float))
                })
                .collect();
            if squares.is_empty() {
                0.0
            } else {
                Tensor::stack(&squares, 0)
                    .sum(Kind::Float)
                    .sqrt()
                    .double_value(&[])
            }
        };
        let (gn_enc, gn_proj, gn_llm) = (
            group_norm(Group::Encoders),
            group_norm(Group::Projector),
            group_norm(Group::Llm),
        );
        let grad_norm = if self.spec.clip_grad > 0.0 {
            self.opt.clip_grad_norm(self.spec.clip_grad)
        } else {
            self.opt.grad_norm()
        };
        self.opt.step(lr);
        self.step += 1;
        let step_s = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: self.step,
            loss: loss_sum / n_targets.max(1) as f64,
            lr,
            grad_norm,
            grad_norm_encoders: gn_enc,
            grad_norm_proj: gn_proj,
            grad_norm_llm: gn_llm,
            image_spread: spread,
            targets: n_targets as u64,
            tokens,
            tokens_per_s: tokens as f64 / step_s.max(1e-9),
            step_s,
        })
    }

    /// Runs to `spec.steps` (or until stopped), calling `on_step` after every step;
    /// checkpoints every `checkpoint_every` steps and exports the model at the end.
    pub fn run(
        &mut self,
        ctl: &RunControl,
        on_step: &mut dyn FnMut(&StepMetrics),
    ) -> Result<TrainOutcome> {
        if self.pages.capacity() > 0 && self.step < self.spec.steps {
            let started = std::time::Instant::now();
            let n = self.warm_page_cache()?;
            tracing::info!(
                pages = n,
                seconds = started.elapsed().as_secs_f64(),
                "pages pre-rendered"
            );
        }
        while self.step < self.spec.steps {
            let m = self.train_step()?;
            self.metrics.push(serde_json::to_string(&m)?);
            on_step(&m);
            let every = self.spec.checkpoint_every;
            if every > 0 && self.step.is_multiple_of(every) && self.step < self.spec.steps {
                self.save_checkpoint()?;
            }
            if ctl.halt_at == Some(self.step) {
                return Ok(TrainOutcome::Stopped {
                    step: self.step,
                    checkpoint: None,
                });
            }
            if ctl.stop.load(Ordering::SeqCst) {
                let dir = self.save_checkpoint()?;
                return Ok(TrainOutcome::Stopped {
                    step: self.step,
                    checkpoint: Some(dir),
                });
            }
        }
        self.save_checkpoint()?;
        let model = self.export()?;
        Ok(TrainOutcome::Finished { model })
    }

    /// Publishes `models/<run>/` (config.json, model.safetensors, tokenizer.json,
    /// metrics.jsonl) and `models/latest`.
    pub fn export(&self) -> Result<String> {
        let kind = if self.spec.export_bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        };
        let masters: std::collections::HashMap<&str, &Tensor> = self
            .opt
            .params
            .iter()
            .filter_map(|p| p.master.as_ref().map(|m| (p.name.as_str(), m)))
            .collect();
        let mut named: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| {
                let t = masters.get(n.as_str()).map_or(t.detach(), |m| m.detach());
                (n, t.to_kind(kind))
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let weights = super::checkpoint::safetensors_bytes(&named, model_folder::WEIGHTS_FILE)?;
        let files = vec![
            (
                model_folder::CONFIG_FILE,
                self.config.to_json().into_bytes(),
            ),
            (model_folder::WEIGHTS_FILE, weights),
            (model_folder::TOKENIZER_FILE, self.tokenizer_json.clone()),
            (METRICS, super::checkpoint::lines(&self.metrics)),
        ];
        Ok(self.output.export_model(&self.spec.run, files)?)
    }
}

/// The model config, tokenizer JSON and (to fine-tune) weights folder of a spec.
fn model_source(spec: &TrainSpec) -> Result<(ModelConfig, Vec<u8>, Option<PathBuf>)> {
    if let Some(dir) = &spec.model.dir {
        let dir = PathBuf::from(dir);
        let config = ModelConfig::from_json_file(&dir.join(model_folder::CONFIG_FILE))
            .with_context(|| format!("model.dir {}", dir.display()))?;
        let tok = std::fs::read(dir.join(model_folder::TOKENIZER_FILE))
            .with_context(|| format!("model.dir {}: cannot read tokenizer.json", dir.display()))?;
        return Ok((config, tok, Some(dir)));
    }
    let name = spec.model.config.as_deref().unwrap_or_default();
    let config = match ModelConfig::named(name) {
        Some(c) => c,
        None => ModelConfig::from_json_file(Path::new(name)).with_context(|| {
            format!(
                "model.config {name:?} is neither a preset ({}) nor a readable config file",
                crate::config::MODEL_CONFIG_NAMES.join(", ")
            )
        })?,
    };
    let tok = match spec.model.tokenizer.as_deref().unwrap_or("char") {
        "char" => char_tokenizer::tokenizer_json().into_bytes(),
        "char-prompts" => char_tokenizer::prompt_tokenizer_json().into_bytes(),
        path => std::fs::read(path).with_context(|| format!("model.tokenizer {path}"))?,
    };
    Ok((config, tok, None))
}
