//! Mixtral's sparse mixture of experts, the feed-forward of SPHINX-MoE's LLM
//! (LLaMA2-Accessory `accessory/model/LLM/mixtral_sparse.py`, class `MoE`).
//!
//! A router (`gate`, no bias) scores the experts per token; softmax in float32, the
//! `experts_per_token` best kept and renormalised to sum to one; each chosen expert is a
//! SwiGLU `w2(silu(w1 x) * w3 x)`, and the token's output is the weighted sum. The
//! reference stores the experts stacked: `w1`, `w3` and `w2` are each
//! `[num_experts * hidden_dim, dim]` (expert `e` is rows `e*hidden_dim..`), `w2`
//! transposed relative to a Linear (`y = h @ w2_e`), all three plain parameters.
//!
//! The experts are applied densely here (every expert on every token, the unchosen ones
//! with weight zero): exact, simple, and `experts_per_token / num_experts` of the FLOPs
//! wasted; a grouped sparse dispatch is the GPU's next step.

use tch::{nn, Kind, Tensor};

use crate::config::MoeConfig;

/// The router and the stacked experts.
#[derive(Debug)]
pub struct SparseMoe {
    gate: Tensor,
    w1: Tensor,
    w2: Tensor,
    w3: Tensor,
    num_experts: i64,
    top_k: i64,
    hidden: i64,
}

impl SparseMoe {
    /// Declares `gate.weight`, `w1`, `w2`, `w3` under `p` (the reference's names).
    pub fn new(p: nn::Path, dim: i64, cfg: &MoeConfig) -> Self {
        let rows = cfg.num_experts * cfg.hidden_dim;
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0 / (dim as f64).sqrt(),
        };
        Self {
            gate: (&p / "gate").var("weight", &[cfg.num_experts, dim], init),
            w1: p.var("w1", &[rows, dim], init),
            w2: p.var("w2", &[rows, dim], init),
            w3: p.var("w3", &[rows, dim], init),
            num_experts: cfg.num_experts,
            top_k: cfg.experts_per_token,
            hidden: cfg.hidden_dim,
        }
    }

    /// Routing of tokens `x: [N, dim]`: the weights `[N, k]` (in `x`'s kind, summing to
    /// one) and indices `[N, k]` of their experts, most likely first.
    pub fn route(&self, x: &Tensor) -> (Tensor, Tensor) {
        let logits = x.matmul(&self.gate.tr());
        let probs = logits.to_kind(Kind::Float).softmax(-1, Kind::Float);
        let (top, idx) = probs.topk(self.top_k, -1, true, true);
        let top = &top / top.sum_dim_intlist(-1, true, Kind::Float);
        (top.to_kind(x.kind()), idx)
    }

    /// `x: [.., dim]` -> the same shape.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let shape = x.size();
        let dim = *shape.last().expect("at least one dimension");
        let flat = x.reshape([-1, dim]);
        let (weights, idx) = self.route(&flat);
        let n = flat.size()[0];
        let per_expert =
            Tensor::zeros([n, self.num_experts], (x.kind(), x.device())).scatter(1, &idx, &weights);
        let mut out = Tensor::zeros_like(&flat);
        for e in 0..self.num_experts {
            let rows = |w: &Tensor| w.narrow(0, e * self.hidden, self.hidden);
            let h = flat.matmul(&rows(&self.w1).tr()).silu() * flat.matmul(&rows(&self.w3).tr());
            out += h.matmul(&rows(&self.w2)) * per_expert.narrow(1, e, 1);
        }
        out.view(shape.as_slice())
    }
}
