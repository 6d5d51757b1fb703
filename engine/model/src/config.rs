//! Model hyper-parameters, named and defaulted exactly like the reference's `ModelArgs`
//! (LLaMA2-Accessory `accessory/model/LLM/llama_ens_light.py`), so a converted
//! checkpoint's `config.json` maps onto [`LlamaConfig`] field for field.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read model config {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("cannot write model config {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("model config {path} is not valid JSON for this schema: {error}")]
    Parse {
        path: String,
        error: serde_json::Error,
    },
    #[error("model config {path} is inconsistent: {reason}")]
    Invalid { path: String, reason: String },
}

/// The reference precomputes RoPE for `max_seq_len * 2` positions (`llama_ens_light.py`);
/// [`LlamaConfig::rope_positions`] is the resulting bound on a sequence.
pub const ROPE_TABLE_FACTOR: i64 = 2;

/// Reference `ModelArgs.multiple_of` default: SwiGLU hidden size rounds up to this.
const DEFAULT_MULTIPLE_OF: i64 = 256;
/// Reference `ModelArgs.norm_eps` default.
const DEFAULT_NORM_EPS: f64 = 1e-5;
/// Reference `ModelArgs.rope_theta` default (Meta LLaMA's RoPE base).
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
/// Reference `ModelArgs.max_seq_len` default.
const DEFAULT_MAX_SEQ_LEN: i64 = 2048;

fn default_multiple_of() -> i64 {
    DEFAULT_MULTIPLE_OF
}
fn default_norm_eps() -> f64 {
    DEFAULT_NORM_EPS
}
fn default_rope_theta() -> f64 {
    DEFAULT_ROPE_THETA
}
fn default_max_seq_len() -> i64 {
    DEFAULT_MAX_SEQ_LEN
}

/// Hyper-parameters of a LLaMA-family decoder (field names = reference `ModelArgs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// Model width (embedding size).
    pub dim: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    /// Key/value heads for grouped-query attention; `None` means `n_heads` (plain MHA).
    #[serde(default)]
    pub n_kv_heads: Option<i64>,
    pub vocab_size: i64,
    /// SwiGLU hidden size is rounded up to a multiple of this.
    #[serde(default = "default_multiple_of")]
    pub multiple_of: i64,
    /// Optional factor on the SwiGLU hidden size before rounding (LLaMA-2 70B uses 1.3).
    #[serde(default)]
    pub ffn_dim_multiplier: Option<f64>,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Linear RoPE scaling: the reference multiplies every position by this factor.
    #[serde(default)]
    pub rope_scaling: Option<f64>,
    /// Longest sequence (prompt + generated) the model is built for.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: i64,
    /// A sparse mixture of experts in place of every SwiGLU (Mixtral); `None`: dense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeConfig>,
    /// An explicit SwiGLU hidden size (the reference's `ModelArgs.hidden_dim`, a Hugging
    /// Face config's `intermediate_size`) for backbones not sized by the `multiple_of`
    /// rule (InternLM2-1.8B's 8192 is no rounding of `8/3 * 2048`); `None`: the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_dim: Option<i64>,
}

/// Mixtral's sparse mixture of SwiGLU experts (the reference's `mixtral_sparse*.py`
/// `ModelArgs.moe` and `hidden_dim`): each token goes to its `experts_per_token` most
/// likely experts of `num_experts`, weighted by their renormalised router probabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoeConfig {
    pub num_experts: i64,
    pub experts_per_token: i64,
    /// Each expert's SwiGLU hidden size (the reference's `hidden_dim`, 14336 for 8x7B).
    pub hidden_dim: i64,
}

impl LlamaConfig {
    /// TinyLlama-1.1B, the LLM of SPHINX-Tiny and SPHINX-Tiny-1k (its published
    /// `config.json`: 22 layers, 32 heads, 4 KV heads, hidden 5632, eps 1e-5, theta 1e4).
    pub fn tinyllama() -> Self {
        Self {
            dim: 2048,
            n_layers: 22,
            n_heads: 32,
            n_kv_heads: Some(4),
            vocab_size: 32_000,
            multiple_of: DEFAULT_MULTIPLE_OF,
            ffn_dim_multiplier: None,
            norm_eps: DEFAULT_NORM_EPS,
            rope_theta: DEFAULT_ROPE_THETA,
            rope_scaling: None,
            // Room for 5 views x (257 + 2) image tokens plus a long OCR answer.
            max_seq_len: 4096,
            moe: None,
            hidden_dim: None,
        }
    }

