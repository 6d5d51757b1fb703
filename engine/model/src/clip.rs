//! CLIP ViT-L/14, the third expert of the four-expert MoV (SPHINX, SPHINX-MoE).
//!
//! CLIP: "Learning Transferable Visual Models From Natural Language Supervision" (Radford
//! et al., 2021). LLaMA2-Accessory (`accessory/model/LLM/llama_ens5.py`,
//! `mixtral_sparse_ens5.py`) builds open_clip's `ViT-L-14` (`pretrained=None`: the weights
//! come from the SPHINX checkpoint), drops the text tower and runs `clip_encode_image`:
//! patchify conv, the class embedding prepended, position embeddings, `ln_pre`, the
//! transformer, then `ln_post` on ALL tokens (cls + spatial) and no projection, so at 224 px
//! it gives 257 x 1024 features. The reference permutes to sequence-first for open_clip's
//! old sequence-first transformer; attention runs over the tokens of each image either way.
//!
//! open_clip builds `ViT-L-14` without `quick_gelu`, so its MLP uses exact `nn.GELU`
//! ([`ClipConfig::quick_gelu`] covers OpenAI-style `x * sigmoid(1.702 x)` models).
//!
//! Parameter names are open_clip's `VisionTransformer`, below the reference's `clip.visual`:
//! `conv1` (no bias), `class_embedding`, `positional_embedding`, `ln_pre`,
//! `transformer.resblocks.N.{ln_1,attn.in_proj_weight,attn.in_proj_bias,attn.out_proj,ln_2,
//! mlp.c_fc,mlp.c_proj}`, `ln_post`, and `proj` (declared so checkpoints load strictly,
//! unused as in the reference).

use tch::nn::{self, Module};
use tch::Tensor;

use crate::layers::{self, check_pixels};
use crate::vision_error::VisionError;

/// `nn.LayerNorm` default epsilon, which every open_clip ViT norm uses.
const LN_EPS: f64 = 1e-5;
/// open_clip `VisionTransformer` default MLP ratio.
const MLP_RATIO: i64 = 4;
/// Width of one attention head in open_clip (`CLIPVisionCfg.head_width`).
pub const HEAD_WIDTH: i64 = 64;

/// Sizes of one open_clip ViT; released sizes are named constructors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    pub width: i64,
    pub layers: i64,
    /// Side of a square patch in pixels.
    pub patch_size: i64,
    /// Side of the image the position embeddings were made for (no interpolation).
    pub image_size: i64,
    /// Width of the unused `proj` (the CLIP embedding size, 768 for ViT-L/14).
    pub output_dim: i64,
    /// OpenAI's QuickGELU instead of `nn.GELU` (false for the reference's `ViT-L-14`).
    #[serde(default)]
    pub quick_gelu: bool,
}

impl ClipConfig {
    /// open_clip `ViT-L-14`: 1024 wide, 24 layers, 16 heads, patch 14 at 224 px.
    pub fn vitl14() -> Self {
        Self {
            width: 1024,
            layers: 24,
            patch_size: 14,
            image_size: 224,
            output_dim: 768,
            quick_gelu: false,
        }
    }

    /// Two layers of two heads at 56 px (4x4 patches + cls), for CPU parity tests.
    pub fn tiny_test() -> Self {
        Self {
            width: 128,
            layers: 2,
            patch_size: 14,
            image_size: 56,
            output_dim: 32,
            quick_gelu: false,
        }
    }

    pub fn heads(&self) -> i64 {
        self.width / HEAD_WIDTH
    }

    /// Side of the token grid.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    fn validate(&self) -> Result<(), VisionError> {
        let positive = [
            self.width,
            self.layers,
            self.patch_size,
            self.image_size,
            self.output_dim,
        ];
        if positive.iter().any(|&v| v <= 0)
            || self.width % HEAD_WIDTH != 0
            || self.image_size % self.patch_size != 0
        {
            return Err(VisionError::Config(format!(
                "CLIP sizes must be positive, width a multiple of {HEAD_WIDTH} and image_size \
                 of patch_size: {self:?}"
            )));
        }
        Ok(())
    }
}

/// `nn.MultiheadAttention` as open_clip uses it: packed in-projection with bias.
#[derive(Debug)]
struct Attention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let qkv = x.linear(&self.in_proj_weight, Some(&self.in_proj_bias));
        self.out_proj
            .forward(&layers::self_attend(&qkv, self.heads))
    }
}

/// open_clip `ResidualAttentionBlock` (no layer scale in ViT-L-14).
#[derive(Debug)]
struct Block {
    ln_1: nn::LayerNorm,
    attn: Attention,
    ln_2: nn::LayerNorm,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
    quick_gelu: bool,
}

