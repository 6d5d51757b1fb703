//! Rotary position embedding (RoFormer, arXiv 2104.09864) as Meta's LLaMA applies it:
//! interleaved pairs of each head's channels rotated by position-dependent angles, from
//! tables computed once per device.

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;

/// Cosine and sine tables of Meta's RoPE, `[positions, head_dim / 2]`, float32.
#[derive(Debug)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Same arithmetic as the reference `precompute_freqs_cis` (float32, positions
    /// multiplied by `scaling` when set).
    pub fn new(cfg: &LlamaConfig, device: Device) -> Self {
        let head_dim = cfg.head_dim();
        let positions = cfg.rope_positions();
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(cfg.rope_theta, &exponents).reciprocal();
        let mut t = Tensor::arange(positions, (Kind::Float, device));
        if let Some(s) = cfg.rope_scaling {
            t *= s;
        }
        let angles = t.outer(&inv_freq);
        Self {
            cos: angles.cos(),
            sin: angles.sin(),
        }
    }

    /// Rotates interleaved pairs `(x[2i], x[2i+1])` of `x: [B, T, H, head_dim]` by the
    /// angles of positions `start..start+T`, or of per-row `positions: [B, T]` (int64)
    /// when given; computed in float32, returned in `x`'s kind.
    pub fn apply(&self, x: &Tensor, start: i64, positions: Option<&Tensor>) -> Tensor {
        let (b, t, h, d) = x.size4().expect("rope input is 4-D by construction");
        let (cos, sin) = match positions {
            None => (
                self.cos.narrow(0, start, t).view([1, t, 1, d / 2]),
                self.sin.narrow(0, start, t).view([1, t, 1, d / 2]),
            ),
            Some(p) => {
                let flat = p.reshape([-1]);
                (
                    self.cos.index_select(0, &flat).view([b, t, 1, d / 2]),
                    self.sin.index_select(0, &flat).view([b, t, 1, d / 2]),
                )
            }
        };
        let pairs = x.to_kind(Kind::Float).view([b, t, h, d / 2, 2]);
        let x0 = pairs.select(-1, 0);
        let x1 = pairs.select(-1, 1);
        let r0 = &x0 * &cos - &x1 * &sin;
        let r1 = x0 * &sin + x1 * &cos;
        Tensor::stack(&[r0, r1], -1)
            .view([b, t, h, d])
            .to_kind(x.kind())
    }
}