    /// LLaMA2-13B (Meta's `params.json`: dim 5120, 40 layers, 40 heads, no GQA,
    /// `multiple_of` 256 so the SwiGLU is 13824 wide, eps 1e-5, vocab 32000), the LLM of
    /// SPHINX and SPHINX-1k; 4096 positions as LLaMA2 was trained.
    pub fn llama2_13b() -> Self {
        Self {
            dim: 5120,
            n_layers: 40,
            n_heads: 40,
            n_kv_heads: None,
            max_seq_len: 4096,
            ..Self::tinyllama()
        }
    }

    /// Mixtral-8x7B (its published `params.json`: dim 4096, 32 layers, 32 heads, 8 KV heads,
    /// 8 experts of hidden 14336, top-2, eps 1e-5, rope theta 1e6, vocab 32000), the LLM of
    /// SPHINX-MoE.
    pub fn mixtral_8x7b() -> Self {
        Self {
            dim: 4096,
            n_layers: 32,
            n_heads: 32,
            n_kv_heads: Some(8),
            rope_theta: 1_000_000.0,
            moe: Some(MoeConfig {
                num_experts: 8,
                experts_per_token: 2,
                hidden_dim: 14_336,
            }),
            ..Self::tinyllama()
        }
    }

    /// InternLM2-7B (its published `config.json`: hidden 4096, 32 layers, 32 heads, 8 KV
    /// heads, intermediate 14336, rms eps 1e-5, rope theta 1e6, vocab 92544), the LLM of
    /// SPHINX-InternLM2 once `scripts/convert_hf_llm.py` has unpacked its `wqkv`.
    pub fn internlm2_7b() -> Self {
        Self {
            dim: 4096,
            n_layers: 32,
            n_heads: 32,
            n_kv_heads: Some(8),
            vocab_size: 92_544,
            rope_theta: 1_000_000.0,
            hidden_dim: Some(14_336),
            ..Self::tinyllama()
        }
    }

    /// A tiny model for tests: GQA (2 KV heads for 4 query heads) and a non-default
    /// `multiple_of`/`ffn_dim_multiplier`, so every sizing branch runs.
    pub fn tiny_test() -> Self {
        Self {
            dim: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: Some(2),
            vocab_size: 320,
            multiple_of: 48,
            ffn_dim_multiplier: Some(1.3),
            norm_eps: DEFAULT_NORM_EPS,
            rope_theta: DEFAULT_ROPE_THETA,
            rope_scaling: None,
            max_seq_len: 128,
            moe: None,
            hidden_dim: None,
        }
    }

    /// Key/value heads (the reference's `n_kv_heads or n_heads`).
    pub fn kv_heads(&self) -> i64 {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.dim / self.n_heads
    }

    /// Positions a sequence (prompt and answer) may reach: the length of the RoPE table.
    pub fn rope_positions(&self) -> i64 {
        self.max_seq_len * ROPE_TABLE_FACTOR
    }

    /// SwiGLU hidden size: the explicit `hidden_dim` when set, else computed exactly like
    /// the reference `FeedForward.__init__`: `int(2 * 4 * dim / 3)`, times
    /// `ffn_dim_multiplier` (truncated), rounded up to `multiple_of`.
    pub fn ffn_hidden_dim(&self) -> i64 {
        if let Some(h) = self.hidden_dim {
            return h;
        }
        let mut hidden = 2 * (4 * self.dim) / 3;
        if let Some(m) = self.ffn_dim_multiplier {
            hidden = (m * hidden as f64) as i64;
        }
        self.multiple_of * ((hidden + self.multiple_of - 1) / self.multiple_of)
    }

