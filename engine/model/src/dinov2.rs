//! DINOv2 ViT, the second expert of SPHINX-X's Mixture of Visual experts.
//!
//! DINOv2: "Learning Robust Visual Features without Supervision" (Oquab et al., 2023).
//! Follows facebookresearch/dinov2 `dinov2/models/vision_transformer.py` as built by its
//! hub entry `dinov2_vitg14` (`vit_giant2`, patch 14, `img_size=518`, layer scale,
//! `ffn_layer="swiglufused"`, `block_chunks=0`), which LLaMA2-Accessory loads as
//! `dinov2_vitg14` and reads through `forward_features`: SPHINX-X keeps the normed cls
//! token and the normed patch tokens (at 224 px: 257 x 1536).
//!
//! Parameter names are the hub model's: `patch_embed.proj`, `cls_token`, `pos_embed`,
//! `mask_token` (unused at inference, kept so checkpoints load strictly),
//! `blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.w12,mlp.w3,ls2.gamma}`, `norm`.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::layers::{self, check_pixels};
use crate::vision_error::VisionError;

/// LayerNorm epsilon of every DINOv2 norm (`partial(nn.LayerNorm, eps=1e-6)` in the reference).
const LN_EPS: f64 = 1e-6;
/// The reference adds 0.1 to the target grid before computing the bicubic scale factor
/// of the position embeddings ("to avoid floating point error", dino issue #8).
const INTERPOLATE_OFFSET: f64 = 0.1;
/// DINOv2 MLP ratio before the SwiGLU resizing (`mlp_ratio=4`).
const MLP_RATIO: f64 = 4.0;
/// `SwiGLUFFNFused` rounds its hidden width to a multiple of this.
const SWIGLU_MULTIPLE: i64 = 8;
/// Layer-scale init of the hub models (`init_values=1.0`); real weights replace it.
const LS_INIT: f64 = 1.0;

/// Sizes of one DINOv2 ViT with SwiGLU FFN; released sizes share all forward code.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoConfig {
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
    /// Side of a square patch in pixels.
    pub patch_size: i64,
    /// Side of the position-embedding grid the model was trained with (`img_size / patch`).
    pub pos_grid: i64,
}

impl DinoConfig {
    /// `dinov2_vitg14`: ViT-giant2, 1536 wide, 40 blocks, 24 heads, patch 14, trained at
    /// 518 px (37 x 37 position grid).
    pub fn vitg14() -> Self {
        Self {
            embed_dim: 1536,
            depth: 40,
            num_heads: 24,
            patch_size: 14,
            pos_grid: 518 / 14,
        }
    }

    /// A two-block model for CPU parity tests; its 6x6 position grid is interpolated
    /// like the full model's 37x37 one.
    pub fn tiny_test() -> Self {
        Self {
            embed_dim: 32,
            depth: 2,
            num_heads: 4,
            patch_size: 14,
            pos_grid: 6,
        }
    }

    /// SwiGLU hidden width: `(int(int(dim * 4) * 2 / 3) + 7) // 8 * 8` (4096 for ViT-g).
    pub fn ffn_hidden(&self) -> i64 {
        let hidden = (self.embed_dim as f64 * MLP_RATIO) as i64;
        let hidden = (hidden as f64 * 2.0 / 3.0) as i64;
        (hidden + SWIGLU_MULTIPLE - 1) / SWIGLU_MULTIPLE * SWIGLU_MULTIPLE
    }

    fn validate(&self) -> Result<(), VisionError> {
        let positive = [
            self.embed_dim,
            self.depth,
            self.num_heads,
            self.patch_size,
            self.pos_grid,
        ];
        if positive.iter().any(|&v| v <= 0) || self.embed_dim % self.num_heads != 0 {
            return Err(VisionError::Config(format!(
                "DINOv2 sizes must be positive with embed_dim divisible by num_heads: {self:?}"
            )));
        }
        Ok(())
    }
}

/// Multi-head self-attention with a fused qkv projection.
#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    num_heads: i64,
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let qkv = self.qkv.forward(x);
        self.proj
            .forward(&layers::self_attend(&qkv, self.num_heads))
    }
}

/// `SwiGLUFFNFused`: `w3(silu(a) * b)` where `[a, b] = w12(x)` split in halves.
#[derive(Debug)]
struct SwiGlu {
    w12: nn::Linear,
    w3: nn::Linear,
}

impl SwiGlu {
    fn forward(&self, x: &Tensor) -> Tensor {
        let ab = self.w12.forward(x).chunk(2, -1);
        self.w3.forward(&(ab[0].silu() * &ab[1]))
    }
}

/// Pre-norm transformer block with layer scale on both residual branches.
#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    ls1: Tensor,
    norm2: nn::LayerNorm,
    mlp: SwiGlu,
    ls2: Tensor,
}

