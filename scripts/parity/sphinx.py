"""Reference fixture for the full SPHINX-X forward (engine/model/tests/sphinx_parity.rs).

Composed only of peers nobody here wrote: timm's ConvNeXt and transformers' Dinov2 (built
by vision.py), torch's F.interpolate/nn.Linear/nn.LayerNorm for the view resizing and
`visual_proj`, and transformers' LlamaForCausalLM (built and renamed to the reference's
Meta-layout names by llama.py). The glue follows LLaMA2-Accessory llama_ens5_light.py
`encode_image` + `forward` line by line (in float32; the reference resizes in float16 on
GPU), plus SPHINX-X's skip tokens: a sub-image entirely in padding is replaced by ONE
`skip_token` instead of `[start_img, tokens, end_img]`.

The page: a 256 px CLIP-normalized canvas (tiny stand-in for 1024) whose content fills
the top 100 rows, so the 2x2 grid's bottom row is pure padding and skipped; text ids with
BOS first. Writes target/fixtures/sphinx/:
  model.safetensors  every parameter under its SPHINX-X name (llma.openclip_convnext_xxl.*,
                     llma.dinov2_vitg14.*, llma.visual_proj.{0,1}.*, llma.start_img,
                     llma.end_img, llma.skip_token, llma.<LLM>)
  io.safetensors     canvas [3,256,256], skipped [4] (int64 0/1), ids [T], the kept views at
                     each encoder's size, projected features, the assembled inputs_embeds,
                     and logits [1,T,vocab] at the text positions
  config.json        the tiny sizes (the Rust test checks its own configs against them)

and target/fixtures/sphinx-release/: the same weights WITHOUT the skip token, saved the
way LLaMA2-Accessory's util/misc.py saves a release (engine/worker/tests/released_checkpoint.rs):
  src/consolidated.00-of-01.model.pth   {"model": state dict}, reference key names
  src/config.json, src/meta.json        ModelArgs (+ a `vision` block for the tiny
                                        encoders) and {"llama_type": "llama_ens5_light"}
  io.safetensors     an 8-bit canvas [3,256,256] (uint8) whose bottom row of cells is
                     padding (122, 116, 104), its padding plan, ids, and the logits of the
                     public code's composition: ToTensor + Normalize, ALL 5 views encoded
                     (padded cells included), `[start_img, tokens, end_img] x 5`
  bad/               malformed releases: a missing shard, an int32 tensor

Usage: .venv/bin/python scripts/parity/sphinx.py [--out DIR]
"""

import argparse
import json
import sys
from pathlib import Path

import copy

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama  # noqa: E402  (the LLaMA peer and its HF -> reference renaming)
import vision  # noqa: E402  (the two encoder peers and their renaming)

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "llma."
LLM = llama.MODELS["gqa"]  # = LlamaConfig::tiny_test() in Rust
GRID = 2  # 2x2 sub-images, as SPHINX-Tiny-1k
CONVNEXT_SIZE, DINO_SIZE = 128, 56  # tiny stand-ins for 512 / 224: both 4x4 tokens
CANVAS = GRID * CONVNEXT_SIZE
CONTENT_ROWS = 100  # page content height on the canvas; rows below are padding (zeros)
SKIPPED = [False, False, True, True]  # bottom row lies entirely in padding
TEXT_LEN = 9
BOS = 1
# llama_ens5_light.py encode_image constants.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DINO_MEAN = [0.485, 0.456, 0.406]
DINO_STD = [0.229, 0.224, 0.225]
# accessory/data/transform.py PadToSquare: tuple(int(x * 255) for x in OPENAI_CLIP_MEAN).
PAD_RGB = tuple(int(x * 255) for x in CLIP_MEAN)


