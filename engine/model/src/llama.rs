//! LLaMA-family decoder as in Meta's LLaMA and LLaMA2-Accessory
//! (`accessory/model/LLM/llama.py`, `llama_ens_light.py`): pre-norm blocks of RMSNorm,
//! grouped-query attention with Meta's interleaved-pair RoPE, and a SwiGLU feed-forward.
//!
//! Module paths mirror the reference's parameter names (`tok_embeddings`,
//! `layers.N.attention.wq`, `layers.N.feed_forward.w1`, `norm`, `output`), so a
//! converted checkpoint loads with no renaming table. SPHINX checkpoints wrap this
//! model as `llma` (the reference `MetaModel` attribute): build it at `root / "llma"`.
//!
//! Deliberately not here: sampling and the generation loop (callers own them) and the
//! visual side (image tokens arrive through [`Llama::forward_embeds`]).
//!
//! Placement ([`crate::placement`]): each layer may live on its own device (its weights
//! and its KV cache rows), the embeddings on one ("home") and the head on another; the
//! hidden state moves to the next layer's device between layers, and every input and
//! output of this type is on the home device, so callers see one device.

use tch::{nn, Device, Kind, Tensor};

use crate::config::{LlamaConfig, ROPE_TABLE_FACTOR};
use crate::kv_cache::KvCache;
use crate::moe::SparseMoe;
use crate::placement::PartPaths;
use crate::rope::Rope;

/// Why a forward call was refused.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("invalid LLaMA config: {0}")]
    Config(String),
    #[error("input embeddings must be [batch, seq, {dim}] but have shape {shape:?}")]
    EmbedsShape { dim: i64, shape: Vec<i64> },
    #[error("token ids must be a 2-D int64 tensor [batch, seq], got {kind:?} {shape:?}")]
    IdsShape { kind: Kind, shape: Vec<i64> },
    #[error(
        "positions {start_pos}..{end} exceed the model's RoPE table of {limit} positions \
         (max_seq_len {max_seq_len} x {ROPE_TABLE_FACTOR})"
    )]
    TooLong {
        start_pos: i64,
        end: i64,
        limit: i64,
        max_seq_len: i64,
    },
    #[error("per-row positions {0}")]
    Positions(String),
    #[error("KV cache: {0}")]
    Cache(String),
    #[error("key mask must be bool [batch {batch}, keys {keys}], got {kind:?} {shape:?}")]
    KeyMask {
        batch: i64,
        keys: i64,
        kind: Kind,
        shape: Vec<i64>,
    },
    #[error("libtorch rejected the operation: {0}")]
    Torch(#[from] tch::TchError),
}

/// Root-mean-square LayerNorm: normalises in float32 and casts back before the gain,
/// exactly like the reference `RMSNorm.forward`.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        let weight = p.var("weight", &[dim], nn::Init::Const(1.0));
        Self { weight, eps }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let inv_rms = (xf.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (xf * inv_rms).to_kind(x.kind()) * &self.weight
    }
}

/// Where a forward pass writes its keys and values in the cache.
#[derive(Clone, Copy)]
enum Write<'a> {
    /// Every row at the same columns `start..start+T`.
    From,
    /// One token per row, each at its own column (the scatter `index`); attention reads
    /// the first `keys` columns.
    Columns { index: &'a Tensor, keys: i64 },
}

/// Multi-head attention with grouped key/value heads and rotary positions.
#[derive(Debug)]
struct Attention {
    wq: nn::Linear,
    wk: nn::Linear,
    wv: nn::Linear,
    wo: nn::Linear,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
}

fn linear_no_bias(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        bias: false,
        ..Default::default()
    };
    nn::linear(p, in_dim, out_dim, cfg)
}