impl Block {
    fn new(p: nn::Path, cfg: &ClipConfig) -> Self {
        let w = cfg.width;
        let a = &p / "attn";
        let bound = 1.0 / (w as f64).sqrt();
        Self {
            ln_1: layer_norm(&p / "ln_1", w),
            attn: Attention {
                in_proj_weight: a.var(
                    "in_proj_weight",
                    &[3 * w, w],
                    nn::Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                ),
                in_proj_bias: a.zeros("in_proj_bias", &[3 * w]),
                out_proj: nn::linear(&a / "out_proj", w, w, Default::default()),
                heads: cfg.heads(),
            },
            ln_2: layer_norm(&p / "ln_2", w),
            c_fc: nn::linear(&p / "mlp" / "c_fc", w, MLP_RATIO * w, Default::default()),
            c_proj: nn::linear(&p / "mlp" / "c_proj", MLP_RATIO * w, w, Default::default()),
            quick_gelu: cfg.quick_gelu,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attn.forward(&self.ln_1.forward(x));
        let h = self.c_fc.forward(&self.ln_2.forward(&x));
        let h = if self.quick_gelu {
            &h * (&h * 1.702).sigmoid()
        } else {
            h.gelu("none")
        };
        &x + self.c_proj.forward(&h)
    }
}

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    layers::layer_norm(p, dim, LN_EPS)
}

/// The CLIP image tower returning every `ln_post`-normed token (cls first).
#[derive(Debug)]
pub struct ClipVision {
    conv1: nn::Conv2D,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: nn::LayerNorm,
    blocks: Vec<Block>,
    ln_post: nn::LayerNorm,
    config: ClipConfig,
}

impl ClipVision {
    /// Builds the tower under `p` (the reference's `clip.visual`).
    pub fn new(p: &nn::Path, config: &ClipConfig) -> Result<Self, VisionError> {
        config.validate()?;
        let w = config.width;
        let conv = nn::ConvConfig {
            stride: config.patch_size,
            bias: false,
            ..Default::default()
        };
        let conv1 = nn::conv2d(p / "conv1", 3, w, config.patch_size, conv);
        // open_clip's init scale `width ** -0.5`; real weights replace it.
        let scale = nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0 / (w as f64).sqrt(),
        };
        let class_embedding = p.var("class_embedding", &[w], scale);
        let tokens = config.grid() * config.grid() + 1;
        let positional_embedding = p.var("positional_embedding", &[tokens, w], scale);
        let _proj = p.var("proj", &[w, config.output_dim], scale);
        let blocks = (0..config.layers)
            .map(|i| Block::new(p / "transformer" / "resblocks" / i, config))
            .collect();
        Ok(Self {
            conv1,
            class_embedding,
            positional_embedding,
            ln_pre: layer_norm(p / "ln_pre", w),
            blocks,
            ln_post: layer_norm(p / "ln_post", w),
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// CLIP-normalized pixels `[B, 3, S, S]` (`S = image_size`) -> `[B, 1 + grid^2, width]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, VisionError> {
        check_pixels("CLIP", pixels, self.config.patch_size)?;
        let size = pixels.size();
        let s = self.config.image_size;
        if size[2] != s || size[3] != s {
            return Err(VisionError::Shape(format!(
                "CLIP views must be {s}x{s} (its position embeddings are not interpolated), \
                 got {size:?}"
            )));
        }
        let b = size[0];
        let w = self.config.width;
        let patches = self
            .conv1
            .forward(&pixels.to_kind(self.conv1.ws.kind()))
            .flatten(2, 3)
            .transpose(1, 2);
        let cls = self.class_embedding.view([1, 1, w]).expand([b, 1, w], true);
        let x = Tensor::cat(&[cls, patches], 1) + &self.positional_embedding;
        let mut x = self.ln_pre.forward(&x);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        Ok(self.ln_post.forward(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn vitl14_gives_257_tokens_of_1024_in_16_heads() {
        let c = ClipConfig::vitl14();
        assert_eq!((c.heads(), c.grid() * c.grid() + 1), (16, 257));
    }

    #[test]
    fn wrong_view_size_is_refused() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = ClipVision::new(&vs.root(), &ClipConfig::tiny_test()).unwrap();
        let x = Tensor::zeros([1, 3, 56, 56], (Kind::Float, tch::Device::Cpu));
        assert_eq!(m.forward(&x).unwrap().size(), [1, 17, 128]);
        let bad = Tensor::zeros([1, 3, 70, 70], (Kind::Float, tch::Device::Cpu));
        let err = m.forward(&bad).unwrap_err().to_string();
        assert!(err.contains("56x56"), "{err}");
    }
}