def encode_views(convnext, dino, canvas, dtype=torch.float32):
    """llama_ens5_light.py encode_image for one canvas: 5 views -> [5, tokens, C + D]; the
    views are cut in float32 and reach the encoders in `dtype` (their weights' dtype)."""
    image = canvas[None]
    image_224 = F.interpolate(image, size=(DINO_SIZE, DINO_SIZE), mode="bicubic")
    image_448 = F.interpolate(image, size=(GRID * DINO_SIZE, GRID * DINO_SIZE), mode="bicubic")
    d = DINO_SIZE
    parts_224 = [image_448[..., :d, :d], image_448[..., :d, d:], image_448[..., d:, :d], image_448[..., d:, d:]]
    local_224 = torch.cat([image_224] + parts_224, dim=0)
    image_512 = F.interpolate(image, size=(CONVNEXT_SIZE, CONVNEXT_SIZE), mode="bicubic")
    c = CONVNEXT_SIZE
    parts_512 = [image[..., :c, :c], image[..., :c, c:], image[..., c:, :c], image[..., c:, c:]]
    local_512 = torch.cat([image_512] + parts_512, dim=0)

    conv_feats = vision.convnext_tokens(convnext, local_512.to(dtype))
    clip_mean = torch.Tensor(CLIP_MEAN).view(3, 1, 1)
    clip_std = torch.Tensor(CLIP_STD).view(3, 1, 1)
    dino_mean = torch.Tensor(DINO_MEAN).view(3, 1, 1)
    dino_std = torch.Tensor(DINO_STD).view(3, 1, 1)
    dino_feats = vision.dinov2_tokens(dino, (local_224 * (clip_std / dino_std) + (clip_mean - dino_mean) / dino_std).to(dtype))
    return torch.cat([conv_feats, dino_feats], dim=2), local_512, local_224


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(20260512)
    convnext = vision.build_convnext(gen)
    dino = vision.build_dinov2(gen)
    feat_dim = vision.CONVNEXT_TINY["dims"][-1] + vision.DINO_TINY["embed_dim"]
    dim = LLM["dim"]
    visual_proj = nn.Sequential(nn.Linear(feat_dim, dim), nn.LayerNorm(dim))
    vision.randomize_(visual_proj, gen)
    start_img, end_img, skip_token = (torch.rand(1, 1, dim, generator=gen) for _ in range(3))
    lm = llama.hf_model(LLM, seed=11)

    canvas = torch.zeros(3, CANVAS, CANVAS)
    canvas[:, :CONTENT_ROWS, :] = torch.randn(3, CONTENT_ROWS, CANVAS, generator=gen)
    ids = torch.randint(2, LLM["vocab_size"], (TEXT_LEN,), generator=gen)  # < 320: valid for both LLMs
    ids[0] = BOS

    feats, views_512, views_224 = encode_views(convnext, dino, canvas)
    kept = [0] + [1 + i for i, s in enumerate(SKIPPED) if not s]
    projected = visual_proj(feats[kept])

    blocks = [start_img, projected[0:1], end_img]
    k = 1
    for skipped in SKIPPED:
        if skipped:
            blocks.append(skip_token)
        else:
            blocks += [start_img, projected[k : k + 1], end_img]
            k += 1
    image_tokens = torch.cat(blocks, dim=1)
    n_image = image_tokens.shape[1]
    h = lm.model.embed_tokens(ids[None])
    h = torch.cat([h[:, :1], image_tokens, h[:, 1:]], dim=1)
    logits = lm(inputs_embeds=h).logits[:, n_image:]
    assert logits.shape == (1, TEXT_LEN, LLM["vocab_size"])

    # The same composition in bfloat16, as the reference serves: every module cast, the
    # float32 views cast on the way in. Its distance to the float32 outputs is the bar the
    # engine's bfloat16 policy is held to (sphinx_parity.rs).
    c16, d16 = copy.deepcopy(convnext).bfloat16(), copy.deepcopy(dino).bfloat16()
    p16, lm16 = copy.deepcopy(visual_proj).bfloat16(), copy.deepcopy(lm).bfloat16()
    feats16, _, _ = encode_views(c16, d16, canvas, torch.bfloat16)
    projected16 = p16(feats16[kept])
    s16, e16, k16 = start_img.bfloat16(), end_img.bfloat16(), skip_token.bfloat16()
    blocks16 = [s16, projected16[0:1], e16]
    k = 1
    for skipped in SKIPPED:
        if skipped:
            blocks16.append(k16)
        else:
            blocks16 += [s16, projected16[k : k + 1], e16]
            k += 1
    h16 = lm16.model.embed_tokens(ids[None])
    h16 = torch.cat([h16[:, :1], torch.cat(blocks16, dim=1), h16[:, 1:]], dim=1)
    logits16 = lm16(inputs_embeds=h16).logits[:, n_image:]

    weights = {}
    weights.update({PREFIX + k: v for k, v in vision.convnext_weights(convnext).items()})
    weights.update({PREFIX + k: v for k, v in vision.dinov2_hub_weights(dino).items()})
    weights.update({f"{PREFIX}visual_proj.{k}": v.contiguous() for k, v in visual_proj.state_dict().items()})
    weights.update({PREFIX + "start_img": start_img, PREFIX + "end_img": end_img, PREFIX + "skip_token": skip_token})
    weights.update(llama.reference_state_dict(lm, LLM))
    save_file(weights, out / "model.safetensors")
    save_file(
        {
            "canvas": canvas,
            "skipped": torch.tensor([int(s) for s in SKIPPED], dtype=torch.int64),
            "ids": ids,
            "convnext_views": views_512[kept].contiguous(),
            "dinov2_views": views_224[kept].contiguous(),
            "features": projected.contiguous(),
            "inputs_embeds": h.contiguous(),
            "logits": logits.contiguous(),
            "features_bf16": projected16.float().contiguous(),
            "logits_bf16": logits16.float().contiguous(),
        },
        out / "io.safetensors",
    )
    config = {
        "convnext": vision.CONVNEXT_TINY,
        "dinov2": vision.DINO_TINY,
        "convnext_size": CONVNEXT_SIZE,
        "dinov2_size": DINO_SIZE,
        "grid": GRID,
        "llm": llama.engine_config(LLM),
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"sphinx fixtures -> {out} ({n_image} image tokens, {TEXT_LEN} text tokens)")

    # The released layout: no skip token; every cell encoded, as the public code does. Its
    # LLM has room for the engine's character tokenizer (355 pieces), so the converted
    # folder is complete as `sphinx infer` loads it.
    release = out.parent / "sphinx-release"
    rel_llm = dict(LLM, vocab_size=384)
    lm = llama.hf_model(rel_llm, seed=12)
    release_weights = {k: v for k, v in weights.items()
                       if k != PREFIX + "skip_token" and not k.startswith(PREFIX + "layers.")
                       and k not in (PREFIX + "tok_embeddings.weight", PREFIX + "norm.weight", PREFIX + "output.weight")}
    release_weights.update(llama.reference_state_dict(lm, rel_llm))
    pad = torch.tensor(PAD_RGB, dtype=torch.uint8).view(3, 1, 1)
    canvas_u8 = pad.expand(3, CANVAS, CANVAS).clone()
    canvas_u8[:, :CONTENT_ROWS, :] = torch.randint(0, 256, (3, CONTENT_ROWS, CANVAS), generator=gen, dtype=torch.uint8)
    # torchvision ToTensor (x / 255) then Normalize ((x - mean) / std), on the 8-bit canvas.
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    normalized = (canvas_u8.float().div(255) - mean) / std
    feats, _, _ = encode_views(convnext, dino, normalized)
    projected = visual_proj(feats)
    blocks = []
    for k in range(projected.shape[0]):
        blocks += [start_img, projected[k : k + 1], end_img]
    image_tokens = torch.cat(blocks, dim=1)
    n_image = image_tokens.shape[1]
    assert n_image == 5 * (projected.shape[1] + 2)
    h = lm.model.embed_tokens(ids[None])
    h = torch.cat([h[:, :1], image_tokens, h[:, 1:]], dim=1)
    release_logits = lm(inputs_embeds=h).logits[:, n_image:]
    write_release(release / "src", release_weights, dict(config, llm=llama.engine_config(rel_llm)))
    save_file(
        {
            "canvas": canvas_u8.contiguous(),
            "padding": torch.tensor([int(s) for s in SKIPPED], dtype=torch.int64),
            "ids": ids,
            "logits": release_logits.contiguous(),
        },
        release / "io.safetensors",
    )
    # Malformed releases the converter must refuse, naming the file and tensor.
    missing = release / "bad" / "missing_shard"
    write_release(missing, release_weights, dict(config, llm=llama.engine_config(rel_llm)),
                  name="consolidated.00-of-02.model.pth")
    int_weights = dict(release_weights)
    int_weights[PREFIX + "visual_proj.1.weight"] = torch.ones(LLM["dim"], dtype=torch.int32)
    write_release(release / "bad" / "int_dtype", int_weights, dict(config, llm=llama.engine_config(rel_llm)))
    print(f"released-layout fixtures -> {release} ({n_image} image tokens, no skip token)")


