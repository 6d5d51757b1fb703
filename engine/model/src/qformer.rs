//! BLIP-2's Q-Former with its EVA ViT-g image encoder, the fourth expert of the
//! four-expert MoV (SPHINX, SPHINX-MoE).
//!
//! BLIP-2: "Bootstrapping Language-Image Pre-training with Frozen Image Encoders and Large
//! Language Models" (Li et al., 2023). LLaMA2-Accessory (`accessory/model/LLM/llama_ens5.py`,
//! `mixtral_sparse_ens5.py`) builds transformers' `Blip2Model` from `Salesforce/blip2-opt-2.7b`
//! without its language model and projection, and reads
//! `get_qformer_features(pixel_values).last_hidden_state`: the ViT encodes the 224 px view
//! (post-layernormed tokens), then 32 learned query tokens go through the Q-Former
//! (layernorm, then per layer self-attention, cross-attention to the image tokens every
//! `cross_attention_frequency` layers, and the query feed-forward), giving 32 x 768 per
//! view, which the reference's own `qformer_proj` (in [`crate::mov`]) maps to the LLM width.
//!
//! Parameter names are transformers' `Blip2Model` below the reference's `qformer`:
//! `vision_model.embeddings.{class_embedding,patch_embedding,position_embedding}`,
//! `vision_model.encoder.layers.N.{layer_norm1,self_attn.qkv,self_attn.q_bias,
//! self_attn.v_bias,self_attn.projection,layer_norm2,mlp.fc1,mlp.fc2}`,
//! `vision_model.post_layernorm`, `query_tokens`, `qformer.layernorm`,
//! `qformer.encoder.layer.N.{attention,crossattention}.{attention.{query,key,value},
//! output.{dense,LayerNorm}}`, `...intermediate_query.dense`, `...output_query.{dense,LayerNorm}`.
//! The ViT's qkv has no bias of its own: the query and value biases are separate
//! parameters (`q_bias`, `v_bias`, as released BLIP-2 checkpoints store them) and the key
//! has none.

use tch::nn::{self, Module};
use tch::Tensor;

use crate::layers::{attend, check_pixels, layer_norm, self_attend};
use crate::vision_error::VisionError;

/// Sizes of the BLIP-2 image encoder and Q-Former.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QFormerConfig {
    pub vision_width: i64,
    pub vision_layers: i64,
    pub vision_heads: i64,
    pub vision_mlp: i64,
    pub vision_eps: f64,
    pub patch_size: i64,
    /// Side of the image the ViT's position embeddings were made for (224).
    pub image_size: i64,
    pub width: i64,
    pub layers: i64,
    pub heads: i64,
    pub mlp: i64,
    pub eps: f64,
    /// A layer has cross-attention when its index is a multiple of this.
    pub cross_attention_frequency: i64,
    pub query_tokens: i64,
}

impl QFormerConfig {
    /// `Salesforce/blip2-opt-2.7b` (transformers' `Blip2Config` defaults): EVA ViT-g 1408
    /// wide, 39 layers, 16 heads, MLP 6144, eps 1e-6; Q-Former 768 wide, 12 layers, 12 heads,
    /// MLP 3072, eps 1e-12, cross-attention every 2nd layer, 32 query tokens.
    pub fn blip2_opt_2_7b() -> Self {
        Self {
            vision_width: 1408,
            vision_layers: 39,
            vision_heads: 16,
            vision_mlp: 6144,
            vision_eps: 1e-6,
            patch_size: 14,
            image_size: 224,
            width: 768,
            layers: 12,
            heads: 12,
            mlp: 3072,
            eps: 1e-12,
            cross_attention_frequency: 2,
            query_tokens: 32,
        }
    }

    /// Tiny encoder and Q-Former (three layers: cross-attention in the 1st and 3rd) at 56 px,
    /// still 32 query tokens, for CPU parity tests.
    pub fn tiny_test() -> Self {
        Self {
            vision_width: 64,
            vision_layers: 2,
            vision_heads: 4,
            vision_mlp: 128,
            patch_size: 14,
            image_size: 56,
            width: 48,
            layers: 3,
            heads: 4,
            mlp: 96,
            ..Self::blip2_opt_2_7b()
        }
    }

