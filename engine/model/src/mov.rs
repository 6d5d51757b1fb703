//! Mixture of Visual experts (MoV): SPHINX-X's two frozen image encoders side by side.
//!
//! Follows `encode_image` of LLaMA2-Accessory `accessory/model/LLM/llama_ens_light.py`
//! (SPHINX-Tiny) and `llama_ens5_light.py` (SPHINX-Tiny-1k): every view goes through
//! CLIP-ConvNeXt-XXL at 512 px and, bicubically resized to 224 px and re-normalized from
//! CLIP to ImageNet statistics, through DINOv2 ViT-g/14; the two token sequences (cls +
//! 256 spatial each) are concatenated channel-wise into 257 x 4608 features, which
//! `visual_proj` (in [`crate::sphinx`]) maps to the LLM width.
//!
//! The four-expert MoV of SPHINX and SPHINX-MoE (`llama_ens5.py`, `mixtral_sparse_ens5.py`)
//! adds, on the same 224 px views as DINOv2, CLIP ViT-L/14 ([`crate::clip`]) and the BLIP-2
//! Q-Former ([`crate::qformer`]): CLIP's 1024 channels come first in the concatenation
//! (1024 + 3072 + 1536 = 5632 through `visual_proj`), and the Q-Former's 32 queries go
//! through their own `qformer_proj` and precede the 257 tokens, so a view is 32 + 257 words.
//! `llama_ens5.py` (SPHINX, 448 px canvas) also feeds ConvNeXt the 224 px views
//! nearest-resized to 256 and repeats each of its 8 x 8 features 2 x 2 to meet the 16 x 16
//! grid; `mixtral_sparse_ens5.py` (1024 px) cuts views as `llama_ens5_light.py` does.
//!
//! The views themselves (which crops, at which sizes) are cut in [`crate::views`]. The
//! reference resizes in float16 on the GPU; here resizing runs in the views' own dtype,
//! so float32 views are resampled exactly like a float32 `F.interpolate`.

use tch::nn;
use tch::{Kind, Tensor};

use crate::clip::{ClipConfig, ClipVision};
use crate::convnext::{ConvNext, ConvNextConfig};
use crate::dinov2::{DinoConfig, DinoV2};
use crate::qformer::{QFormer, QFormerConfig};

/// CLIP's per-channel pixel mean and standard deviation (the reference's `clip_mean` and
/// `clip_std`): the views arrive normalized with them. Their one home is the tiler's
/// (`sphinx_core::tiling`), which writes them into every manifest.
pub use sphinx_core::tiling::{CLIP_MEAN, CLIP_STD};
/// ImageNet mean DINOv2 was trained with (reference `dinov2_mean`).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation DINOv2 was trained with (reference `dinov2_std`).
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

pub use crate::vision_error::VisionError;

/// How a page's canvas becomes views (the reference file a checkpoint was trained with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewLayout {
    /// SPHINX-Tiny (`llama_ens_light.py`): the canvas itself is the only view.
    Single,
    /// SPHINX-Tiny-1k (`llama_ens5_light.py`): a global view of the whole canvas, then a
    /// `grid x grid` split of it, row-major.
    GlobalAndGrid { grid: i64 },
}

impl ViewLayout {
    /// Number of view slots of one page (skipped ones included): 1 or 1 + grid^2.
    pub fn slots(&self) -> usize {
        match self {
            ViewLayout::Single => 1,
            ViewLayout::GlobalAndGrid { grid } => 1 + (grid * grid).max(0) as usize,
        }
    }
}

/// Sizes of the MoV: both encoders and the resolutions each one sees.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovConfig {
    pub convnext: ConvNextConfig,
    pub dinov2: DinoConfig,
    /// Side of a ConvNeXt view (512 in both released models).
    pub convnext_size: i64,
    /// Side of a DINOv2 view (224 in both released models).
    pub dinov2_size: i64,
    pub layout: ViewLayout,
    /// CLIP ViT-L/14 and the BLIP-2 Q-Former beside ConvNeXt and DINOv2 (the four-expert
    /// MoV of `llama_ens5.py` and `mixtral_sparse_ens5.py`); `None`: the two-expert MoV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub four: Option<FourExperts>,
}

