//! The full SPHINX-X model: MoV features -> `visual_proj` -> image blocks with
//! `start_img`/`end_img`, one `skip_token` per skipped sub-image, spliced after BOS into
//! the LLaMA input sequence.
//!
//! Follows `Transformer.encode_image`/`forward` of LLaMA2-Accessory
//! `accessory/model/LLM/llama_ens5_light.py` (SPHINX-Tiny-1k; `llama_ens_light.py` is the
//! one-view case) plus SPHINX-X's skip tokens (arXiv 2402.05935, section 3.1): a
//! sub-image lying entirely in the canvas padding is not encoded, and its whole
//! `[start_img, 257 tokens, end_img]` block becomes ONE learned `skip_token`, so the
//! remaining sub-images keep explicit relative positions. The sequence is
//! `[BOS] + for each view (global, then sub-images row-major) + text`.
//!
//! Parameter names are the reference's under `llma.`: `visual_proj.0` (Linear 4608 -> dim),
//! `visual_proj.1` (LayerNorm), with the four-expert MoV (`llama_ens5.py`) also
//! `qformer_proj.{0,1}` for the Q-Former's queries, `start_img`, `end_img` (each
//! `[1, 1, dim]`), and
//! `skip_token`, which LLaMA2-Accessory's public code does not contain; it is declared with
//! the same `[1, 1, dim]` shape as the image tags.
//!
//! Skip tokens are a property of the model: the released checkpoints have none and encode
//! every cell, padding included, exactly as the public code does; models trained here have
//! one. [`Sphinx::page_input`] is the ONE path from a page's 8-bit canvas and padding plan
//! to encoder views and the plan the image block follows, for every command.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::config::{LlamaConfig, LlamaType};
use crate::llama::{Llama, LlamaError};
use crate::mov::{Mov, MovConfig, MovFeatures, MovViews, ViewLayout, VisionError};
use crate::param_names::ROOT_NAME;
use crate::placement::PartPaths;
use crate::views::{normalize_canvas, views_from_canvas};

/// Why a SPHINX-X forward was refused.
#[derive(Debug, thiserror::Error)]
pub enum SphinxError {
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error(transparent)]
    Llama(#[from] LlamaError),
    #[error("bad SPHINX-X input: {0}")]
    Input(String),
}

/// `nn.LayerNorm` default epsilon, which `visual_proj`'s LayerNorm uses.
const PROJ_LN_EPS: f64 = 1e-5;

impl MovConfig {
    /// The vision side of a released checkpoint type (its `meta.json` `llama_type`).
    pub fn for_llama_type(kind: LlamaType) -> Self {
        match kind {
            LlamaType::LlamaEnsLight => Self::sphinx_tiny(),
            LlamaType::LlamaEns5Light => Self::sphinx_tiny_1k(),
            LlamaType::LlamaEns5 => Self::sphinx_ens5(),
            LlamaType::MixtralSparseEns5 => Self::sphinx_moe(),
        }
    }
}

/// A page's encoder views and the plan its image block follows (see [`Sphinx::page_input`]).
#[derive(Debug)]
pub struct PageViews {
    /// Encoder-ready views: the global view, then the encoded cells row-major.
    pub views: MovViews,
    /// One flag per sub-image slot: `true` = the skip token stands for it. All `false`
    /// for a model without a skip token; empty for the one-view layout.
    pub skipped: Vec<bool>,
}

/// A page ready for the model: its encoded views, the skip plan and the text ids.
#[derive(Debug)]
pub struct PageInput<'a> {
    /// Encoder-ready views of the NON-skipped slots: the global view, then the kept
    /// sub-images row-major.
    pub views: &'a MovViews,
    /// One flag per sub-image slot (row-major): `true` = replaced by the skip token.
    pub skipped: &'a [bool],
    /// Text token ids `[T]` (int64), BOS first, as the tokenizer returns them.
    pub ids: &'a Tensor,
}

