//! The training job spec: one JSON file (local or in the object store) that says
//! everything a run needs, so a scheduled job is just `sphinx train --config <spec>`.
//!
//! Unknown fields are refused and every bad value is reported with its field name, so a
//! typo fails at submission and not hours into a run.

use serde::{Deserialize, Serialize};

/// Where the model to train comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// A model folder (config.json, model.safetensors, tokenizer.json) to fine-tune; for
    /// `sphinx train` also `s3://bucket/models/<run>/` or `.../models/latest`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Or a config to initialise randomly: a preset name (`tiny-test`, `nano`, ...) or a
    /// path to a config JSON.
    #[serde(default)]
    pub config: Option<String>,
    /// Seed of the random initialisation (with `config`).
    #[serde(default)]
    pub seed: u64,
    /// Tokenizer for a randomly initialised model: `char` (the character tokenizer) or a
    /// path to a `tokenizer.json`. A model folder brings its own.
    #[serde(default)]
    pub tokenizer: Option<String>,
}

/// One dataset of the mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// JSONL in the unified conversation format; images are relative to its folder.
    pub path: String,
    /// Relative sampling weight (> 0).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}
fn default_accum() -> u64 {
    1
}
fn default_clip() -> f64 {
    1.0
}
fn default_template() -> String {
    "default".into()
}

/// Arithmetic precision of the trainable parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// bf16 parameters (float32 master weights in the optimizer) on CUDA, float32 on CPU.
    #[default]
    Auto,
    F32,
    Bf16,
}

/// The whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Run name: checkpoints go to `<output>/checkpoints/<run>/`, the model to
    /// `<output>/models/<run>/`.
    pub run: String,
    pub model: ModelSource,
    pub datasets: Vec<DatasetSpec>,
    /// Optimizer steps.
    pub steps: u64,
    /// Conversations per micro-batch.
    pub batch_size: u64,
    /// Micro-batches per optimizer step.
    #[serde(default = "default_accum")]
    pub grad_accum: u64,
    /// Peak learning rate.
    pub lr: f64,
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables.
    #[serde(default = "default_clip")]
    pub clip_grad: f64,
    /// Checkpoint every this many steps; 0 = only at the end / on SIGTERM.
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Seed of the data order (and of the initialisation unless `model.seed` is set).
    #[serde(default)]
    pub seed: u64,
    /// Output root (a folder or `s3://bucket/prefix`); `--out` overrides it.
    #[serde(default)]
    pub output: Option<String>,
    /// Longest training sequence in text tokens (the reference's `max_words`); longer
    /// conversations are truncated. Default: what the model's `max_seq_len` leaves after
    /// the image tokens.
    #[serde(default)]
    pub max_text_tokens: Option<u64>,
    /// Conversation template name (the reference's `conv_templates`).
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default)]
    pub precision: Precision,
    /// Also train the two encoders. Off in the paper (frozen MoV); on for models whose
    /// encoders are random (nano), which otherwise could not learn to read.
    #[serde(default)]
    pub train_vision: bool,
    /// Export the weights in bf16 (half the size) instead of float32.
    #[serde(default)]
    pub export_bf16: bool,
    /// Keep up to this many rendered pages in memory (as RGB8 views), so small
    /// datasets are rendered once; 0 renders every time.
    #[serde(default)]
    pub cache_pages: u64,
    /// Learning-rate factor of the vision side (both encoders and `visual_proj`) relative
    /// to `lr` (random encoders start near-linear, layer scale 1e-6, and may need more).
    #[serde(default = "one")]
    pub vision_lr_scale: f64,
}

/// A spec that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("job spec {source_name} is not valid JSON for the job schema: {error}")]
    Parse {
        source_name: String,
        error: serde_json::Error,
    },
    #[error("job spec {source_name}: field `{field}` {reason}")]
    Invalid {
        source_name: String,
        field: String,
        reason: String,
    },
}

impl TrainSpec {
    /// Parses and validates spec JSON; `source_name` names it in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self, SpecError> {
        let spec: Self = serde_json::from_str(text).map_err(|error| SpecError::Parse {
            source_name: source_name.to_owned(),
            error,
        })?;
        spec.validate()
            .map_err(|(field, reason)| SpecError::Invalid {
                source_name: source_name.to_owned(),
                field,
                reason,
            })?;
        Ok(spec)
    }

    /// Checks every value; returns the first bad field and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, r: String| Err((f.to_owned(), r));
        if self.run.is_empty()
            || !self
                .run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.run.starts_with('.')
        {
            return bad(
                "run",
                format!(
                    "must be a non-empty name of letters, digits, '-', '_', '.', got {:?}",
                    self.run
                ),
            );
        }
        match (&self.model.dir, &self.model.config) {
            (Some(_), Some(_)) => {
                return bad("model", "has both `dir` and `config`; give one".into())
            }
            (None, None) => {
                return bad(
                    "model",
                    "needs `dir` (a model folder) or `config` (a preset or config file)".into(),
                )
            }
            (Some(_), None) if self.model.tokenizer.is_some() => {
                return bad(
                    "model.tokenizer",
                    "only applies with `config`; a model folder brings its tokenizer".into(),
                )
            }
            _ => {}
        }
        if self.datasets.is_empty() {
            return bad("datasets", "must list at least one dataset".into());
        }
        for (i, d) in self.datasets.iter().enumerate() {
            if !(d.weight > 0.0 && d.weight.is_finite()) {
                return bad(
                    &format!("datasets[{i}].weight"),
                    format!("must be positive, got {}", d.weight),
                );
            }
            if d.path.is_empty() {
                return bad(&format!("datasets[{i}].path"), "is empty".into());
            }
        }
        for (f, v) in [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
        ] {
            if v == 0 {
                return bad(f, "must be at least 1".into());
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be positive, got {}", self.lr));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("min_lr", format!("must be in [0, lr], got {}", self.min_lr));
        }
        if self.warmup_steps > self.steps {
            return bad(
                "warmup_steps",
                format!("{} exceeds steps {}", self.warmup_steps, self.steps),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if !(self.clip_grad >= 0.0 && self.clip_grad.is_finite()) {
            return bad("clip_grad", format!("must be >= 0, got {}", self.clip_grad));
        }
        if !(self.vision_lr_scale > 0.0 && self.vision_lr_scale.is_finite()) {
            return bad(
                "vision_lr_scale",
                format!("must be positive, got {}", self.vision_lr_scale),
            );
        }
        if self.max_text_tokens == Some(0) {
            return bad("max_text_tokens", "must be at least 1".into());
        }
        Ok(())
    }
}