impl Attention {
    fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let hd = cfg.head_dim();
        Self {
            wq: linear_no_bias(&p / "wq", cfg.dim, cfg.n_heads * hd),
            wk: linear_no_bias(&p / "wk", cfg.dim, cfg.kv_heads() * hd),
            wv: linear_no_bias(&p / "wv", cfg.dim, cfg.kv_heads() * hd),
            wo: linear_no_bias(&p / "wo", cfg.n_heads * hd, cfg.dim),
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.kv_heads(),
            head_dim: hd,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        start: i64,
        rope: &Rope,
        cache: Option<(&mut KvCache, usize, Write<'_>)>,
        mask: Option<&Tensor>,
        positions: Option<&Tensor>,
    ) -> Tensor {
        let (b, t, _) = x.size3().expect("validated 3-D input");
        let q = x.apply(&self.wq).view([b, t, self.n_heads, self.head_dim]);
        let k = x
            .apply(&self.wk)
            .view([b, t, self.n_kv_heads, self.head_dim]);
        let v = x
            .apply(&self.wv)
            .view([b, t, self.n_kv_heads, self.head_dim]);
        let q = rope.apply(&q, start, positions).transpose(1, 2);
        let k = rope.apply(&k, start, positions).transpose(1, 2);
        let v = v.transpose(1, 2);
        let (keys, values) = match cache {
            Some((cache, layer, Write::From)) => cache.append(layer, start, &k, &v),
            Some((cache, layer, Write::Columns { index, keys })) => {
                cache.write_columns(layer, index, keys, &k, &v)
            }
            None => (k, v),
        };
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &keys,
            &values,
            mask,
            0.0,
            false,
            None::<f64>,
            self.n_kv_heads != self.n_heads,
        );
        out.transpose(1, 2)
            .contiguous()
            .view([b, t, self.n_heads * self.head_dim])
            .apply(&self.wo)
    }
}

/// A block's feed-forward: the dense SwiGLU, or Mixtral's sparse mixture of experts.
#[derive(Debug)]
enum FeedForward {
    Dense(SwiGlu),
    Moe(SparseMoe),
}

impl FeedForward {
    fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        match &cfg.moe {
            Some(moe) => FeedForward::Moe(SparseMoe::new(p, cfg.dim, moe)),
            None => FeedForward::Dense(SwiGlu::new(p, cfg)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            FeedForward::Dense(f) => f.forward(x),
            FeedForward::Moe(f) => f.forward(x),
        }
    }
}

/// SwiGLU feed-forward `w2(silu(w1 x) * w3 x)`.
#[derive(Debug)]
struct SwiGlu {
    w1: nn::Linear,
    w2: nn::Linear,
    w3: nn::Linear,
}

impl SwiGlu {
    fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let hidden = cfg.ffn_hidden_dim();
        Self {
            w1: linear_no_bias(&p / "w1", cfg.dim, hidden),
            w2: linear_no_bias(&p / "w2", hidden, cfg.dim),
            w3: linear_no_bias(&p / "w3", cfg.dim, hidden),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        (x.apply(&self.w1).silu() * x.apply(&self.w3)).apply(&self.w2)
    }
}

/// One pre-norm decoder block (reference `TransformerBlock`).
#[derive(Debug)]
struct Block {
    attention: Attention,
    feed_forward: FeedForward,
    attention_norm: RmsNorm,
    ffn_norm: RmsNorm,
}

impl Block {
    fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        Self {
            attention: Attention::new(&p / "attention", cfg),
            feed_forward: FeedForward::new(&p / "feed_forward", cfg),
            attention_norm: RmsNorm::new(&p / "attention_norm", cfg.dim, cfg.norm_eps),
            ffn_norm: RmsNorm::new(&p / "ffn_norm", cfg.dim, cfg.norm_eps),
        }
    }
}

/// The LLaMA decoder (reference `Transformer`, LLM part).
#[derive(Debug)]
pub struct Llama {
    tok_embeddings: Tensor,
    layers: Vec<Block>,
    /// The device of each layer (its weights and its KV cache rows).
    devices: Vec<Device>,
    norm: RmsNorm,
    output: nn::Linear,
    /// The embeddings' device: inputs arrive and outputs leave here.
    home: Device,
    /// The device of `norm` and `output`.
    head: Device,
    /// One RoPE table per device a layer is on.
    ropes: Vec<(Device, Rope)>,
    cfg: LlamaConfig,
}

