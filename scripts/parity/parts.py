#!/usr/bin/env python3
"""Fixtures for assembling a model to fine-tune from parts (target/fixtures/parts/), in the
layouts the parts are released in, with real key names made by the real libraries:

  internlm2/hf/          a base InternLM2 (Hugging Face layout, packed wqkv; internlm2.py),
                         with internlm2/reference.safetensors: transformers' logits for it
  convnext_open_clip.safetensors
                         an open_clip CLIP whose vision tower is open_clip's TimmModel with
                         the tiny `convnext_xxlarge`-shaped timm trunk of vision.py: its whole
                         state dict (visual.trunk.*, visual.head.proj.*, the text tower)
  dinov2_vitg14_pretrain.pth
                         the tiny DINOv2 (vision.py) as the hub's state dict
  vision.json            the engine's MovConfig for those tiny encoders
  parts_reference.safetensors
                         the encoder tensors under the names the assembled model must give them
  assembled/             scripts/assemble_model.py's model folder from those parts
  clip_open_clip.safetensors, blip2.safetensors, vision_four.json, assembled_four/
                         the same for a four-expert model (mixtral_sparse_ens5 views): an
                         open_clip ViT (clip.py) and a transformers Blip2Model state dict as
                         transformers 5 saves it (packed qkv.bias, the OPT language model)

Usage: .venv/bin/python scripts/parity/parts.py [--out DIR]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from open_clip.model import CLIP
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clip  # noqa: E402
import qformer  # noqa: E402
import vision  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "target/fixtures/parts")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    subprocess.run([sys.executable, str(Path(__file__).parent / "internlm2.py"), "--out", str(out / "internlm2")],
                   check=True)
    gen = torch.Generator().manual_seed(81)
    trunk = vision.build_convnext(gen)
    dino = vision.build_dinov2(gen)
    # A real open_clip timm-tower CLIP, then the tiny XXL-shaped trunk in place of atto's.
    torch.manual_seed(82)  # the text tower and head.proj: deterministic fixture bytes
    model = CLIP(16, dict(timm_model_name="convnext_atto", timm_pool="", timm_proj="linear", image_size=128),
                 dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1))
    model.visual.trunk = trunk
    model.visual.head.proj = torch.nn.Linear(vision.CONVNEXT_TINY["dims"][-1], 16, bias=False)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.startswith("visual.trunk.stem.") for k in sd) and "visual.head.proj.weight" in sd
    save_file(sd, str(out / "convnext_open_clip.safetensors"))
    hub = {k[len(vision.DINO_PREFIX):]: v for k, v in vision.dinov2_hub_weights(dino).items()}
    torch.save(hub, out / "dinov2_vitg14_pretrain.pth")
    expected = {"llma." + k: v for k, v in vision.convnext_weights(trunk).items()}
    expected.update({"llma." + k: v for k, v in vision.dinov2_hub_weights(dino).items()})
    save_file(expected, str(out / "parts_reference.safetensors"))
    cfg = {"convnext": vision.CONVNEXT_TINY, "dinov2": vision.DINO_TINY, "convnext_size": 128,
           "dinov2_size": 56, "layout": {"global_and_grid": {"grid": 2}}}
    (out / "vision.json").write_text(json.dumps(cfg, indent=1) + "\n")
    subprocess.run([sys.executable, str(ROOT / "scripts/assemble_model.py"), "--llm", str(out / "internlm2/hf"),
                    "--convnext", str(out / "convnext_open_clip.safetensors"),
                    "--dinov2", str(out / "dinov2_vitg14_pretrain.pth"), "--llama-type", "llama_ens5_light",
                    "--vision-config", str(out / "vision.json"), "--max-seq-len", "512",
                    "--out", str(out / "assembled")], check=True)
    vit = clip.build_clip(82)
    save_file(clip.clip_weights(vit, "visual."), str(out / "clip_open_clip.safetensors"))
    blip = qformer.build_qformer(83)
    save_file({k: v.contiguous().clone() for k, v in blip.state_dict().items()}, str(out / "blip2.safetensors"))
    expected = {"llma." + k: v for k, v in vision.convnext_weights(trunk).items()}
    expected.update({"llma." + k: v for k, v in vision.dinov2_hub_weights(dino).items()})
    expected.update(clip.clip_weights(vit, "llma.clip.visual."))
    expected.update(qformer.qformer_weights(blip, "llma.qformer."))
    save_file({k: v.contiguous() for k, v in expected.items()}, str(out / "parts_four_reference.safetensors"))
    q = qformer.VISION
    qf = qformer.QFORMER
    four = dict(cfg, four={
        "clip": {"width": clip.VISION["width"], "layers": clip.VISION["layers"],
                 "patch_size": clip.VISION["patch_size"], "image_size": clip.VISION["image_size"],
                 "output_dim": clip.EMBED_DIM},
        "qformer": {"vision_width": q["hidden_size"], "vision_layers": q["num_hidden_layers"],
                    "vision_heads": q["num_attention_heads"], "vision_mlp": q["intermediate_size"],
                    "vision_eps": q["layer_norm_eps"], "patch_size": q["patch_size"],
                    "image_size": q["image_size"], "width": qf["hidden_size"], "layers": qf["num_hidden_layers"],
                    "heads": qf["num_attention_heads"], "mlp": qf["intermediate_size"], "eps": qf["layer_norm_eps"],
                    "cross_attention_frequency": qf["cross_attention_frequency"], "query_tokens": 32}})
    (out / "vision_four.json").write_text(json.dumps(four, indent=1) + "\n")
    subprocess.run([sys.executable, str(ROOT / "scripts/assemble_model.py"), "--llm", str(out / "internlm2/hf"),
                    "--convnext", str(out / "convnext_open_clip.safetensors"),
                    "--dinov2", str(out / "dinov2_vitg14_pretrain.pth"),
                    "--clip", str(out / "clip_open_clip.safetensors"), "--blip2", str(out / "blip2.safetensors"),
                    "--llama-type", "mixtral_sparse_ens5", "--no-skip-token",
                    "--vision-config", str(out / "vision_four.json"), "--max-seq-len", "512",
                    "--out", str(out / "assembled_four")], check=True)
    print(f"parts fixtures -> {out}")


if __name__ == "__main__":
    main()