    /// Checks the divisibility and positivity rules the forward pass relies on.
    pub fn validate(&self) -> Result<(), String> {
        let must_be_positive = [
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.kv_heads()),
            ("vocab_size", self.vocab_size),
            ("multiple_of", self.multiple_of),
            ("max_seq_len", self.max_seq_len),
            ("hidden_dim", self.ffn_hidden_dim()),
        ];
        for (name, v) in must_be_positive {
            if v <= 0 {
                return Err(format!("{name} must be positive, got {v}"));
            }
        }
        if let Some(m) = &self.moe {
            if m.num_experts < 1 || m.hidden_dim < 1 {
                return Err(format!("moe needs experts and a hidden size, got {m:?}"));
            }
            if m.experts_per_token < 1 || m.experts_per_token > m.num_experts {
                return Err(format!(
                    "moe.experts_per_token must be in 1..={}, got {}",
                    m.num_experts, m.experts_per_token
                ));
            }
        }
        if self.dim % self.n_heads != 0 {
            return Err(format!(
                "dim {} is not divisible by n_heads {}",
                self.dim, self.n_heads
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if self.n_heads % self.kv_heads() != 0 {
            return Err(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads,
                self.kv_heads()
            ));
        }
        if !positive(self.norm_eps) || !positive(self.rope_theta) {
            return Err("norm_eps and rope_theta must be positive".into());
        }
        if let Some(m) = self.ffn_dim_multiplier {
            if !positive(m) {
                return Err(format!("ffn_dim_multiplier must be positive, got {m}"));
            }
        }
        if let Some(s) = self.rope_scaling {
            if !positive(s) {
                return Err(format!("rope_scaling must be positive, got {s}"));
            }
        }
        Ok(())
    }
}

/// `x > 0`, false for NaN (so a NaN in a config is rejected too).
fn positive(x: f64) -> bool {
    x > 0.0
}

/// Which reference model file a checkpoint was trained with (its `meta.json` `llama_type`);
/// it fixes the view layout: one 512 px view, or a global view plus 2x2 sub-images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlamaType {
    /// SPHINX-Tiny: `llama_ens_light.py`.
    LlamaEnsLight,
    /// SPHINX-Tiny-1k: `llama_ens5_light.py`.
    LlamaEns5Light,
    /// SPHINX (LLaMA2-13B): `llama_ens5.py`, the four-expert MoV on a 448 px canvas.
    LlamaEns5,
    /// SPHINX-MoE (Mixtral-8x7B): `mixtral_sparse_ens5.py`, the four-expert MoV at 1024 px.
    MixtralSparseEns5,
}

/// Everything the engine needs to build a SPHINX-X model from a converted checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SphinxConfig {
    pub llama_type: LlamaType,
    pub llm: LlamaConfig,
    /// Whether the model has SPHINX-X's learned `skip_token` (models trained here) or not
    /// (the released SPHINX-Tiny/-1k, whose public code encodes every cell). Written by
    /// the converter from the weights and checked against them at load; absent means
    /// `true`, the default of models trained here.
    #[serde(default = "default_skip_tokens")]
    pub skip_tokens: bool,
}

fn default_skip_tokens() -> bool {
    true
}

impl SphinxConfig {
    /// SPHINX-Tiny: TinyLlama + MoV on one 512 px view.
    pub fn sphinx_tiny() -> Self {
        Self {
            llama_type: LlamaType::LlamaEnsLight,
            llm: LlamaConfig::tinyllama(),
            skip_tokens: true,
        }
    }

    /// SPHINX-Tiny-1k: TinyLlama + MoV on a global view and 2x2 sub-images of 1024 px.
    pub fn sphinx_tiny_1k() -> Self {
        Self {
            llama_type: LlamaType::LlamaEns5Light,
            llm: LlamaConfig::tinyllama(),
            skip_tokens: true,
        }
    }

    /// SPHINX: LLaMA2-13B + the four-expert MoV on a 448 px canvas (`llama_ens5.py`).
    pub fn sphinx() -> Self {
        Self {
            llama_type: LlamaType::LlamaEns5,
            llm: LlamaConfig::llama2_13b(),
            skip_tokens: true,
        }
    }

    /// SPHINX-MoE: Mixtral-8x7B + the four-expert MoV at 1024 px (`mixtral_sparse_ens5.py`).
    pub fn sphinx_moe() -> Self {
        Self {
            llama_type: LlamaType::MixtralSparseEns5,
            llm: LlamaConfig::mixtral_8x7b(),
            skip_tokens: true,
        }
    }

    /// Tiny random-weight model for tests.
    pub fn tiny_test() -> Self {
        Self {
            llama_type: LlamaType::LlamaEns5Light,
            llm: LlamaConfig::tiny_test(),
            skip_tokens: true,
        }
    }

    /// Reads and validates a JSON config (as written by `scripts/convert_checkpoint.py`).
    pub fn from_json_file(path: &Path) -> Result<Self, ConfigError> {
        let (text, shown) = read_config(path)?;
        let cfg: Self = serde_json::from_str(&text).map_err(|error| ConfigError::Parse {
            path: shown.clone(),
            error,
        })?;
        cfg.llm.validate().map_err(|reason| ConfigError::Invalid {
            path: shown,
            reason,
        })?;
        Ok(cfg)
    }

    /// Writes the config as pretty JSON.
    pub fn to_json_file(&self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = serde_json::to_string_pretty(self).map_err(|error| ConfigError::Parse {
            path: shown.clone(),
            error,
        })?;
        std::fs::write(path, text + "\n").map_err(|error| ConfigError::Write { path: shown, error })
    }
}