impl Block {
    fn new(p: nn::Path, cfg: &DinoConfig) -> Self {
        let d = cfg.embed_dim;
        let hidden = cfg.ffn_hidden();
        Self {
            norm1: layer_norm(&p / "norm1", d),
            attn: Attention {
                qkv: nn::linear(&p / "attn" / "qkv", d, 3 * d, Default::default()),
                proj: nn::linear(&p / "attn" / "proj", d, d, Default::default()),
                num_heads: cfg.num_heads,
            },
            ls1: (&p / "ls1").var("gamma", &[d], nn::Init::Const(LS_INIT)),
            norm2: layer_norm(&p / "norm2", d),
            mlp: SwiGlu {
                w12: nn::linear(&p / "mlp" / "w12", d, 2 * hidden, Default::default()),
                w3: nn::linear(&p / "mlp" / "w3", hidden, d, Default::default()),
            },
            ls2: (&p / "ls2").var("gamma", &[d], nn::Init::Const(LS_INIT)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attn.forward(&self.norm1.forward(x)) * &self.ls1;
        &x + self.mlp.forward(&self.norm2.forward(&x)) * &self.ls2
    }
}

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    layers::layer_norm(p, dim, LN_EPS)
}

/// The DINOv2 ViT returning all normed tokens (cls first, then patches row-major).
#[derive(Debug)]
pub struct DinoV2 {
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    config: DinoConfig,
}

impl DinoV2 {
    /// Builds the ViT under `p` (the reference's `dinov2_vitg14`).
    pub fn new(p: &nn::Path, config: &DinoConfig) -> Result<Self, VisionError> {
        config.validate()?;
        let d = config.embed_dim;
        let patch = nn::ConvConfig {
            stride: config.patch_size,
            ..Default::default()
        };
        let patch_embed = nn::conv2d(p / "patch_embed" / "proj", 3, d, config.patch_size, patch);
        // The reference's initialisation (normal 1e-6 and 0.02): only models trained from
        // scratch see it, and zero position embeddings would give their patches no place.
        let normal = |stdev| nn::Init::Randn { mean: 0.0, stdev };
        let cls_token = p.var("cls_token", &[1, 1, d], normal(1e-6));
        let positions = config.pos_grid * config.pos_grid + 1;
        let pos_embed = p.var("pos_embed", &[1, positions, d], normal(0.02));
        // Present in every hub checkpoint (masked-image training); inference never reads it.
        let _mask_token = p.zeros("mask_token", &[1, d]);
        let blocks = (0..config.depth)
            .map(|i| Block::new(p / "blocks" / i, config))
            .collect();
        let norm = layer_norm(p / "norm", d);
        Ok(Self {
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm,
            config: config.clone(),
        })
    }

    /// The sizes this ViT was built with.
    pub fn config(&self) -> &DinoConfig {
        &self.config
    }

    /// Position embeddings for a `grid_h x grid_w` patch grid: the trained grid bicubically
    /// resampled in float32 with the reference's offset scale factor, cls position unchanged.
    fn positions(&self, grid_h: i64, grid_w: i64) -> Tensor {
        let m = self.config.pos_grid;
        if grid_h == m && grid_w == m {
            return self.pos_embed.shallow_clone();
        }
        let d = self.config.embed_dim;
        let pos = self.pos_embed.to_kind(Kind::Float);
        let cls = pos.narrow(1, 0, 1);
        let grid = pos
            .narrow(1, 1, m * m)
            .reshape([1, m, m, d])
            .permute([0, 3, 1, 2]);
        let scale_h = (grid_h as f64 + INTERPOLATE_OFFSET) / m as f64;
        let scale_w = (grid_w as f64 + INTERPOLATE_OFFSET) / m as f64;
        let grid = grid
            .upsample_bicubic2d([grid_h, grid_w], false, scale_h, scale_w)
            .permute([0, 2, 3, 1])
            .reshape([1, grid_h * grid_w, d]);
        Tensor::cat(&[cls, grid], 1).to_kind(self.pos_embed.kind())
    }

    /// ImageNet-normalized pixels `[B, 3, H, W]` (multiples of the patch size) ->
    /// normed tokens `[B, 1 + (H/14)*(W/14), dim]`: cls, then patches row-major.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, VisionError> {
        check_pixels("DINOv2", pixels, self.config.patch_size)?;
        let size = pixels.size();
        let (b, grid_h, grid_w) = (
            size[0],
            size[2] / self.config.patch_size,
            size[3] / self.config.patch_size,
        );
        // Pixels arrive in float32; the patch embedding runs in the weights' kind.
        let patches = self
            .patch_embed
            .forward(&pixels.to_kind(self.patch_embed.ws.kind()))
            .flatten(2, 3)
            .transpose(1, 2);
        let cls = self.cls_token.expand([b, 1, self.config.embed_dim], true);
        let mut x = Tensor::cat(&[cls, patches], 1) + self.positions(grid_h, grid_w);
        for block in &self.blocks {
            x = block.forward(&x);
        }
        Ok(self.norm.forward(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vitg14_swiglu_width_is_4096() {
        assert_eq!(DinoConfig::vitg14().ffn_hidden(), 4096);
        assert_eq!(DinoConfig::vitg14().pos_grid, 37);
        // (int(128 * 2 / 3) + 7) // 8 * 8 = 88
        assert_eq!(DinoConfig::tiny_test().ffn_hidden(), 88);
    }

    #[test]
    fn token_count_and_bad_input() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = DinoV2::new(&vs.root(), &DinoConfig::tiny_test()).unwrap();
        let x = Tensor::randn([2, 3, 56, 56], (Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward(&x).unwrap().size(), vec![2, 17, 32]);
        // The trained grid passes through untouched.
        let x = Tensor::randn([1, 3, 84, 84], (Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward(&x).unwrap().size(), vec![1, 37, 32]);
        let bad = Tensor::zeros([1, 3, 50, 56], (Kind::Float, tch::Device::Cpu));
        let err = model.forward(&bad).unwrap_err().to_string();
        assert!(err.contains("DINOv2") && err.contains("14"), "{err}");
    }
}