/// The plan a model's image block follows for a page whose cells are `padding` (row-major,
/// from the tiler): the padding itself with a skip token, nothing skipped without one
/// (every cell is encoded, as the public code does), and no plan at all for the one-view
/// layout.
pub fn skip_plan(
    vision: &MovConfig,
    skip_tokens: bool,
    padding: &[bool],
) -> Result<Vec<bool>, SphinxError> {
    let cells = match vision.layout {
        ViewLayout::Single => 1,
        ViewLayout::GlobalAndGrid { grid } => (grid * grid) as usize,
    };
    if padding.len() != cells {
        return Err(SphinxError::Input(format!(
            "padding plan has {} cells but the {:?} layout has {cells}",
            padding.len(),
            vision.layout
        )));
    }
    Ok(match vision.layout {
        ViewLayout::Single => Vec::new(),
        _ if skip_tokens => padding.to_vec(),
        _ => vec![false; cells],
    })
}

/// THE page-to-model path: an 8-bit canvas `[3, S, S]` (uint8, as the tiler made it and a
/// bundle rebuilds it) and its padding plan -> the encoder views and the plan of the image
/// block, for a model with these encoders and (or not) a skip token. Normalises like
/// `ToTensor` + `Normalize`, then derives every view as `encode_image` does
/// ([`views_from_canvas`]). `sphinx infer`, `run`, `serve`, `eval` and `train` all use it.
pub fn page_input(
    vision: &MovConfig,
    skip_tokens: bool,
    canvas: &Tensor,
    padding: &[bool],
) -> Result<PageViews, SphinxError> {
    let skipped = skip_plan(vision, skip_tokens, padding)?;
    let views = views_from_canvas(vision, &normalize_canvas(canvas)?, &skipped)?;
    Ok(PageViews { views, skipped })
}

/// Casts a freshly declared model's variables to the kinds it runs with on a GPU, before
/// its weights are loaded (so a float32 checkpoint keeps full precision where it is kept).
///
/// bfloat16 everywhere, the encoders included, as the reference serves (the released
/// checkpoints' dtype; tensor cores; half the memory). The parity bar of this policy is
/// the reference's own: the engine's distance to the float32 peer composition is at most
/// 1.5x that of the peer composition run in bfloat16 (`tests/sphinx_parity.rs`). Under
/// the earlier absolute bar (relative error <= 1e-2) the ConvNeXt trunk had to stay
/// float32 (bfloat16 took it to 1.14e-2 on an H200); bfloat16 costs the peer as much.
pub fn cast_for_gpu(vs: &mut nn::VarStore) {
    vs.bfloat16();
}

/// SPHINX-X: frozen MoV encoders, trainable projector and image tags, and the LLM.
#[derive(Debug)]
pub struct Sphinx {
    mov: Mov,
    proj_linear: nn::Linear,
    proj_norm: nn::LayerNorm,
    /// `qformer_proj` (Linear + LayerNorm) of the four-expert MoV's Q-Former queries.
    qformer_proj: Option<(nn::Linear, nn::LayerNorm)>,
    start_img: Tensor,
    end_img: Tensor,
    /// `None` for a released checkpoint (no skip token).
    skip_token: Option<Tensor>,
    llm: Llama,
}

/// The skip token's parameter name below the model root.
pub const SKIP_TOKEN_NAME: &str = "skip_token";

impl Sphinx {
    /// Declares every parameter under `root / "llma"` with the reference's names, with a
    /// skip token (models trained here); see [`Sphinx::build`].
    pub fn new(
        root: &nn::Path,
        llm: &LlamaConfig,
        vision: &MovConfig,
    ) -> Result<Self, SphinxError> {
        Self::build(root, llm, vision, true)
    }

    /// Declares every parameter; `skip_tokens` says whether the model has SPHINX-X's
    /// `skip_token` (the released checkpoints do not).
    pub fn build(
        root: &nn::Path,
        llm: &LlamaConfig,
        vision: &MovConfig,
        skip_tokens: bool,
    ) -> Result<Self, SphinxError> {
        llm.validate().map_err(LlamaError::Config)?;
        let paths = PartPaths::single(root, llm.n_layers as usize);
        Self::build_parts(&paths, llm, vision, skip_tokens)
    }