/// A model folder's `config.json` as training writes it: the checkpoint config plus, for
/// models whose encoders are not the released ones (tiny test and nano models trained
/// here), the vision sizes. Released checkpoints have no `vision` key and get the
/// encoders of their `llama_type`, so converted and trained folders load the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(flatten)]
    pub sphinx: SphinxConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<crate::mov::MovConfig>,
}

/// Names accepted by [`ModelConfig::named`].
pub const MODEL_CONFIG_NAMES: [&str; 6] = [
    "tiny-train",
    "nano",
    "sphinx-tiny",
    "sphinx-tiny-1k",
    "sphinx",
    "sphinx-moe",
];

impl ModelConfig {
    /// The encoders this model uses: its own `vision`, else the released ones.
    pub fn vision(&self) -> crate::mov::MovConfig {
        self.vision
            .clone()
            .unwrap_or_else(|| crate::mov::MovConfig::for_llama_type(self.sphinx.llama_type))
    }

    /// A preset by name (to initialise a model randomly for training).
    pub fn named(name: &str) -> Option<Self> {
        let released = |sphinx| Self {
            sphinx,
            vision: None,
        };
        Some(match name {
            // The tiny test model with room for the character vocabulary and a page's
            // image block plus a few hundred characters (CPU training tests).
            "tiny-train" => Self {
                sphinx: SphinxConfig {
                    llm: LlamaConfig {
                        vocab_size: 384,
                        max_seq_len: 512,
                        ..LlamaConfig::tiny_test()
                    },
                    ..SphinxConfig::tiny_test()
                },
                vision: Some(crate::mov::MovConfig::tiny_test()),
            },
            "nano" => Self::nano(),
            "sphinx-tiny" => released(SphinxConfig::sphinx_tiny()),
            "sphinx-tiny-1k" => released(SphinxConfig::sphinx_tiny_1k()),
            "sphinx" => released(SphinxConfig::sphinx()),
            "sphinx-moe" => released(SphinxConfig::sphinx_moe()),
            _ => return None,
        })
    }

    /// The nano SPHINX-X, trained here on the CPU (`scripts/train-nano.sh`, docs/nano.md):
    /// the 2x2 grid and global view of SPHINX-Tiny-1k on a 256 px canvas, a three-stage
    /// ConvNeXt (stride 16, so each 128 px view gives 8x8 tokens and a token covers
    /// about one character of the nano's 22-28 px text) and a two-block DINOv2 at 112 px,
    /// and a 4-layer LLM over the character vocabulary of
    /// [`crate::char_tokenizer`]. A one-line page (256x64) keeps the global view and
    /// the two top cells (3 x 67 tokens) and skips the two bottom cells: ~200 image tokens.
    pub fn nano() -> Self {
        use crate::convnext::ConvNextConfig;
        use crate::dinov2::DinoConfig;
        use crate::mov::{MovConfig, ViewLayout};
        Self {
            sphinx: SphinxConfig {
                llama_type: LlamaType::LlamaEns5Light,
                // TinyLlama's shape rules (GQA 2:1 here, SwiGLU sizing, RoPE), scaled down.
                llm: LlamaConfig {
                    dim: 256,
                    n_layers: 4,
                    n_heads: 8,
                    vocab_size: 384,
                    max_seq_len: 1024,
                    ..LlamaConfig::tinyllama()
                },
                skip_tokens: true,
            },
            vision: Some(MovConfig {
                convnext: ConvNextConfig {
                    depths: vec![1, 1, 2],
                    dims: vec![32, 64, 128],
                    norm_eps: 1e-5,
                },
                dinov2: DinoConfig {
                    embed_dim: 128,
                    depth: 2,
                    num_heads: 4,
                    patch_size: 14,
                    pos_grid: 8,
                },
                convnext_size: 128,
                dinov2_size: 112,
                layout: ViewLayout::GlobalAndGrid { grid: 2 },
                four: None,
            }),
        }
    }

    /// Reads and validates a model folder's `config.json` (with or without `vision`).
    pub fn from_json_file(path: &Path) -> Result<Self, ConfigError> {
        let (text, shown) = read_config(path)?;
        Self::from_json_str(&text, &shown)
    }

    /// Parses and validates config JSON; `shown` names its source in errors.
    pub fn from_json_str(text: &str, shown: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_json::from_str(text).map_err(|error| ConfigError::Parse {
            path: shown.to_owned(),
            error,
        })?;
        cfg.sphinx
            .llm
            .validate()
            .map_err(|reason| ConfigError::Invalid {
                path: shown.to_owned(),
                reason,
            })?;
        Ok(cfg)
    }

