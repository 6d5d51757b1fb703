//! CLIP-ConvNeXt trunk, the first expert of SPHINX-X's Mixture of Visual experts.
//!
//! ConvNeXt: "A ConvNet for the 2020s" (Liu et al., 2022). SPHINX-X uses the trunk of
//! open_clip's `convnext_xxlarge` (`laion2b_s34b_b82k_augreg_soup`), which is timm's
//! `ConvNeXt` (`timm/models/convnext.py`) with its classifier removed; LLaMA2-Accessory
//! (`accessory/model/LLM/llama_ens5_light.py`) then sets `head.global_pool` and
//! `head.flatten` to identity, so the head's LayerNorm runs on every spatial position.
//! The feature map becomes tokens: the `h*w` positions row-major, preceded by their mean
//! as a cls token (at 512 px: 3072 x 16 x 16 -> 257 x 3072).
//!
//! Parameter names are timm's, below the reference's `openclip_convnext_xxl` prefix:
//! `stem.0` (patchify conv), `stem.1` (LayerNorm2d), `stages.N.downsample.{0,1}`
//! (LayerNorm2d, 2x2 conv), `stages.N.blocks.M.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}`,
//! `head.norm`.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::layers::{check_pixels, layer_norm};
use crate::vision_error::VisionError;

/// timm ConvNeXt's default patchify stem: a 4x4 conv with stride 4.
const STEM_PATCH: i64 = 4;
/// Every stage after the first halves the resolution with a 2x2 stride-2 conv (timm).
const DOWNSAMPLE: i64 = 2;
/// Depthwise conv kernel of every ConvNeXt block (the paper's 7x7).
const DW_KERNEL: i64 = 7;
/// Inverted-bottleneck width of the block MLP (timm `mlp_ratio=4`).
const MLP_RATIO: i64 = 4;
/// Initial layer-scale value timm gives `gamma` (`ls_init_value=1e-6`); real weights replace it.
const LS_INIT: f64 = 1e-6;

/// Sizes of one ConvNeXt; released sizes are named constructors sharing all forward code.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNextConfig {
    /// Blocks per stage.
    pub depths: Vec<i64>,
    /// Channels per stage; the last one is the token width.
    pub dims: Vec<i64>,
    /// Epsilon of every LayerNorm (timm `norm_eps`).
    pub norm_eps: f64,
}

impl ConvNextConfig {
    /// open_clip `convnext_xxlarge` = timm `convnext_xxlarge`: depths (3, 4, 30, 3),
    /// dims (384, 768, 1536, 3072), `norm_eps=1e-5` (timm overrides its 1e-6 default
    /// for this size only).
    pub fn xxlarge() -> Self {
        Self {
            depths: vec![3, 4, 30, 3],
            dims: vec![384, 768, 1536, 3072],
            norm_eps: 1e-5,
        }
    }

    /// A four-stage model small enough for CPU parity tests in milliseconds.
    pub fn tiny_test() -> Self {
        Self {
            depths: vec![1, 1, 2, 1],
            dims: vec![8, 16, 24, 32],
            norm_eps: 1e-5,
        }
    }

    /// Width of every output token (channels of the last stage).
    pub fn out_dim(&self) -> i64 {
        *self.dims.last().unwrap_or(&0)
    }

    /// Input pixels per output position along each side (4 * 2^(stages-1); 32 for xxlarge).
    pub fn stride(&self) -> i64 {
        let stages = self.dims.len().max(1) as u32;
        STEM_PATCH * DOWNSAMPLE.pow(stages - 1)
    }

    fn validate(&self) -> Result<(), VisionError> {
        if self.dims.is_empty() || self.dims.len() != self.depths.len() {
            return Err(VisionError::Config(format!(
                "ConvNeXt needs one depth per stage, got dims {:?} and depths {:?}",
                self.dims, self.depths
            )));
        }
        if self.dims.iter().chain(&self.depths).any(|&v| v <= 0) {
            return Err(VisionError::Config(format!(
                "ConvNeXt dims {:?} and depths {:?} must be positive",
                self.dims, self.depths
            )));
        }
        Ok(())
    }
}

/// timm `LayerNorm2d`: LayerNorm over the channels of an NCHW map.
#[derive(Debug)]
struct LayerNorm2d(nn::LayerNorm, f64);

impl LayerNorm2d {
    fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        Self(layer_norm(p, dim, eps), eps)
    }

    /// Any input kind -> float32 (see [`norm_f32`]).
    fn forward(&self, x: &Tensor) -> Tensor {
        norm_f32(&self.0, self.1, &x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
    }
}