    /// [`Sphinx::build`] with each part under its own store's root (see
    /// [`crate::placement`]): the encoders, projector, image tags and embeddings under
    /// `paths.front`, layer `i` under `paths.layers[i]`, the head under `paths.head`.
    pub fn build_parts(
        paths: &PartPaths,
        llm: &LlamaConfig,
        vision: &MovConfig,
        skip_tokens: bool,
    ) -> Result<Self, SphinxError> {
        let parts = paths.sub(ROOT_NAME);
        let p = parts.front.clone();
        let mov = Mov::new(&p, vision)?;
        let dim = llm.dim;
        let proj = &p / "visual_proj";
        let proj_linear = nn::linear(&proj / "0", vision.feature_dim(), dim, Default::default());
        let ln = nn::LayerNormConfig {
            eps: PROJ_LN_EPS,
            ..Default::default()
        };
        let proj_norm = nn::layer_norm(&proj / "1", vec![dim], ln);
        let qformer_proj = vision.query_dim().map(|q| {
            let qp = &p / "qformer_proj";
            (
                nn::linear(&qp / "0", q, dim, Default::default()),
                nn::layer_norm(&qp / "1", vec![dim], ln),
            )
        });
        // The reference initialises the image tags with torch.rand; real weights replace them.
        let tag = |name: &str| p.var(name, &[1, 1, dim], nn::Init::Uniform { lo: 0.0, up: 1.0 });
        let (start_img, end_img) = (tag("start_img"), tag("end_img"));
        let skip_token = skip_tokens.then(|| tag(SKIP_TOKEN_NAME));
        let llm = Llama::build(&parts, llm)?;
        Ok(Self {
            mov,
            proj_linear,
            proj_norm,
            qformer_proj,
            start_img,
            end_img,
            skip_token,
            llm,
        })
    }

    /// The MoV encoders.
    pub fn mov(&self) -> &Mov {
        &self.mov
    }

    /// The LLM (for generation with a KV cache after the prompt).
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// Whether this model has a skip token.
    pub fn has_skip_token(&self) -> bool {
        self.skip_token.is_some()
    }

    /// Encoder-ready views of one page from its CLIP-normalized canvas and skip plan
    /// (see [`views_from_canvas`]).
    pub fn page_views(&self, canvas: &Tensor, skipped: &[bool]) -> Result<MovViews, SphinxError> {
        Ok(views_from_canvas(self.mov.config(), canvas, skipped)?)
    }

    /// The plan this model's image block follows for a page (see [`skip_plan`]).
    pub fn skip_plan(&self, padding: &[bool]) -> Result<Vec<bool>, SphinxError> {
        skip_plan(self.mov.config(), self.has_skip_token(), padding)
    }

    /// THE page-to-model path for this model (see [`page_input`]).
    pub fn page_input(&self, canvas: &Tensor, padding: &[bool]) -> Result<PageViews, SphinxError> {
        page_input(self.mov.config(), self.has_skip_token(), canvas, padding)
    }

    /// Views `-> [N, tokens, dim]`: MoV features through `visual_proj` (Linear + LayerNorm).
    pub fn encode_views(&self, views: &MovViews) -> Result<Tensor, SphinxError> {
        Ok(self.project(&self.mov.encode(views)?))
    }

    /// `visual_proj` (Linear + LayerNorm) on MoV tokens `[N, tokens, feature_dim]`, after
    /// the four-expert MoV's queries through `qformer_proj` (`llama_ens5.py`: queries
    /// first) -> `[N, words, dim]`. Separate from [`Sphinx::encode_views`] so training can
    /// run the frozen encoders without gradients and only this part with them.
    pub fn project(&self, feats: &MovFeatures) -> Tensor {
        let kind = self.proj_linear.ws.kind();
        let tokens = feats.tokens.to_kind(kind);
        let tokens = self.proj_norm.forward(&self.proj_linear.forward(&tokens));
        match (&feats.queries, &self.qformer_proj) {
            (Some(q), Some((linear, norm))) => {
                let q = norm.forward(&linear.forward(&q.to_kind(kind)));
                Tensor::cat(&[q, tokens], 1)
            }
            _ => tokens,
        }
    }