/// The two experts the four-expert MoV adds; both see the DINOv2-sized views.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FourExperts {
    pub clip: ClipConfig,
    pub qformer: QFormerConfig,
    /// `llama_ens5.py`: ConvNeXt sees the small views nearest-resized to `convnext_size`,
    /// its feature grid repeated to the DINOv2 grid, and the canvas is `grid x dinov2_size`;
    /// otherwise (`mixtral_sparse_ens5.py`) ConvNeXt has its own views as in SPHINX-X.
    #[serde(default)]
    pub convnext_on_small_views: bool,
}

impl MovConfig {
    /// SPHINX-Tiny: one 512 px view (`image_size = 512`).
    pub fn sphinx_tiny() -> Self {
        Self {
            convnext: ConvNextConfig::xxlarge(),
            dinov2: DinoConfig::vitg14(),
            convnext_size: 512,
            dinov2_size: 224,
            layout: ViewLayout::Single,
            four: None,
        }
    }

    /// SPHINX (`llama_ens5.py`, LLaMA2-13B): a 448 px canvas as a 224 px global view and
    /// 2x2 crops, every expert on those 224 px views (ConvNeXt at 256 px), 32 + 257 words.
    pub fn sphinx_ens5() -> Self {
        Self {
            convnext_size: 256,
            layout: ViewLayout::GlobalAndGrid { grid: 2 },
            four: Some(FourExperts {
                clip: ClipConfig::vitl14(),
                qformer: QFormerConfig::blip2_opt_2_7b(),
                convnext_on_small_views: true,
            }),
            ..Self::sphinx_tiny()
        }
    }

    /// SPHINX-MoE (`mixtral_sparse_ens5.py`, Mixtral-8x7B): the views of SPHINX-Tiny-1k
    /// (1024 px canvas) with CLIP and the Q-Former on the 224 px views.
    pub fn sphinx_moe() -> Self {
        Self {
            four: Some(FourExperts {
                clip: ClipConfig::vitl14(),
                qformer: QFormerConfig::blip2_opt_2_7b(),
                convnext_on_small_views: false,
            }),
            ..Self::sphinx_tiny_1k()
        }
    }

    /// SPHINX-Tiny-1k: a 1024 px canvas as a global view plus 2x2 sub-images
    /// (`image_size = 1024`, `image_words = (257 + 2) * 5`).
    pub fn sphinx_tiny_1k() -> Self {
        Self {
            layout: ViewLayout::GlobalAndGrid { grid: 2 },
            ..Self::sphinx_tiny()
        }
    }

    /// Tiny encoders on a 256 px canvas split 2x2 (128 px ConvNeXt views and 56 px DINOv2
    /// views, both 4x4 tokens + cls), for CPU tests.
    pub fn tiny_test() -> Self {
        Self {
            convnext: ConvNextConfig::tiny_test(),
            dinov2: DinoConfig::tiny_test(),
            convnext_size: 128,
            dinov2_size: 56,
            layout: ViewLayout::GlobalAndGrid { grid: 2 },
            four: None,
        }
    }

    /// [`MovConfig::tiny_test`] with tiny CLIP and Q-Former experts: `mixtral_sparse_ens5`
    /// views, or with `convnext_on_small_views` those of `llama_ens5` (a 112 px canvas,
    /// ConvNeXt at 64 px giving 2x2 features repeated to 4x4).
    pub fn tiny_test_four(convnext_on_small_views: bool) -> Self {
        Self {
            convnext_size: if convnext_on_small_views { 64 } else { 128 },
            four: Some(FourExperts {
                clip: ClipConfig::tiny_test(),
                qformer: QFormerConfig::tiny_test(),
                convnext_on_small_views,
            }),
            ..Self::tiny_test()
        }
    }

    /// Whether ConvNeXt sees the small (DINOv2) views, nearest-resized, instead of its
    /// own crops (`llama_ens5.py`).
    pub(crate) fn small_views_convnext(&self) -> bool {
        self.four
            .as_ref()
            .is_some_and(|f| f.convnext_on_small_views)
    }

    /// Side of the padded page canvas the tiler produces (512 or 1024 for the released models).
    pub fn canvas_size(&self) -> i64 {
        let side = if self.small_views_convnext() {
            self.dinov2_size
        } else {
            self.convnext_size
        };
        match self.layout {
            ViewLayout::Single => side,
            ViewLayout::GlobalAndGrid { grid } => grid * side,
        }
    }