    fn validate(&self) -> Result<(), VisionError> {
        let positive = [
            self.vision_width,
            self.vision_layers,
            self.vision_heads,
            self.vision_mlp,
            self.patch_size,
            self.image_size,
            self.width,
            self.layers,
            self.heads,
            self.mlp,
            self.cross_attention_frequency,
            self.query_tokens,
        ];
        if positive.iter().any(|&v| v <= 0)
            || self.vision_width % self.vision_heads != 0
            || self.width % self.heads != 0
            || self.image_size % self.patch_size != 0
        {
            return Err(VisionError::Config(format!(
                "Q-Former sizes must be positive, widths divisible by heads and image_size by \
                 patch_size: {self:?}"
            )));
        }
        Ok(())
    }
}

fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    nn::linear(p, i, o, Default::default())
}

/// One pre-norm block of the BLIP-2 ViT.
#[derive(Debug)]
struct VisionLayer {
    layer_norm1: nn::LayerNorm,
    qkv: Tensor,
    q_bias: Tensor,
    v_bias: Tensor,
    projection: nn::Linear,
    layer_norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl VisionLayer {
    fn new(p: nn::Path, cfg: &QFormerConfig) -> Self {
        let (w, a) = (cfg.vision_width, &p / "self_attn");
        let qkv = (&a / "qkv").var(
            "weight",
            &[3 * w, w],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0 / (w as f64).sqrt(),
            },
        );
        Self {
            layer_norm1: layer_norm(&p / "layer_norm1", w, cfg.vision_eps),
            qkv,
            q_bias: a.zeros("q_bias", &[w]),
            v_bias: a.zeros("v_bias", &[w]),
            projection: linear(&a / "projection", w, w),
            layer_norm2: layer_norm(&p / "layer_norm2", w, cfg.vision_eps),
            fc1: linear(&p / "mlp" / "fc1", w, cfg.vision_mlp),
            fc2: linear(&p / "mlp" / "fc2", cfg.vision_mlp, w),
            heads: cfg.vision_heads,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.layer_norm1.forward(x);
        let bias = Tensor::cat(&[&self.q_bias, &self.q_bias.zeros_like(), &self.v_bias], 0);
        let attn = self_attend(&h.linear(&self.qkv, Some(&bias)), self.heads);
        let x = x + self.projection.forward(&attn);
        let h = self.fc1.forward(&self.layer_norm2.forward(&x)).gelu("none");
        &x + self.fc2.forward(&h)
    }
}

/// BERT-style attention with a post-norm residual (`Blip2QFormerAttention`).
#[derive(Debug)]
struct QAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    dense: nn::Linear,
    norm: nn::LayerNorm,
    heads: i64,
}

impl QAttention {
    fn new(p: nn::Path, cfg: &QFormerConfig, kv_dim: i64) -> Self {
        let (w, a, o) = (cfg.width, &p / "attention", &p / "output");
        Self {
            query: linear(&a / "query", w, w),
            key: linear(&a / "key", kv_dim, w),
            value: linear(&a / "value", kv_dim, w),
            dense: linear(&o / "dense", w, w),
            norm: layer_norm(&o / "LayerNorm", w, cfg.eps),
            heads: cfg.heads,
        }
    }

    /// `x` attends to `context` (itself for self-attention).
    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let attn = attend(
            &self.query.forward(x),
            &self.key.forward(context),
            &self.value.forward(context),
            self.heads,
        );
        self.norm.forward(&(self.dense.forward(&attn) + x))
    }
}

/// One Q-Former layer on the query tokens (`Blip2QFormerLayer` with `query_length` = all).
#[derive(Debug)]
struct QLayer {
    attention: QAttention,
    crossattention: Option<QAttention>,
    intermediate: nn::Linear,
    output: nn::Linear,
    output_norm: nn::LayerNorm,
}

impl QLayer {
    fn new(p: nn::Path, cfg: &QFormerConfig, index: i64) -> Self {
        let crossattention = (index % cfg.cross_attention_frequency == 0)
            .then(|| QAttention::new(&p / "crossattention", cfg, cfg.vision_width));
        Self {
            attention: QAttention::new(&p / "attention", cfg, cfg.width),
            crossattention,
            intermediate: linear(&p / "intermediate_query" / "dense", cfg.width, cfg.mlp),
            output: linear(&p / "output_query" / "dense", cfg.mlp, cfg.width),
            output_norm: layer_norm(&p / "output_query" / "LayerNorm", cfg.width, cfg.eps),
        }
    }

    fn forward(&self, x: &Tensor, image: &Tensor) -> Tensor {
        let mut x = self.attention.forward(x, x);
        if let Some(cross) = &self.crossattention {
            x = cross.forward(&x, image);
        }
        let h = self.intermediate.forward(&x).gelu("none");
        self.output_norm.forward(&(self.output.forward(&h) + x))
    }
}