    /// The LLM input `[1, L, dim]` of text ids with an already built image block
    /// `[1, n, dim]` after BOS (none for a text-only conversation), and `n`.
    pub fn assemble_with_image(
        &self,
        ids: &Tensor,
        image: Option<&Tensor>,
    ) -> Result<(Tensor, i64), SphinxError> {
        if ids.dim() != 1 || ids.size()[0] < 1 || ids.kind() != Kind::Int64 {
            return Err(SphinxError::Input(format!(
                "text ids must be a non-empty 1-D int64 tensor (BOS first), got {:?} {:?}",
                ids.kind(),
                ids.size()
            )));
        }
        let text = self.llm.embed_tokens(&ids.unsqueeze(0))?;
        let Some(image) = image else {
            return Ok((text, 0));
        };
        let image = image.to_kind(text.kind());
        let n_image = image.size()[1];
        let t = ids.size()[0];
        let seq = Tensor::cat(&[text.narrow(1, 0, 1), image, text.narrow(1, 1, t - 1)], 1);
        Ok((seq, n_image))
    }

    /// Image part of the sequence `[1, n, dim]` from projected features of the kept views
    /// `[N, tokens, dim]` and the skip plan: global block, then per sub-image its block or
    /// the skip token.
    pub fn image_block(&self, feats: &Tensor, skipped: &[bool]) -> Result<Tensor, SphinxError> {
        let size = feats.size();
        let layout = self.mov.config().layout;
        let sub_slots = layout.slots() - 1;
        if skipped.len() != sub_slots {
            return Err(SphinxError::Input(format!(
                "skip plan has {} entries but the {layout:?} layout has {sub_slots} sub-images",
                skipped.len()
            )));
        }
        let kept = 1 + skipped.iter().filter(|&&s| !s).count() as i64;
        let dim = self.llm.config().dim;
        if size.len() != 3 || size[0] != kept || size[2] != dim {
            return Err(SphinxError::Input(format!(
                "expected features of {kept} kept views [{kept}, tokens, {dim}], got {size:?}"
            )));
        }
        let kind = feats.kind();
        let (start, end) = (self.start_img.to_kind(kind), self.end_img.to_kind(kind));
        let skip = match &self.skip_token {
            Some(t) => Some(t.to_kind(kind)),
            None if skipped.iter().any(|&s| s) => {
                return Err(SphinxError::Input(
                    "this model has no skip token (a released checkpoint): every cell must \
                     be encoded"
                        .into(),
                ))
            }
            None => None,
        };
        let block = |i: i64| {
            [
                start.shallow_clone(),
                feats.narrow(0, i, 1),
                end.shallow_clone(),
            ]
        };
        let mut parts: Vec<Tensor> = block(0).into();
        let mut next = 1;
        for &s in skipped {
            if let (true, Some(skip)) = (s, &skip) {
                parts.push(skip.shallow_clone());
            } else {
                parts.extend(block(next));
                next += 1;
            }
        }
        Ok(Tensor::cat(&parts, 1))
    }

    /// The LLM input `[1, L, dim]` of a page (BOS embedding, image block, embeddings of the
    /// rest of the ids) and the length of its image block.
    pub fn assemble(&self, page: &PageInput) -> Result<(Tensor, i64), SphinxError> {
        if page.ids.kind() != Kind::Int64 {
            return Err(SphinxError::Input(format!(
                "text ids must be a non-empty 1-D int64 tensor (BOS first), got {:?} {:?}",
                page.ids.kind(),
                page.ids.size()
            )));
        }
        let image = self.image_block(&self.encode_views(page.views)?, page.skipped)?;
        self.assemble_with_image(page.ids, Some(&image))
    }