    /// How the tiler must cut pages for this model: the canvas, its grid of cells, and
    /// where the page sits. A model with a skip token (SPHINX-X, trained here) has the
    /// page top-left, so padding fills whole cells; one without (the released
    /// checkpoints) has it centred, as the reference's `PadToSquare` pastes it.
    pub fn tiling(&self, skip_tokens: bool) -> sphinx_core::tiling::TileConfig {
        use sphinx_core::tiling::{Align, TileConfig};
        let grid = match self.layout {
            ViewLayout::Single => 1,
            ViewLayout::GlobalAndGrid { grid } => grid,
        };
        TileConfig::new(self.canvas_size() as u32, grid as u32)
            .aligned(Align::for_model(skip_tokens))
    }

    /// Width of the concatenated features that `visual_proj` maps (3072 + 1536 = 4608 for
    /// SPHINX-X; with CLIP first, 1024 + 3072 + 1536 = 5632 for the four-expert MoV).
    pub fn feature_dim(&self) -> i64 {
        let clip = self.four.as_ref().map_or(0, |f| f.clip.width);
        clip + self.convnext.out_dim() + self.dinov2.embed_dim
    }

    /// Width of the Q-Former features `qformer_proj` maps (768), if there is a Q-Former.
    pub fn query_dim(&self) -> Option<i64> {
        self.four.as_ref().map(|f| f.qformer.width)
    }

    /// Words per view between `start_img` and `end_img`: the Q-Former's queries (32, if
    /// any) then cls + spatial tokens (257 for the released models).
    pub fn tokens_per_view(&self) -> i64 {
        let side = self.dinov2_size / self.dinov2.patch_size;
        let queries = self.four.as_ref().map_or(0, |f| f.qformer.query_tokens);
        queries + 1 + side * side
    }

    /// How many times ConvNeXt's feature grid is repeated per axis to meet DINOv2's (2 for
    /// `llama_ens5.py`, else 1).
    fn convnext_repeat(&self) -> i64 {
        let conv_side = self.convnext_size / self.convnext.stride();
        let dino_side = self.dinov2_size / self.dinov2.patch_size;
        if conv_side > 0 && dino_side % conv_side == 0 {
            dino_side / conv_side
        } else {
            0
        }
    }

    fn validate(&self) -> Result<(), VisionError> {
        let conv_side = self.convnext_size / self.convnext.stride();
        let dino_side = self.dinov2_size / self.dinov2.patch_size;
        let divisible = self.convnext_size % self.convnext.stride() == 0
            && self.dinov2_size % self.dinov2.patch_size == 0;
        let grids_meet = if self.small_views_convnext() {
            self.convnext_repeat() >= 1
        } else {
            conv_side == dino_side
        };
        if !divisible || !grids_meet || conv_side <= 0 {
            return Err(VisionError::Config(format!(
                "ConvNeXt at {} px and DINOv2 at {} px must give the same positive token grid \
                 (or, with convnext_on_small_views, one a whole multiple of the other)",
                self.convnext_size, self.dinov2_size
            )));
        }
        if let Some(f) = &self.four {
            let clip_side = f.clip.grid();
            if f.clip.image_size != self.dinov2_size || clip_side != dino_side {
                return Err(VisionError::Config(format!(
                    "CLIP at {} px must see the {} px views and give DINOv2's {dino_side}x{dino_side} grid",
                    f.clip.image_size, self.dinov2_size
                )));
            }
            if f.qformer.image_size != self.dinov2_size {
                return Err(VisionError::Config(format!(
                    "the Q-Former's ViT is built for {} px, its views are {} px",
                    f.qformer.image_size, self.dinov2_size
                )));
            }
        }
        if let ViewLayout::GlobalAndGrid { grid } = self.layout {
            if grid <= 0 {
                return Err(VisionError::Config(format!(
                    "view grid must be positive, got {grid}"
                )));
            }
        }
        Ok(())
    }
}

/// Encoder-ready pixels of some views: the same views at each encoder's resolution,
/// both still CLIP-normalized (the DINOv2 re-normalization happens in [`Mov::encode`]).
#[derive(Debug)]
pub struct MovViews {
    /// `[N, 3, convnext_size, convnext_size]`.
    pub convnext: Tensor,
    /// `[N, 3, dinov2_size, dinov2_size]`.
    pub dinov2: Tensor,
}

impl MovViews {
    /// Number of views.
    pub fn len(&self) -> i64 {
        self.convnext.size()[0]
    }