/// BLIP-2's image encoder and Q-Former: views -> 32 query features each.
#[derive(Debug)]
pub struct QFormer {
    patch_embedding: nn::Conv2D,
    class_embedding: Tensor,
    position_embedding: Tensor,
    vision_layers: Vec<VisionLayer>,
    post_layernorm: nn::LayerNorm,
    query_tokens: Tensor,
    layernorm: nn::LayerNorm,
    layers: Vec<QLayer>,
    config: QFormerConfig,
}

impl QFormer {
    /// Builds everything under `p` (the reference's `qformer`, a `Blip2Model`).
    pub fn new(p: &nn::Path, config: &QFormerConfig) -> Result<Self, VisionError> {
        config.validate()?;
        let w = config.vision_width;
        let vm = p / "vision_model";
        let emb = &vm / "embeddings";
        let conv = nn::ConvConfig {
            stride: config.patch_size,
            ..Default::default()
        };
        let patch_embedding = nn::conv2d(&emb / "patch_embedding", 3, w, config.patch_size, conv);
        let normal = |stdev| nn::Init::Randn { mean: 0.0, stdev };
        let grid = config.image_size / config.patch_size;
        let class_embedding = emb.var("class_embedding", &[1, 1, w], normal(0.02));
        let position_embedding =
            emb.var("position_embedding", &[1, grid * grid + 1, w], normal(0.02));
        let vision_layers = (0..config.vision_layers)
            .map(|i| VisionLayer::new(&vm / "encoder" / "layers" / i, config))
            .collect();
        let post_layernorm = layer_norm(&vm / "post_layernorm", w, config.vision_eps);
        let query_tokens = p.var(
            "query_tokens",
            &[1, config.query_tokens, config.width],
            normal(0.02),
        );
        let q = p / "qformer";
        let layers = (0..config.layers)
            .map(|i| QLayer::new(&q / "encoder" / "layer" / i, config, i))
            .collect();
        Ok(Self {
            patch_embedding,
            class_embedding,
            position_embedding,
            vision_layers,
            post_layernorm,
            query_tokens,
            layernorm: layer_norm(&q / "layernorm", config.width, config.eps),
            layers,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &QFormerConfig {
        &self.config
    }

    /// The ViT's post-layernormed tokens `[B, 1 + grid^2, vision_width]` of CLIP-normalized
    /// pixels `[B, 3, S, S]` (`Blip2VisionModel(...).last_hidden_state`).
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor, VisionError> {
        check_pixels("BLIP-2 ViT", pixels, self.config.patch_size)?;
        let size = pixels.size();
        let s = self.config.image_size;
        if size[2] != s || size[3] != s {
            return Err(VisionError::Shape(format!(
                "BLIP-2 ViT views must be {s}x{s}, got {size:?}"
            )));
        }
        let b = size[0];
        let w = self.config.vision_width;
        let patches = self
            .patch_embedding
            .forward(&pixels.to_kind(self.patch_embedding.ws.kind()))
            .flatten(2, 3)
            .transpose(1, 2);
        let cls = self.class_embedding.expand([b, 1, w], true);
        let mut x = Tensor::cat(&[cls, patches], 1) + &self.position_embedding;
        for layer in &self.vision_layers {
            x = layer.forward(&x);
        }
        Ok(self.post_layernorm.forward(&x))
    }

    /// CLIP-normalized views `[B, 3, S, S]` -> query features `[B, query_tokens, width]`
    /// (`get_qformer_features(pixel_values).last_hidden_state`).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, VisionError> {
        let image = self.encode_image(pixels)?;
        let b = image.size()[0];
        let queries = self
            .query_tokens
            .expand([b, self.config.query_tokens, self.config.width], true);
        let mut x = self.layernorm.forward(&queries.to_kind(image.kind()));
        for layer in &self.layers {
            x = layer.forward(&x, &image);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn cross_attention_every_other_layer_and_32_queries() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = QFormerConfig::tiny_test();
        let q = QFormer::new(&vs.root(), &cfg).unwrap();
        let cross: Vec<bool> = q
            .layers
            .iter()
            .map(|l| l.crossattention.is_some())
            .collect();
        assert_eq!(cross, [true, false, true]);
        let x = Tensor::zeros([2, 3, 56, 56], (Kind::Float, tch::Device::Cpu));
        assert_eq!(q.forward(&x).unwrap().size(), [2, 32, 48]);
        let bad = Tensor::zeros([1, 3, 28, 28], (Kind::Float, tch::Device::Cpu));
        assert!(q.forward(&bad).unwrap_err().to_string().contains("56x56"));
    }
}