def write_release(src: Path, weights: dict, config: dict, name="consolidated.00-of-01.model.pth") -> None:
    """A checkpoint folder as LLaMA2-Accessory releases it (util/misc.py save_checkpoint)."""
    src.mkdir(parents=True, exist_ok=True)
    for old in src.glob("consolidated.*.pth"):
        old.unlink()
    torch.save({"model": {k: v.clone() for k, v in weights.items()}}, src / name)
    llm = config["llm"]
    params = {k: llm[k] for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of",
                                  "ffn_dim_multiplier", "norm_eps", "rope_theta", "max_seq_len")}
    params["max_batch_size"] = 32  # reference ModelArgs keys the converter ignores
    # Tiny encoders: the engine's `vision` block (released models get theirs from llama_type).
    params["vision"] = {
        "convnext": config["convnext"],
        "dinov2": config["dinov2"],
        "convnext_size": config["convnext_size"],
        "dinov2_size": config["dinov2_size"],
        "layout": {"global_and_grid": {"grid": config["grid"]}},
    }
    (src / "config.json").write_text(json.dumps(params, indent=2) + "\n")
    (src / "meta.json").write_text(json.dumps({"llama_type": "llama_ens5_light"}) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "fixtures" / "sphinx")
    generate(ap.parse_args().out)