    /// True when there is no view at all (every slot skipped is impossible: the global view
    /// is always encoded, but batches may be empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Views of several pages stacked into one batch, in order.
    pub fn cat(parts: &[MovViews]) -> MovViews {
        let conv: Vec<&Tensor> = parts.iter().map(|v| &v.convnext).collect();
        let dino: Vec<&Tensor> = parts.iter().map(|v| &v.dinov2).collect();
        MovViews {
            convnext: Tensor::cat(&conv, 0),
            dinov2: Tensor::cat(&dino, 0),
        }
    }
}

/// The two frozen encoders (eval mode, no gradients).
#[derive(Debug)]
pub struct Mov {
    convnext: ConvNext,
    dinov2: DinoV2,
    /// The four-expert MoV's CLIP and Q-Former.
    clip: Option<ClipVision>,
    qformer: Option<QFormer>,
    /// ImageNet-from-CLIP re-normalization `x * scale + shift`, per channel `[3, 1, 1]`.
    renorm_scale: Tensor,
    renorm_shift: Tensor,
    config: MovConfig,
}

/// The CLIP-ConvNeXt trunk's name below the model root (the reference's attribute), which
/// checkpoints, the GPU precision policy and the trainer's freezing all key on.
pub const CONVNEXT_NAME: &str = "openclip_convnext_xxl";
/// The DINOv2 encoder's name below the model root (the reference's attribute).
pub const DINOV2_NAME: &str = "dinov2_vitg14";
/// The BLIP-2 model (ViT + Q-Former) below the model root (the reference's attribute).
pub const QFORMER_NAME: &str = "qformer";
/// The model-root names of every frozen encoder (the reference's `get_trainable_params`
/// `no_train_prefix`: `qformer.`, `openclip_convnext_xxl.`, `clip.`, `dinov2_vitg14.`).
pub const ENCODER_NAMES: [&str; 4] = [CONVNEXT_NAME, DINOV2_NAME, "clip", QFORMER_NAME];

/// MoV features of some views: what `visual_proj` maps, and the Q-Former's queries that
/// `qformer_proj` maps (four-expert MoV only).
#[derive(Debug)]
pub struct MovFeatures {
    /// `[N, tokens, feature_dim]`: (CLIP,) ConvNeXt and DINOv2 channels concatenated.
    pub tokens: Tensor,
    /// `[N, query_tokens, query_dim]`.
    pub queries: Option<Tensor>,
}

impl Mov {
    /// Builds both encoders under the reference's names ([`CONVNEXT_NAME`] and
    /// [`DINOV2_NAME`]) below `p`, the model root (`llma`).
    pub fn new(p: &nn::Path, config: &MovConfig) -> Result<Self, VisionError> {
        config.validate()?;
        let convnext = ConvNext::new(&(p / CONVNEXT_NAME), &config.convnext)?;
        let dinov2 = DinoV2::new(&(p / DINOV2_NAME), &config.dinov2)?;
        let (clip, qformer) = match &config.four {
            None => (None, None),
            Some(f) => (
                Some(ClipVision::new(&(p / "clip" / "visual"), &f.clip)?),
                Some(QFormer::new(&(p / QFORMER_NAME), &f.qformer)?),
            ),
        };
        // x_imagenet = (x_clip * clip_std + clip_mean - imagenet_mean) / imagenet_std,
        // written as the reference does: x * (clip_std / dino_std) + (clip_mean - dino_mean) / dino_std.
        let scale: Vec<f32> = (0..3)
            .map(|c| CLIP_STD[c] / IMAGENET_STD[c] as f32)
            .collect();
        let shift: Vec<f32> = (0..3)
            .map(|c| (CLIP_MEAN[c] - IMAGENET_MEAN[c] as f32) / IMAGENET_STD[c] as f32)
            .collect();
        let device = p.device();
        Ok(Self {
            convnext,
            dinov2,
            clip,
            qformer,
            renorm_scale: Tensor::from_slice(&scale).view([3, 1, 1]).to_device(device),
            renorm_shift: Tensor::from_slice(&shift).view([3, 1, 1]).to_device(device),
            config: config.clone(),
        })
    }

    /// The sizes this MoV was built with.
    pub fn config(&self) -> &MovConfig {
        &self.config
    }