    /// Pretty JSON, as written into a model folder.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes") + "\n"
    }
}

/// The text of a config file and the path as errors show it.
fn read_config(path: &Path) -> Result<(String, String), ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: shown.clone(),
        error,
    })?;
    Ok((text, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tinyllama_hidden_size_matches_its_published_5632() {
        assert_eq!(LlamaConfig::tinyllama().ffn_hidden_dim(), 5632);
        assert_eq!(LlamaConfig::tinyllama().head_dim(), 64);
    }

    #[test]
    fn family_presets_have_their_published_sizes() {
        let l13 = LlamaConfig::llama2_13b();
        assert_eq!(l13.ffn_hidden_dim(), 13824);
        assert_eq!((l13.head_dim(), l13.kv_heads()), (128, 40));
        let i7 = LlamaConfig::internlm2_7b();
        assert_eq!(i7.ffn_hidden_dim(), 14336);
        assert_eq!((i7.head_dim(), i7.kv_heads()), (128, 8));
        assert!(l13.validate().is_ok() && i7.validate().is_ok());
        assert!(LlamaConfig::mixtral_8x7b().validate().is_ok());
        for name in MODEL_CONFIG_NAMES {
            assert!(ModelConfig::named(name).is_some(), "{name}");
        }
        let moe = ModelConfig::named("sphinx-moe").unwrap().vision();
        assert_eq!((moe.feature_dim(), moe.tokens_per_view()), (5632, 32 + 257));
        let ens5 = ModelConfig::named("sphinx").unwrap().vision();
        assert_eq!(
            (ens5.canvas_size(), ens5.tokens_per_view()),
            (448, 32 + 257)
        );
        let bad = LlamaConfig {
            hidden_dim: Some(0),
            ..LlamaConfig::tiny_test()
        };
        assert!(bad.validate().unwrap_err().contains("hidden_dim"));
    }

    #[test]
    fn llama2_70b_sizing_with_multiplier() {
        // LLaMA-2 70B params.json: dim 8192, ffn_dim_multiplier 1.3, multiple_of 4096 -> 28672.
        let cfg = LlamaConfig {
            dim: 8192,
            multiple_of: 4096,
            ffn_dim_multiplier: Some(1.3),
            ..LlamaConfig::tinyllama()
        };
        assert_eq!(cfg.ffn_hidden_dim(), 28672);
    }

    fn shipped(name: &str) -> SphinxConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        SphinxConfig::from_json_file(&dir.join(name)).unwrap()
    }

    #[test]
    fn shipped_configs_equal_the_presets() {
        assert_eq!(shipped("sphinx-tiny.json"), SphinxConfig::sphinx_tiny());
        assert_eq!(
            shipped("sphinx-tiny-1k.json"),
            SphinxConfig::sphinx_tiny_1k()
        );
        assert_eq!(shipped("tiny-test.json"), SphinxConfig::tiny_test());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let nano = ModelConfig::from_json_file(&dir.join("nano.json")).unwrap();
        assert_eq!(nano, ModelConfig::nano());
        // A released config.json (no `vision`) reads as a ModelConfig too.
        let tiny = ModelConfig::from_json_file(&dir.join("sphinx-tiny.json")).unwrap();
        assert_eq!(tiny.vision, None);
        assert_eq!(tiny.sphinx, SphinxConfig::sphinx_tiny());
    }

    #[test]
    fn json_round_trip_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg.json");
        SphinxConfig::sphinx_tiny_1k().to_json_file(&path).unwrap();
        assert_eq!(
            SphinxConfig::from_json_file(&path).unwrap(),
            SphinxConfig::sphinx_tiny_1k()
        );
        std::fs::write(
            &path,
            r#"{"llama_type": "llama_ens_light", "llm": {"dim": 64}}"#,
        )
        .unwrap();
        let err = SphinxConfig::from_json_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("cfg.json") && err.contains("n_layers"),
            "{err}"
        );
        let mut bad = SphinxConfig::tiny_test();
        bad.llm.n_heads = 5;
        bad.to_json_file(&path).unwrap();
        let err = SphinxConfig::from_json_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("inconsistent") && err.contains("n_heads 5"),
            "{err}"
        );
    }

    #[test]
    fn validate_rejects_bad_head_split() {
        let cfg = LlamaConfig {
            n_kv_heads: Some(3),
            ..LlamaConfig::tiny_test()
        };
        assert!(cfg.validate().unwrap_err().contains("n_kv_heads"));
    }
}
