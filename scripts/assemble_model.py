#!/usr/bin/env python3
"""Assemble a SPHINX-X model folder to fine-tune (`sphinx train`, job spec `{"dir": OUT}`)
from parts, the way the reference builds one before training (`load_pretrained_visual_encoder`
in accessory/model/LLM/llama_ens*.py): a base LLM plus the released frozen encoders, and
freshly initialised trainable glue.

  --llm DIR        a base LLM in the Hugging Face layout (config.json + *.safetensors):
                   LlamaForCausalLM, InternLM2ForCausalLM (packed wqkv) or MixtralForCausalLM,
                   converted by scripts/convert_hf_llm.py
  --convnext FILE  open_clip `convnext_xxlarge` checkpoint (open_clip_pytorch_model.bin or
                   open_clip_model.safetensors): its `visual.trunk.*` become
                   `llma.openclip_convnext_xxl.*` (the text tower and `visual.head.proj` are
                   not used by SPHINX and are dropped)
  --dinov2 FILE    DINOv2 hub checkpoint (dinov2_vitg14_pretrain.pth): `llma.dinov2_vitg14.*`
  --clip FILE      (four-expert llama types) open_clip ViT-L-14 checkpoint: its `visual.*`
                   become `llma.clip.visual.*`
  --blip2 FILE     (four-expert llama types) transformers Blip2 safetensors/bin: its
                   `vision_model.*`, `query_tokens`, `qformer.*` become `llma.qformer.*`
                   (a packed `self_attn.qkv.bias` is stored as released: q_bias, v_bias)
 -> OUT/model.safetensors, OUT/config.json (llama_type, llm, skip_tokens, optional vision),
    OUT/tokenizer.json (from DIR/tokenizer.model by scripts/convert_tokenizer.py, if present)

New trainable tensors get the reference's initialisation: `visual_proj` / `qformer_proj`
as nn.Linear + nn.LayerNorm, `start_img`, `end_img` (and SPHINX-X's `skip_token`) as
torch.rand(1, 1, dim). Every problem (a part of the wrong kind, missing parts) is reported
at once, naming the file. Shapes are checked by the engine when it loads the folder: one
error lists every missing, unexpected and mis-shaped tensor.

Usage: assemble_model.py --llm DIR --convnext FILE --dinov2 FILE [--clip FILE --blip2 FILE]
       --llama-type TYPE --out OUT [--vision-config JSON] [--no-skip-token] [--seed N]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_hf_llm  # noqa: E402

PREFIX = "llma."
TWO = ("llama_ens_light", "llama_ens5_light")
FOUR = ("llama_ens5", "mixtral_sparse_ens5")
# Released encoder widths (engine/model/src/mov.rs presets): ConvNeXt-XXL 3072, DINOv2-g
# 1536, CLIP ViT-L/14 1024, Q-Former 768.
RELEASED = {"convnext": 3072, "dinov2": 1536, "clip": 1024, "qformer": 768}


class AssemblyError(Exception):
    pass


def read_tensors(path: Path):
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AssemblyError(f"{path}: cannot read as safetensors or a PyTorch checkpoint: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AssemblyError(f"{path}: expected a state dict of tensors")
    return obj


def take_prefix(sd, prefix, path, what, problems):
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not part:
        shown = sorted(sd)[:5]
        problems.append(f"{path}: no {what} tensors (`{prefix}*`); it holds {shown}...")
    return part


def encoder_parts(a, problems):
    out = {}
    sd = read_tensors(a.convnext)
    trunk = take_prefix(sd, "visual.trunk.", a.convnext, "open_clip ConvNeXt trunk", problems)
    # timm's classifier is reset in open_clip's trunk; SPHINX replaces pooling by identity.
    trunk = {k: v for k, v in trunk.items() if not k.startswith("head.fc.")}
    out.update({f"{PREFIX}openclip_convnext_xxl.{k}": v for k, v in trunk.items()})
    sd = read_tensors(a.dinov2)
    if "cls_token" not in sd or not any(k.startswith("blocks.") for k in sd):
        problems.append(f"{a.dinov2}: not a DINOv2 hub checkpoint (no cls_token / blocks.N.*)")
    else:
        out.update({f"{PREFIX}dinov2_vitg14.{k}": v for k, v in sd.items()})
    if a.llama_type in FOUR:
        if a.clip is None or a.blip2 is None:
            problems.append(f"llama_type {a.llama_type} is the four-expert MoV: pass --clip and --blip2")
            return out
        sd = read_tensors(a.clip)
        visual = take_prefix(sd, "visual.", a.clip, "open_clip ViT visual", problems)
        if visual and "conv1.weight" not in visual:
            problems.append(f"{a.clip}: `visual.*` is not an open_clip ViT (no visual.conv1.weight)")
        out.update({f"{PREFIX}clip.visual.{k}": v for k, v in visual.items()})
        sd = read_tensors(a.blip2)
        kept = {k: v for k, v in sd.items() if k.startswith(("vision_model.", "qformer.", "query_tokens"))}
        if "query_tokens" not in kept:
            problems.append(f"{a.blip2}: not a Blip2 checkpoint (no query_tokens)")
        for k, v in kept.items():
            if k.endswith("self_attn.qkv.bias"):
                w = v.shape[0] // 3
                base = f"{PREFIX}qformer.{k[:-len('qkv.bias')]}"
                out[base + "q_bias"], out[base + "v_bias"] = v[:w].clone(), v[2 * w:].clone()
            else:
                out[f"{PREFIX}qformer.{k}"] = v
    elif a.clip or a.blip2:
        problems.append(f"llama_type {a.llama_type} is the two-expert MoV: --clip/--blip2 have no place")
    return out


def feature_width(vision, key):
    """Encoder output width, from the tiny `vision` config when given, else released."""
    if vision is None:
        return RELEASED[key]
    if key == "convnext":
        return vision["convnext"]["dims"][-1]
    if key == "dinov2":
        return vision["dinov2"]["embed_dim"]
    return vision["four"]["clip"]["width"] if key == "clip" else vision["four"]["qformer"]["width"]


def glue(dim, vision, four, skip, seed):
    """The trainable tensors SPHINX adds, initialised as the reference's modules are."""
    torch.manual_seed(seed)
    feat = feature_width(vision, "convnext") + feature_width(vision, "dinov2")
    out = {}
    if four:
        feat += feature_width(vision, "clip")
        qp = nn.Sequential(nn.Linear(feature_width(vision, "qformer"), dim), nn.LayerNorm(dim))
        out.update({f"{PREFIX}qformer_proj.{k}": v for k, v in qp.state_dict().items()})
    vp = nn.Sequential(nn.Linear(feat, dim), nn.LayerNorm(dim))
    out.update({f"{PREFIX}visual_proj.{k}": v for k, v in vp.state_dict().items()})
    out[PREFIX + "start_img"] = torch.rand(1, 1, dim)
    out[PREFIX + "end_img"] = torch.rand(1, 1, dim)
    if skip:
        out[PREFIX + "skip_token"] = torch.rand(1, 1, dim)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", type=Path, required=True)
    ap.add_argument("--convnext", type=Path, required=True)
    ap.add_argument("--dinov2", type=Path, required=True)
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--blip2", type=Path)
    ap.add_argument("--llama-type", choices=TWO + FOUR, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vision-config", type=Path, help="the engine's MovConfig JSON for non-released encoder sizes")
    ap.add_argument("--no-skip-token", action="store_true", help="build without SPHINX-X's skip token")
    ap.add_argument("--max-seq-len", type=int)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        problems = []
        try:
            llm_tensors, llm_cfg = convert_hf_llm.convert(a.llm, a.max_seq_len)
        except convert_hf_llm.ConversionError as exc:
            problems.append(str(exc))
            llm_tensors, llm_cfg = {}, None
        vision = None
        if a.vision_config:
            try:
                vision = json.loads(a.vision_config.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{a.vision_config}: cannot read: {exc}")
        encoders = encoder_parts(a, problems)
        if problems:
            raise AssemblyError("\n  ".join(["cannot assemble:"] + problems))
        weights = dict(llm_tensors)
        weights.update(encoders)
        weights.update(glue(llm_cfg["dim"], vision, a.llama_type in FOUR, not a.no_skip_token, a.seed))
        a.out.mkdir(parents=True, exist_ok=True)
        tmp = a.out / "model.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp),
                  metadata={"format": "pt", "assembled_from": str(a.llm.resolve())})
        os.replace(tmp, a.out / "model.safetensors")
        cfg = {"llama_type": a.llama_type, "llm": llm_cfg, "skip_tokens": not a.no_skip_token}
        if vision is not None:
            cfg["vision"] = vision
        (a.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        spm = a.llm / "tokenizer.model"
        if spm.exists():
            subprocess.run([sys.executable, str(Path(__file__).parent / "convert_tokenizer.py"), str(spm),
                            str(a.out / "tokenizer.json")], check=True)
        else:
            print(f"note: {spm} not found; add {a.out / 'tokenizer.json'} before training", file=sys.stderr)
    except AssemblyError as exc:
        sys.exit(f"assemble_model: {exc}")
    print(f"wrote {a.out} ({len(weights)} tensors: LLM {len(llm_tensors)}, encoders {len(encoders)})")


if __name__ == "__main__":
    main()