    /// CLIP-normalized views -> [`MovFeatures`]: tokens `[N, tokens, (clip +) convnext +
    /// dinov2]` (in the reference's channel order) and the Q-Former's queries, without
    /// gradients: the paper's MoV is frozen, and inference needs no autograd graph.
    pub fn encode(&self, views: &MovViews) -> Result<MovFeatures, VisionError> {
        tch::no_grad(|| self.encode_with_grad(views))
    }

    /// [`Mov::encode`] recording gradients, for training the encoders themselves (models
    /// whose encoders start random, such as nano).
    pub fn encode_with_grad(&self, views: &MovViews) -> Result<MovFeatures, VisionError> {
        let (cs, ds) = (self.config.convnext_size, self.config.dinov2_size);
        check_views("ConvNeXt", &views.convnext, cs)?;
        check_views("DINOv2", &views.dinov2, ds)?;
        let (n_conv, n_dino) = (views.convnext.size()[0], views.dinov2.size()[0]);
        if n_conv != n_dino {
            return Err(VisionError::Shape(format!(
                "{n_conv} ConvNeXt views but {n_dino} DINOv2 views"
            )));
        }
        let mut conv = self.convnext.forward(&views.convnext)?;
        let repeat = self.config.convnext_repeat();
        if repeat > 1 {
            // `repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)` of the 8x8 map,
            // then the mean of the repeated grid as cls (`llama_ens5.py`).
            let (n, tokens, c) = conv.size3().expect("[N, 1 + h*w, C]");
            let side = ((tokens - 1) as f64).sqrt() as i64;
            let grid = conv
                .narrow(1, 1, side * side)
                .reshape([n, side, 1, side, 1, c])
                .expand([n, side, repeat, side, repeat, c], false)
                .reshape([n, side * repeat * side * repeat, c]);
            let cls = grid.mean_dim(1, true, None);
            conv = Tensor::cat(&[cls, grid], 1);
        }
        let kind = views.dinov2.kind();
        let dino_in =
            &views.dinov2 * self.renorm_scale.to_kind(kind) + self.renorm_shift.to_kind(kind);
        let dino = self.dinov2.forward(&dino_in)?;
        let dino = dino.to_kind(conv.kind());
        let mut parts = Vec::with_capacity(3);
        if let Some(clip) = &self.clip {
            parts.push(clip.forward(&views.dinov2)?.to_kind(conv.kind()));
        }
        parts.extend([conv, dino]);
        let queries = match &self.qformer {
            Some(q) => Some(q.forward(&views.dinov2)?),
            None => None,
        };
        Ok(MovFeatures {
            tokens: Tensor::cat(&parts, 2),
            queries,
        })
    }
}

fn check_views(encoder: &str, x: &Tensor, side: i64) -> Result<(), VisionError> {
    let size = x.size();
    if size.len() != 4 || size[1] != 3 || size[2] != side || size[3] != side {
        return Err(VisionError::Shape(format!(
            "{encoder} views must be [N, 3, {side}, {side}], got {size:?}"
        )));
    }
    if !matches!(
        x.kind(),
        Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
    ) {
        return Err(VisionError::Shape(format!(
            "{encoder} views must be floating point, got {:?}",
            x.kind()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn released_sizes() {
        let cfg = MovConfig::sphinx_tiny_1k();
        assert_eq!(cfg.canvas_size(), 1024);
        assert_eq!(cfg.feature_dim(), 4608);
        assert_eq!(cfg.tokens_per_view(), 257);
        assert_eq!(cfg.layout.slots(), 5);
        assert!(cfg.validate().is_ok());
        assert_eq!(MovConfig::sphinx_tiny().canvas_size(), 512);
    }

    #[test]
    fn rejects_views_of_unequal_counts_and_bad_sizes() {
        let cfg = MovConfig::tiny_test();
        let vs = nn::VarStore::new(Device::Cpu);
        let mov = Mov::new(&vs.root(), &cfg).unwrap();
        let views = MovViews {
            convnext: Tensor::zeros([2, 3, 128, 128], (Kind::Float, Device::Cpu)),
            dinov2: Tensor::zeros([1, 3, 56, 56], (Kind::Float, Device::Cpu)),
        };
        assert!(mov.encode(&views).is_err());
        let bad = MovConfig {
            dinov2_size: 42,
            ..MovConfig::tiny_test()
        };
        assert!(Mov::new(&vs.root(), &bad).is_err());
    }
}