/// LayerNorm computed in float32 whatever the weights' kind, returning float32.
///
/// With bfloat16 weights the trunk runs like PyTorch autocast: convolutions and linears
/// in bfloat16, normalisation and the residual stream in float32. All-bfloat16 drifts
/// past 1e-2 relative error over the trunk; float32 weights give the same numbers as
/// before (the parity tests run there).
fn norm_f32(ln: &nn::LayerNorm, eps: f64, x: &Tensor) -> Tensor {
    let f32 = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_kind(Kind::Float));
    x.to_kind(Kind::Float).layer_norm(
        ln.normalized_shape.as_slice(),
        f32(&ln.ws).as_ref(),
        f32(&ln.bs).as_ref(),
        eps,
        true,
    )
}

/// One ConvNeXt block: 7x7 depthwise conv, LayerNorm, Linear-GELU-Linear, layer scale,
/// residual (timm `ConvNeXtBlock` with `conv_mlp=False`).
#[derive(Debug)]
struct Block {
    conv_dw: nn::Conv2D,
    norm: nn::LayerNorm,
    eps: f64,
    fc1: nn::Linear,
    fc2: nn::Linear,
    gamma: Tensor,
}

impl Block {
    fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        let dw = nn::ConvConfig {
            padding: DW_KERNEL / 2,
            groups: dim,
            ..Default::default()
        };
        Self {
            conv_dw: nn::conv2d(&p / "conv_dw", dim, dim, DW_KERNEL, dw),
            norm: layer_norm(&p / "norm", dim, eps),
            eps,
            fc1: nn::linear(&p / "mlp" / "fc1", dim, MLP_RATIO * dim, Default::default()),
            fc2: nn::linear(&p / "mlp" / "fc2", MLP_RATIO * dim, dim, Default::default()),
            gamma: p.var("gamma", &[dim], nn::Init::Const(LS_INIT)),
        }
    }

    /// Float32 residual stream `x` in, float32 out; the convolution and MLP run in the
    /// weights' kind.
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = self.gamma.kind();
        let h = self.conv_dw.forward(&x.to_kind(kind)).permute([0, 2, 3, 1]);
        let h = norm_f32(&self.norm, self.eps, &h).to_kind(kind);
        let h = self.fc2.forward(&self.fc1.forward(&h).gelu("none"));
        let h = (h * &self.gamma).permute([0, 3, 1, 2]);
        h.to_kind(Kind::Float) + x
    }
}

/// A stage: optional downsampling (LayerNorm2d + 2x2 stride-2 conv), then its blocks.
#[derive(Debug)]
struct Stage {
    downsample: Option<(LayerNorm2d, nn::Conv2D)>,
    blocks: Vec<Block>,
}

/// The CLIP-ConvNeXt trunk with the head reduced to its LayerNorm (see module docs).
#[derive(Debug)]
pub struct ConvNext {
    stem_conv: nn::Conv2D,
    stem_norm: LayerNorm2d,
    stages: Vec<Stage>,
    head_norm: LayerNorm2d,
    config: ConvNextConfig,
}

impl ConvNext {
    /// Builds the trunk under `p` (the reference's `openclip_convnext_xxl`).
    pub fn new(p: &nn::Path, config: &ConvNextConfig) -> Result<Self, VisionError> {
        config.validate()?;
        let eps = config.norm_eps;
        let stem = nn::ConvConfig {
            stride: STEM_PATCH,
            ..Default::default()
        };
        let stem_conv = nn::conv2d(p / "stem" / "0", 3, config.dims[0], STEM_PATCH, stem);
        let stem_norm = LayerNorm2d::new(p / "stem" / "1", config.dims[0], eps);
        let mut stages = Vec::with_capacity(config.dims.len());
        let mut in_dim = config.dims[0];
        for (i, (&dim, &depth)) in config.dims.iter().zip(&config.depths).enumerate() {
            let sp = p / "stages" / i;
            let downsample = (i > 0).then(|| {
                let ds = &sp / "downsample";
                let conv = nn::ConvConfig {
                    stride: DOWNSAMPLE,
                    ..Default::default()
                };
                (
                    LayerNorm2d::new(&ds / "0", in_dim, eps),
                    nn::conv2d(&ds / "1", in_dim, dim, DOWNSAMPLE, conv),
                )
            });
            let blocks = (0..depth)
                .map(|j| Block::new(&sp / "blocks" / j, dim, eps))
                .collect();
            stages.push(Stage { downsample, blocks });
            in_dim = dim;
        }
        let head_norm = LayerNorm2d::new(p / "head" / "norm", in_dim, eps);
        Ok(Self {
            stem_conv,
            stem_norm,
            stages,
            head_norm,
            config: config.clone(),
        })
    }

