#!/usr/bin/env python3
"""Reference fixtures for the CLIP ViT-L/14 expert (target/fixtures/clip/), made with
open_clip (nobody here wrote it): an open_clip `CLIP` with the `ViT-L-14` vision tower's
architecture at tiny sizes (width 128 = 2 heads of open_clip's head width 64, 2 layers,
patch 14, 56 px; nn.GELU as open_clip builds `ViT-L-14`), random O(1) weights, float32, CPU.

  model.safetensors      its `visual.*` tensors (open_clip's names)
  reference.safetensors  pixels [2, 3, 56, 56]; open_clip `visual(pixels)` with
                         output_tokens: `tokens` (ln_post'ed spatial tokens [2, 16, 128]) and
                         `pooled` (ln_post'ed cls @ proj [2, 32]); `all_tokens` [2, 17, 128]:
                         the reference's `clip_encode_image` (ln_post on every token), run
                         with open_clip's own modules

Usage: .venv/bin/python scripts/parity/clip.py [--out DIR]
"""
import argparse
from pathlib import Path

import torch
from open_clip.model import CLIP
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
VISION = dict(image_size=56, layers=2, width=128, patch_size=14)
TEXT = dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
EMBED_DIM = 32


def clip_encode_image(visual, x):
    """llama_ens5.py `clip_encode_image`: every token through ln_post, no projection."""
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    x = visual.transformer(x)  # open_clip 3.x runs its transformer batch-first
    return visual.ln_post(x)


def build_clip(seed):
    """The tiny open_clip `ViT-L-14`-architecture image tower with O(1) random weights."""
    torch.manual_seed(seed)
    visual = CLIP(EMBED_DIM, VISION, TEXT, quick_gelu=False).visual.eval()
    assert visual.transformer.batch_first
    with torch.no_grad():
        for name, p in visual.named_parameters():
            if name.endswith(("ln_pre.weight", "ln_post.weight", "ln_1.weight", "ln_2.weight")):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.normal_(0.0, 0.2)
            else:
                p.normal_(0.0, 1.0 / p[0].numel() ** 0.5)
    return visual


def clip_weights(visual, prefix="visual."):
    return {prefix + k: v.contiguous() for k, v in visual.state_dict().items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "target/fixtures/clip")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    visual = build_clip(51)
    pixels = torch.randn(2, 3, VISION["image_size"], VISION["image_size"], generator=torch.Generator().manual_seed(52))
    visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = visual(pixels)
        all_tokens = clip_encode_image(visual, pixels)
    assert torch.allclose(all_tokens[:, 1:], tokens, atol=1e-6)
    save_file(clip_weights(visual), str(out / "model.safetensors"))
    save_file({"pixels": pixels, "tokens": tokens.contiguous(), "pooled": pooled.contiguous(),
               "all_tokens": all_tokens.contiguous()}, str(out / "reference.safetensors"))
    print(f"clip fixtures -> {out}")


if __name__ == "__main__":
    main()
