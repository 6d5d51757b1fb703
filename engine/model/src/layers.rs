//! What every vision encoder here is built from, written once: the check of its pixel
//! input, LayerNorm at the encoder's epsilon, and multi-head softmax attention through
//! libtorch's fused SDPA (flash or memory-efficient kernels on CUDA, so no `[T, T]` score
//! matrix is kept).

use tch::{nn, Tensor};

use crate::vision_error::VisionError;

/// Checks an encoder input is `[B, 3, H, W]` with both sides positive multiples of `multiple`.
pub(crate) fn check_pixels(
    encoder: &str,
    pixels: &Tensor,
    multiple: i64,
) -> Result<(), VisionError> {
    let size = pixels.size();
    let ok = size.len() == 4
        && size[0] > 0
        && size[1] == 3
        && size[2] > 0
        && size[3] > 0
        && size[2] % multiple == 0
        && size[3] % multiple == 0;
    if ok {
        Ok(())
    } else {
        Err(VisionError::Shape(format!(
            "{encoder} input must be [batch, 3, H, W] with H and W positive multiples of {multiple}, got {size:?}"
        )))
    }
}

/// A LayerNorm over the last `dim` features at the checkpoint's epsilon, which differs
/// between the encoders (1e-5 in open_clip, 1e-6 in DINOv2): a wrong one shifts every token.
pub(crate) fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps,
        ..Default::default()
    };
    nn::layer_norm(p, vec![dim], cfg)
}

/// Softmax attention of `q: [B, Tq, C]` over `k, v: [B, Tk, C]` in `heads` heads of
/// `C / heads` features, unmasked: every query sees every key.
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64) -> Tensor {
    let split = |x: &Tensor| {
        let (b, t, c) = x.size3().expect("attention input is [B, T, C]");
        x.reshape([b, t, heads, c / heads]).transpose(1, 2)
    };
    let (b, t, c) = q.size3().expect("attention input is [B, T, C]");
    Tensor::scaled_dot_product_attention(
        &split(q),
        &split(k),
        &split(v),
        None::<Tensor>,
        0.0,
        false,
        None,
        false,
    )
    .transpose(1, 2)
    .reshape([b, t, c])
}

/// Self-attention from one packed projection `[B, T, 3C]` laid out q | k | v, as
/// open_clip's `in_proj`, DINOv2's `qkv` and BLIP-2's `qkv` all store it.
pub(crate) fn self_attend(qkv: &Tensor, heads: i64) -> Tensor {
    let parts = qkv.chunk(3, -1);
    attend(&parts[0], &parts[1], &parts[2], heads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Heads split the features: attention in two heads is two one-head attentions over
    /// the halves, side by side (a reshape in the wrong order mixes them).
    #[test]
    fn heads_attend_over_their_own_features() {
        let opts = (Kind::Float, Device::Cpu);
        tch::manual_seed(3);
        let (q, k, v) = (
            Tensor::randn([2, 5, 8], opts),
            Tensor::randn([2, 7, 8], opts),
            Tensor::randn([2, 7, 8], opts),
        );
        let both = attend(&q, &k, &v, 2);
        let half = |x: &Tensor, i: i64| x.narrow(2, 4 * i, 4);
        let apart = Tensor::cat(
            &[
                attend(&half(&q, 0), &half(&k, 0), &half(&v, 0), 1),
                attend(&half(&q, 1), &half(&k, 1), &half(&v, 1), 1),
            ],
            2,
        );
        assert!(both.allclose(&apart, 1e-6, 1e-6, false));
        // And one head is softmax(q k^T / sqrt(d)) v.
        let d = 4f64;
        let (q0, k0, v0) = (half(&q, 0), half(&k, 0), half(&v, 0));
        let by_hand = (q0.matmul(&k0.transpose(1, 2)) / d.sqrt())
            .softmax(-1, Kind::Float)
            .matmul(&v0);
        assert!(half(&both, 0).allclose(&by_hand, 1e-5, 1e-6, false));
    }

    #[test]
    fn packed_projection_is_q_then_k_then_v() {
        let opts = (Kind::Float, Device::Cpu);
        tch::manual_seed(4);
        let (q, k, v) = (
            Tensor::randn([1, 6, 8], opts),
            Tensor::randn([1, 6, 8], opts),
            Tensor::randn([1, 6, 8], opts),
        );
        let packed = Tensor::cat(&[&q, &k, &v], 2);
        assert!(self_attend(&packed, 2).allclose(&attend(&q, &k, &v, 2), 1e-6, 1e-6, false));
    }
}