    /// The sizes this trunk was built with.
    pub fn config(&self) -> &ConvNextConfig {
        &self.config
    }

    /// Normalized pixels `[B, 3, H, W]` (H, W multiples of [`ConvNextConfig::stride`]) ->
    /// head-normed feature map `[B, C, H/stride, W/stride]`.
    pub fn forward_map(&self, pixels: &Tensor) -> Result<Tensor, VisionError> {
        check_pixels("ConvNeXt", pixels, self.config.stride())?;
        let kind = self.stem_conv.ws.kind();
        let mut x = self.stem_norm.forward(
            &self
                .stem_conv
                .forward(&channels_last(&pixels.to_kind(kind))),
        );
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv
                    .forward(&norm.forward(&x).to_kind(kind))
                    .to_kind(Kind::Float);
            }
            for block in &stage.blocks {
                x = block.forward(&x);
            }
        }
        Ok(self.head_norm.forward(&x).to_kind(kind))
    }

    /// Normalized pixels `[B, 3, H, W]` -> tokens `[B, 1 + h*w, C]`: the mean of the
    /// spatial tokens (the reference's "gap as cls token") then the positions row-major.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, VisionError> {
        let tokens = self.forward_map(pixels)?.flatten(2, 3).transpose(1, 2);
        let cls = tokens.mean_dim(1, true, None);
        Ok(Tensor::cat(&[cls, tokens], 1))
    }
}

/// `[B, C, H, W]` laid out channels-last in memory (NHWC strides, as PyTorch's
/// `memory_format=torch.channels_last`). A convolution keeps its input's layout, so the
/// whole trunk then runs channels-last: cuDNN and oneDNN pick their NHWC kernels (the
/// 7x7 depthwise conv is ~2x faster on this CPU), and every block's permute to
/// `[B, H, W, C]` for its LayerNorm and MLP is a free view instead of a copy.
pub(crate) fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether a 4-D tensor has channels-last strides.
#[cfg(test)]
fn is_channels_last(x: &Tensor) -> bool {
    let (size, stride) = (x.size(), x.stride());
    size.len() == 4
        && stride[1] == 1
        && stride[3] == size[1]
        && stride[2] == size[1] * size[3]
        && stride[0] == size[1] * size[2] * size[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxlarge_at_512_gives_16x16() {
        let cfg = ConvNextConfig::xxlarge();
        assert_eq!(cfg.stride(), 32);
        assert_eq!(512 / cfg.stride(), 16);
        assert_eq!(cfg.out_dim(), 3072);
    }

    #[test]
    fn tokens_are_mean_then_positions() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = ConvNextConfig::tiny_test();
        let model = ConvNext::new(&vs.root(), &cfg).unwrap();
        let x = Tensor::randn([2, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
        let map = model.forward_map(&x).unwrap();
        assert_eq!(map.size(), vec![2, 32, 2, 2]);
        let tokens = model.forward(&x).unwrap();
        assert_eq!(tokens.size(), vec![2, 5, 32]);
        let mean = map.mean_dim(&[2i64, 3][..], false, None);
        let diff = (tokens.select(1, 0) - mean).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "cls token is not the spatial mean: {diff}");
        let pos = (tokens.select(1, 2) - map.select(3, 1).select(2, 0))
            .abs()
            .max()
            .double_value(&[]);
        assert!(pos < 1e-6, "token 2 is not position (0, 1): {pos}");
    }

    /// The trunk runs channels-last whatever the input's layout (see [`channels_last`]).
    #[test]
    fn the_trunk_runs_channels_last() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = ConvNext::new(&vs.root(), &ConvNextConfig::tiny_test()).unwrap();
        let x = Tensor::randn([2, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
        assert!(!is_channels_last(&x));
        let map = model.forward_map(&x).unwrap();
        assert!(is_channels_last(&map), "strides {:?}", map.stride());
        let again = model.forward_map(&channels_last(&x)).unwrap();
        assert_eq!((map - again).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn rejects_bad_shapes() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = ConvNext::new(&vs.root(), &ConvNextConfig::tiny_test()).unwrap();
        let x = Tensor::zeros([1, 3, 60, 64], (tch::Kind::Float, tch::Device::Cpu));
        let err = model.forward(&x).unwrap_err().to_string();
        assert!(err.contains("multiples of 32"), "{err}");
        let x = Tensor::zeros([1, 4, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
        assert!(model.forward(&x).is_err());
        let bad = ConvNextConfig {
            depths: vec![1],
            ..ConvNextConfig::tiny_test()
        };
        assert!(ConvNext::new(&vs.root(), &bad).is_err());
    }
}