impl Llama {
    /// Declares every parameter under `p` with the reference's names.
    pub fn new(p: nn::Path, cfg: &LlamaConfig) -> Result<Self, LlamaError> {
        cfg.validate().map_err(LlamaError::Config)?;
        Self::build(&PartPaths::single(&p, cfg.n_layers as usize), cfg)
    }

    /// Declares the embeddings under `paths.front`, layer `i` under `paths.layers[i]` and
    /// the head under `paths.head` (each the model root `llma` of some device's store).
    pub fn build(paths: &PartPaths, cfg: &LlamaConfig) -> Result<Self, LlamaError> {
        cfg.validate().map_err(LlamaError::Config)?;
        if paths.layers.len() != cfg.n_layers as usize {
            return Err(LlamaError::Config(format!(
                "{} layer paths for {} layers",
                paths.layers.len(),
                cfg.n_layers
            )));
        }
        let tok_embeddings = (&paths.front / "tok_embeddings").var(
            "weight",
            &[cfg.vocab_size, cfg.dim],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let layers = (0..cfg.n_layers)
            .map(|i| Block::new(&paths.layers[i as usize] / "layers" / i, cfg))
            .collect();
        let devices: Vec<Device> = paths.layers.iter().map(|p| p.device()).collect();
        let mut ropes: Vec<(Device, Rope)> = Vec::new();
        for &d in &devices {
            if !ropes.iter().any(|(r, _)| *r == d) {
                ropes.push((d, Rope::new(cfg, d)));
            }
        }
        Ok(Self {
            tok_embeddings,
            layers,
            devices,
            norm: RmsNorm::new(&paths.head / "norm", cfg.dim, cfg.norm_eps),
            output: linear_no_bias(&paths.head / "output", cfg.dim, cfg.vocab_size),
            home: paths.front.device(),
            head: paths.head.device(),
            ropes,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The device inputs arrive on and outputs leave from (the embeddings').
    pub fn device(&self) -> Device {
        self.home
    }

    /// The device of each layer.
    pub fn layer_devices(&self) -> &[Device] {
        &self.devices
    }

    /// A KV cache with each layer's rows on that layer's device.
    pub fn new_cache(&self, batch: i64, capacity: i64, kind: Kind) -> KvCache {
        KvCache::on_devices(&self.cfg, batch, capacity, kind, &self.devices)
    }

    fn rope_on(&self, device: Device) -> &Rope {
        &self
            .ropes
            .iter()
            .find(|(d, _)| *d == device)
            .expect("a RoPE table on every layer's device")
            .1
    }

    /// The final norm on the head's device, the result back home.
    fn final_norm(&self, h: &Tensor) -> Tensor {
        self.norm
            .forward(&h.to_device(self.head))
            .to_device(self.home)
    }

    /// Token embeddings `[B, T, dim]` of int64 ids `[B, T]`.
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor, LlamaError> {
        let shape = ids.size();
        if shape.len() != 2 || ids.kind() != Kind::Int64 {
            return Err(LlamaError::IdsShape {
                kind: ids.kind(),
                shape,
            });
        }
        Ok(Tensor::f_embedding(
            &self.tok_embeddings,
            ids,
            -1,
            false,
            false,
        )?)
    }

    /// Runs every block on `embeds: [B, T, dim]` placed at positions
    /// `start_pos..start_pos+T` and returns the final-normed hidden states `[B, T, dim]`
    /// (project the positions you need with [`Llama::logits`]).
    ///
    /// Attention is causal over the sequence so far. With `cache`, `start_pos` must be
    /// at most `cache.len()` (rewinding is allowed, gaps are not) and the new keys and
    /// values are written into it. `key_mask: [B, start_pos+T]` (bool, `true` = real
    /// token) hides padding keys; a query always sees itself so no row is all-masked.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        start_pos: i64,
        cache: Option<&mut KvCache>,
        key_mask: Option<&Tensor>,
    ) -> Result<Tensor, LlamaError> {
        self.forward_embeds_at(embeds, start_pos, None, cache, key_mask)
    }

    /// [`Llama::forward_embeds`] with per-row RoPE positions `positions: [B, T]` (int64,
    /// each below the RoPE table's length) in place of `start_pos..start_pos+T`, for
    /// batches of sequences of different lengths: with left padding, a row's tokens sit
    /// at cache slots `start_pos..` but keep the positions they would have alone. Slots
    /// (and so causality and `key_mask`) still count from `start_pos`.
    pub fn forward_embeds_at(
        &self,
        embeds: &Tensor,
        start_pos: i64,
        positions: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        key_mask: Option<&Tensor>,
    ) -> Result<Tensor, LlamaError> {
        let shape = embeds.size();
        if shape.len() != 3 || shape[2] != self.cfg.dim {
            return Err(LlamaError::EmbedsShape {
                dim: self.cfg.dim,
                shape,
            });
        }
        let (b, t) = (shape[0], shape[1]);
        let end = start_pos + t;
        let limit = self.cfg.rope_positions();
        if start_pos < 0 || end > limit {
            return Err(LlamaError::TooLong {
                start_pos,
                end,
                limit,
                max_seq_len: self.cfg.max_seq_len,
            });
        }
        match cache.as_deref() {
            Some(c) => {
                if c.n_layers() != self.layers.len() {
                    return Err(LlamaError::Cache(format!(
                        "built for {} layers, model has {}",
                        c.n_layers(),
                        self.layers.len()
                    )));
                }
                if c.batch() != b {
                    return Err(LlamaError::Cache(format!(
                        "built for batch {}, input has batch {b}",
                        c.batch()
                    )));
                }
                if start_pos > c.len() {
                    return Err(LlamaError::Cache(format!(
                        "start_pos {start_pos} would leave a gap after the {} cached positions",
                        c.len()
                    )));
                }
                if end > c.capacity() {
                    return Err(LlamaError::Cache(format!(
                        "positions up to {end} exceed its capacity of {}",
                        c.capacity()
                    )));
                }
            }
            None if start_pos != 0 => {
                return Err(LlamaError::Cache(format!(
                    "start_pos {start_pos} needs a cache holding the earlier positions"
                )));
            }
            None => {}
        }
        if let Some(p) = positions {
            let limit = self.cfg.rope_positions();
            if p.kind() != Kind::Int64 || p.size() != [b, t] {
                return Err(LlamaError::Positions(format!(
                    "must be int64 [batch {b}, seq {t}], got {:?} {:?}",
                    p.kind(),
                    p.size()
                )));
            }
            if t > 0 {
                let (lo, hi) = (p.min().int64_value(&[]), p.max().int64_value(&[]));
                if lo < 0 || hi >= limit {
                    return Err(LlamaError::Positions(format!(
                        "values {lo}..={hi} fall outside the RoPE table 0..{limit}"
                    )));
                }
            }
        }
        let mut here = embeds.device();
        let mut mask = self.attention_mask(b, t, start_pos, key_mask, here)?;
        let mut positions = positions.map(Tensor::shallow_clone);
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let device = self.devices[i];
            if device != here {
                // The next layer lives elsewhere: the hidden state and its masks follow.
                h = h.to_device(device);
                mask = mask.map(|m| m.to_device(device));
                positions = positions.map(|p| p.to_device(device));
                here = device;
            }
            let attn_in = layer.attention_norm.forward(&h);
            let c = cache.as_deref_mut().map(|c| (c, i, Write::From));
            h = &h
                + layer.attention.forward(
                    &attn_in,
                    start_pos,
                    self.rope_on(device),
                    c,
                    mask.as_ref(),
                    positions.as_ref(),
                );
            h = &h + layer.feed_forward.forward(&layer.ffn_norm.forward(&h));
        }
        if let Some(c) = cache {
            c.set_len(end);
        }
        Ok(self.final_norm(&h))
    }

    /// One decoding step of rows that each sit at their own position: `embeds: [B, 1,
    /// dim]` is each row's newest token, `positions: [B, 1]` (int64, on the device) its
    /// position, which is also the cache column it is written to; a row attends to its
    /// columns `0..=position`, all its own (rows are prefilled from column 0, see
    /// [`KvCache::row`]). `keys` (more than every position) bounds the columns read.
    /// Nothing is read back to the host: the caller checks shapes and positions once, when
    /// rows are admitted, and this runs once per generated token.
    pub fn decode_step(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
        keys: i64,
    ) -> Result<Tensor, LlamaError> {
        let shape = embeds.size();
        if shape.len() != 3 || shape[1] != 1 || shape[2] != self.cfg.dim {
            return Err(LlamaError::EmbedsShape {
                dim: self.cfg.dim,
                shape,
            });
        }
        let b = shape[0];
        if cache.batch() != b || cache.n_layers() != self.layers.len() || keys > cache.capacity() {
            return Err(LlamaError::Cache(format!(
                "decode step of batch {b} over {keys} columns needs a cache of that batch with \
                 {} layers; it has batch {}, {} layers, capacity {}",
                self.layers.len(),
                cache.batch(),
                cache.n_layers(),
                cache.capacity()
            )));
        }
        let mut here = embeds.device();
        let (kv, hd) = (self.cfg.kv_heads(), self.cfg.head_dim());
        let mut positions = positions.shallow_clone();
        let mut index = positions.view([b, 1, 1, 1]).expand([b, kv, 1, hd], false);
        let k_pos = Tensor::arange(keys, (Kind::Int64, here)).view([1, keys]);
        let mut mask = k_pos.le_tensor(&positions).view([b, 1, 1, keys]);
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let device = self.devices[i];
            if device != here {
                h = h.to_device(device);
                positions = positions.to_device(device);
                index = index.to_device(device);
                mask = mask.to_device(device);
                here = device;
            }
            let attn_in = layer.attention_norm.forward(&h);
            let write = Write::Columns {
                index: &index,
                keys,
            };
            h = &h
                + layer.attention.forward(
                    &attn_in,
                    0,
                    self.rope_on(device),
                    Some((&mut *cache, i, write)),
                    Some(&mask),
                    Some(&positions),
                );
            h = &h + layer.feed_forward.forward(&layer.ffn_norm.forward(&h));
        }
        Ok(self.final_norm(&h))
    }

    /// Vocabulary logits `[.., vocab]` of final-normed hidden states (computed on the
    /// head's device, returned home).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden
            .to_device(self.head)
            .apply(&self.output)
            .to_device(self.home)
    }

    /// Logits of token ids at positions `start_pos..` (embed + forward + project).
    pub fn forward_tokens(
        &self,
        ids: &Tensor,
        start_pos: i64,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, LlamaError> {
        let embeds = self.embed_tokens(ids)?;
        let hidden = self.forward_embeds(&embeds, start_pos, cache, None)?;
        Ok(self.logits(&hidden))
    }

    /// Bool mask `[B or 1, 1, T, start+T]` for queries at `start..start+T`, or `None`
    /// when every query may see every key (one new token, no padding).
    fn attention_mask(
        &self,
        b: i64,
        t: i64,
        start: i64,
        key_mask: Option<&Tensor>,
        device: Device,
    ) -> Result<Option<Tensor>, LlamaError> {
        let keys = start + t;
        if let Some(m) = key_mask {
            if m.kind() != Kind::Bool || m.size() != [b, keys] {
                return Err(LlamaError::KeyMask {
                    batch: b,
                    keys,
                    kind: m.kind(),
                    shape: m.size(),
                });
            }
        }
        if t == 1 && key_mask.is_none() {
            return Ok(None);
        }
        let q_pos = Tensor::arange_start(start, keys, (Kind::Int64, device)).view([t, 1]);
        let k_pos = Tensor::arange(keys, (Kind::Int64, device)).view([1, keys]);
        let causal = k_pos.le_tensor(&q_pos).view([1, 1, t, keys]);
        Ok(Some(match key_mask {
            None => causal,
            Some(m) => {
                let own = k_pos.eq_tensor(&q_pos).view([1, 1, t, keys]);
                causal
                    .logical_and(&m.to_device(device).view([b, 1, 1, keys]))
                    .logical_or(&own)
            }
        }))
    }
}
