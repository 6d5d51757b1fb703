"""Reference fixtures for the four-expert SPHINX forward (engine/model/tests/sphinx_ens5_parity.rs).

Composed only of peers nobody here wrote: open_clip's ViT (clip.py), transformers'
Blip2Model (qformer.py), timm's ConvNeXt and transformers' Dinov2 (vision.py), torch's
F.interpolate / nn.Linear / nn.LayerNorm, and transformers' LlamaForCausalLM (llama.py) or
MixtralForCausalLM (mixtral.py). The glue follows LLaMA2-Accessory `encode_image` + `forward`
of the two reference files line by line (float32; the reference resizes in float16):

  llama_ens5/           `llama_ens5.py` (SPHINX): a 112 px canvas (tiny stand-in for 448),
                        five 56 px views (the canvas resized, then its four quarters); the
                        Q-Former, CLIP and DINOv2 see them; ConvNeXt sees them nearest-resized
                        to 64 px and its 2x2 maps are repeated 2x to 4x4; LLaMA LLM
  mixtral_sparse_ens5/  `mixtral_sparse_ens5.py` (SPHINX-MoE): a 256 px canvas (for 1024),
                        56 px views as llama_ens5_light (canvas resized, quarters of the canvas
                        resized to 112), 128 px ConvNeXt views (canvas resized, its quarters);
                        Mixtral LLM

Per view: [start_img, qformer_proj(32 queries), visual_proj(cat[CLIP, ConvNeXt, DINOv2])
(17 tokens), end_img]; sequence [BOS, 5 views, text]; no skip token (the reference has none).
Each folder: model.safetensors (every tensor under its reference name: llma.qformer.*,
llma.clip.visual.*, llma.openclip_convnext_xxl.*, llma.dinov2_vitg14.*, llma.qformer_proj.*,
llma.visual_proj.*, llma.start_img, llma.end_img, the LLM), io.safetensors (canvas, ids, the
views, projected features [5, 49, dim], logits at the text positions) and llm.json.

mixtral_sparse_ens5/release/: the same model as LLaMA2-Accessory saves it with two
model-parallel ranks: `consolidated.0{0,1}-of-02.model.pth` ({"model": ...}; the LLM split as
fairscale splits it, each stacked expert tensor per expert as `_sparse_expert_split` does,
the encoders and projections replicated), a ModelArgs config.json (`moe`, `hidden_dim`, a
`vision` block for the tiny encoders) and meta.json; converted by scripts/convert_checkpoint.py
into release/converted/. release/bad/: the shards with one replicated encoder tensor differing.

Usage: .venv/bin/python scripts/parity/sphinx_ens5.py [--out DIR]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clip  # noqa: E402
import llama  # noqa: E402
import mixtral  # noqa: E402
import qformer  # noqa: E402
import vision  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "llma."
SMALL = 56  # tiny stand-in for 224
TEXT_LEN = 9
BOS = 1
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DINO_MEAN = [0.485, 0.456, 0.406]
DINO_STD = [0.229, 0.224, 0.225]
LAYOUTS = {"llama_ens5": dict(canvas=2 * SMALL, convnext=64), "mixtral_sparse_ens5": dict(canvas=256, convnext=128)}


def views(kind, image):
    """The five small views and the ConvNeXt views of one canvas [1, 3, S, S]."""
    s = SMALL
    if kind == "llama_ens5":
        image_224 = F.interpolate(image, size=(s, s), mode="bicubic")
        parts = [image[..., :s, :s], image[..., :s, s:], image[..., s:, :s], image[..., s:, s:]]
        small = torch.cat([image_224] + parts, dim=0)
        return small, F.interpolate(small, size=(LAYOUTS[kind]["convnext"],) * 2)  # nearest
    image_224 = F.interpolate(image, size=(s, s), mode="bicubic")
    image_448 = F.interpolate(image, size=(2 * s, 2 * s), mode="bicubic")
    parts = [image_448[..., :s, :s], image_448[..., :s, s:], image_448[..., s:, :s], image_448[..., s:, s:]]
    c = LAYOUTS[kind]["convnext"]
    image_512 = F.interpolate(image, size=(c, c), mode="bicubic")
    parts_512 = [image[..., :c, :c], image[..., :c, c:], image[..., c:, :c], image[..., c:, c:]]
    return torch.cat([image_224] + parts, dim=0), torch.cat([image_512] + parts_512, dim=0)


def convnext_feats(kind, convnext, x):
    if kind == "llama_ens5":
        f = convnext(x).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
        f = f.flatten(-2).permute(0, 2, 1)
        return torch.cat([f.mean(dim=1, keepdim=True), f], dim=1)
    return vision.convnext_tokens(convnext, x)


def generate(kind, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(20261202)
    convnext = vision.build_convnext(gen)
    dino = vision.build_dinov2(gen)
    vit = clip.build_clip(71)
    blip = qformer.build_qformer(72)
    if kind == "llama_ens5":
        llm_args = llama.MODELS["gqa"]
        lm = llama.hf_model(llm_args, seed=13)
        llm_weights, llm_cfg = llama.reference_state_dict(lm, llm_args), llama.engine_config(llm_args)
    else:
        lm = mixtral.build_mixtral(14)
        llm_weights, llm_cfg = mixtral.reference_weights(lm), mixtral.engine_config()
    # 5 x 51 image words + text exceed the tiny LLMs' 128-position default; the RoPE
    # tables of both sides cover them (transformers computes positions on the fly).
    llm_cfg = dict(llm_cfg, max_seq_len=512)
    dim = llm_cfg["dim"]
    ens_dim = clip.VISION["width"] + vision.CONVNEXT_TINY["dims"][-1] + vision.DINO_TINY["embed_dim"]
    visual_proj = nn.Sequential(nn.Linear(ens_dim, dim), nn.LayerNorm(dim))
    qformer_proj = nn.Sequential(nn.Linear(qformer.QFORMER["hidden_size"], dim), nn.LayerNorm(dim))
    vision.randomize_(visual_proj, gen)
    vision.randomize_(qformer_proj, gen)
    start_img, end_img = (torch.rand(1, 1, dim, generator=gen) for _ in range(2))

    side = LAYOUTS[kind]["canvas"]
    canvas = torch.randn(3, side, side, generator=gen)
    ids = torch.randint(2, llm_cfg["vocab_size"], (TEXT_LEN,), generator=gen)
    ids[0] = BOS

    small, conv_views = views(kind, canvas[None])
    image_feats = qformer.qformer_features(blip, small)
    clip_feats = clip.clip_encode_image(vit, small)
    conv = convnext_feats(kind, convnext, conv_views)
    mean, std = torch.Tensor(CLIP_MEAN).view(3, 1, 1), torch.Tensor(CLIP_STD).view(3, 1, 1)
    dmean, dstd = torch.Tensor(DINO_MEAN).view(3, 1, 1), torch.Tensor(DINO_STD).view(3, 1, 1)
    dino_feats = vision.dinov2_tokens(dino, (small * std + mean - dmean) / dstd)
    ens = torch.cat([clip_feats, conv, dino_feats], dim=2)
    projected = torch.cat([qformer_proj(image_feats), visual_proj(ens)], dim=1)
    blocks = []
    for v in range(projected.shape[0]):
        blocks += [start_img, projected[v:v + 1], end_img]
    image_tokens = torch.cat(blocks, dim=1)
    n_image = image_tokens.shape[1]
    h = lm.model.embed_tokens(ids[None])
    h = torch.cat([h[:, :1], image_tokens, h[:, 1:]], dim=1)
    logits = lm(inputs_embeds=h).logits[:, n_image:]

    weights = dict(llm_weights)
    weights.update({PREFIX + k: v for k, v in vision.convnext_weights(convnext).items()})
    weights.update({PREFIX + k: v for k, v in vision.dinov2_hub_weights(dino).items()})
    weights.update(clip.clip_weights(vit, PREFIX + "clip.visual."))
    weights.update(qformer.qformer_weights(blip, PREFIX + "qformer."))
    weights.update({f"{PREFIX}visual_proj.{k}": v.contiguous() for k, v in visual_proj.state_dict().items()})
    weights.update({f"{PREFIX}qformer_proj.{k}": v.contiguous() for k, v in qformer_proj.state_dict().items()})
    weights.update({PREFIX + "start_img": start_img, PREFIX + "end_img": end_img})
    save_file({k: v.contiguous() for k, v in weights.items()}, out / "model.safetensors")
    save_file({"canvas": canvas, "ids": ids, "small_views": small.contiguous(),
               "convnext_views": conv_views.contiguous(), "features": projected.contiguous(),
               "logits": logits.contiguous()}, out / "io.safetensors")
    (out / "llm.json").write_text(json.dumps(llm_cfg, indent=1) + "\n")
    print(f"{kind} fixtures -> {out} ({n_image} image tokens)")
    if kind == "mixtral_sparse_ens5":
        write_release(weights, llm_cfg, out / "release")


def vision_config(convnext_on_small_views):
    """The engine's MovConfig JSON of these tiny encoders (MovConfig::tiny_test_four)."""
    q, qf, c = qformer.VISION, qformer.QFORMER, clip.VISION
    return {"convnext": vision.CONVNEXT_TINY, "dinov2": vision.DINO_TINY,
            "convnext_size": 64 if convnext_on_small_views else 128, "dinov2_size": SMALL,
            "layout": {"global_and_grid": {"grid": 2}},
            "four": {"clip": {"width": c["width"], "layers": c["layers"], "patch_size": c["patch_size"],
                              "image_size": c["image_size"], "output_dim": clip.EMBED_DIM},
                     "qformer": {"vision_width": q["hidden_size"], "vision_layers": q["num_hidden_layers"],
                                 "vision_heads": q["num_attention_heads"], "vision_mlp": q["intermediate_size"],
                                 "vision_eps": q["layer_norm_eps"], "patch_size": q["patch_size"],
                                 "image_size": q["image_size"], "width": qf["hidden_size"],
                                 "layers": qf["num_hidden_layers"], "heads": qf["num_attention_heads"],
                                 "mlp": qf["intermediate_size"], "eps": qf["layer_norm_eps"],
                                 "cross_attention_frequency": qf["cross_attention_frequency"], "query_tokens": 32},
                     "convnext_on_small_views": convnext_on_small_views}}