    /// Logits `[1, T, vocab]` at the text positions of a page, aligned like the
    /// reference's training forward: entry `j` is the prediction for `ids[j + 1]` (entry 0
    /// is read at the last image token, right before the first text token after BOS).
    pub fn forward(&self, page: &PageInput) -> Result<Tensor, SphinxError> {
        let (seq, n_image) = self.assemble(page)?;
        let hidden = self.llm.forward_embeds(&seq, 0, None, None)?;
        let t = page.ids.size()[0];
        Ok(self.llm.logits(&hidden.narrow(1, n_image, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn tiny() -> (nn::VarStore, Sphinx) {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Sphinx::new(
            &vs.root(),
            &LlamaConfig::tiny_test(),
            &MovConfig::tiny_test(),
        )
        .unwrap();
        (vs, model)
    }

    #[test]
    fn parameter_names_are_the_references() {
        let (vs, _model) = tiny();
        let names = vs.variables();
        for name in [
            "llma.visual_proj.0.weight",
            "llma.visual_proj.1.bias",
            "llma.start_img",
            "llma.end_img",
            "llma.skip_token",
            "llma.openclip_convnext_xxl.stem.0.weight",
            "llma.dinov2_vitg14.blocks.1.mlp.w12.weight",
            "llma.tok_embeddings.weight",
        ] {
            assert!(names.contains_key(name), "missing {name}");
        }
        assert_eq!(names["llma.visual_proj.0.weight"].size(), vec![64, 64]);
    }

    #[test]
    fn skipped_sub_images_shorten_the_sequence() {
        let (_vs, model) = tiny();
        let canvas = Tensor::randn([3, 256, 256], (Kind::Float, Device::Cpu));
        let ids = Tensor::from_slice(&[1i64, 5, 6, 7]);
        let skipped = [false, false, true, true];
        let views = model.page_views(&canvas, &skipped).unwrap();
        let page = PageInput {
            views: &views,
            skipped: &skipped,
            ids: &ids,
        };
        let (seq, n_image) = model.assemble(&page).unwrap();
        // 3 kept views x (17 tokens + 2 tags) + 2 skip tokens.
        assert_eq!(n_image, 3 * 19 + 2);
        assert_eq!(seq.size(), vec![1, 1 + n_image + 3, 64]);
        let skip_at = 1 + 3 * 19;
        let skip = model.skip_token.as_ref().unwrap();
        let diff = (seq.get(0).get(skip_at) - skip.view([64]))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(diff, 0.0);
        assert_eq!(model.forward(&page).unwrap().size(), vec![1, 4, 320]);
    }

    #[test]
    fn a_model_without_skip_token_encodes_every_cell() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Sphinx::build(
            &vs.root(),
            &LlamaConfig::tiny_test(),
            &MovConfig::tiny_test(),
            false,
        )
        .unwrap();
        assert!(!model.has_skip_token());
        assert!(!vs.variables().contains_key("llma.skip_token"));
        let padding = [false, false, true, true];
        assert_eq!(model.skip_plan(&padding).unwrap(), vec![false; 4]);
        let canvas = Tensor::full([3, 256, 256], 122, (Kind::Uint8, Device::Cpu));
        let page = model.page_input(&canvas, &padding).unwrap();
        assert_eq!(page.views.len(), 5);
        let feats = model.encode_views(&page.views).unwrap();
        let block = model.image_block(&feats, &page.skipped).unwrap();
        assert_eq!(block.size(), vec![1, 5 * 19, 64]);
        // Asking it to skip is an error, not a made-up embedding.
        let err = model
            .image_block(&feats.narrow(0, 0, 3), &padding)
            .unwrap_err();
        assert!(err.to_string().contains("no skip token"), "{err}");
        // The same page costs a skip-token model 3 views and 2 skip tokens.
        let (_vs, skipping) = tiny();
        let page = skipping.page_input(&canvas, &padding).unwrap();
        assert_eq!(
            (page.views.len(), page.skipped.clone()),
            (3, padding.to_vec())
        );
        assert!(skipping.skip_plan(&[false; 3]).is_err());
    }

    #[test]
    fn rejects_inconsistent_pages() {
        let (_vs, model) = tiny();
        let canvas = Tensor::randn([3, 256, 256], (Kind::Float, Device::Cpu));
        let views = model
            .page_views(&canvas, &[false, false, true, true])
            .unwrap();
        let ids = Tensor::from_slice(&[1i64, 5]);
        let wrong_plan = [false, false, false, true];
        let page = PageInput {
            views: &views,
            skipped: &wrong_plan,
            ids: &ids,
        };
        let err = model.forward(&page).unwrap_err().to_string();
        assert!(err.contains("kept views"), "{err}");
        let float_ids = Tensor::from_slice(&[1.0f32]);
        let page = PageInput {
            views: &views,
            skipped: &[false, false, true, true],
            ids: &float_ids,
        };
        assert!(model
            .forward(&page)
            .unwrap_err()
            .to_string()
            .contains("int64"));
    }
}