def write_release(weights, llm_cfg, out):
    a = mixtral.ARGS
    E = a["experts"]
    shards = llama.split_shards(weights, 2)
    for name, t in weights.items():
        if name.endswith(("feed_forward.w1", "feed_forward.w2", "feed_forward.w3")):
            parts = torch.chunk(t.view(E, -1, t.shape[-1]), 2, dim=1)
            for r in range(2):
                shards[r][name] = parts[r].reshape(-1, t.shape[-1]).clone()
    params = dict(dim=a["dim"], hidden_dim=a["hidden"], head_dim=a["dim"] // a["n_heads"], n_layers=a["n_layers"],
                  n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"], norm_eps=a["norm_eps"], rope_theta=a["rope_theta"],
                  max_seq_len=llm_cfg["max_seq_len"], max_batch_size=32, trainable_mode="mm_stage2",
                  moe={"num_experts_per_tok": a["top_k"], "num_experts": E}, vision=vision_config(False))
    for d, rank_shards in ((out, shards), (out / "bad", None)):
        d.mkdir(parents=True, exist_ok=True)
        if rank_shards is None:  # one replicated tensor differs between the ranks
            rank_shards = [dict(sh) for sh in shards]
            key = PREFIX + "qformer.query_tokens"
            rank_shards[1][key] = rank_shards[1][key] + 1.0
        for r, sh in enumerate(rank_shards):
            torch.save({"model": sh}, d / f"consolidated.{r:02d}-of-02.model.pth")
        (d / "config.json").write_text(json.dumps(params, indent=2) + "\n")
        (d / "meta.json").write_text(json.dumps({"llama_type": "mixtral_sparse_ens5"}) + "\n")
    subprocess.run([sys.executable, str(ROOT / "scripts/convert_checkpoint.py"), str(out),
                    "--out-dir", str(out / "converted")], check=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "fixtures" / "sphinx_ens5")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    for kind in LAYOUTS:
        generate(kind, a.out / kind)
