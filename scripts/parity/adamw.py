#!/usr/bin/env python3
"""Reference fixture for the training optimizer (target/fixtures/adamw/adamw.json):
a few steps of `torch.optim.AdamW` (betas 0.9/0.95, eps 1e-8) with two parameter groups
(weight decay 0.1 / none, as the reference's `add_weight_decay` splits them), global-norm
clipping by `torch.nn.utils.clip_grad_norm_`, and the reference's warmup + cosine learning
rate (`accessory/util/lr_sched.py`), on seeded random parameters and gradients.

Usage: .venv/bin/python scripts/parity/adamw.py [--out DIR]
"""

import argparse
import json
import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "target" / "fixtures" / "adamw"

LR, MIN_LR, WARMUP, TOTAL, WD, CLIP = 1e-2, 1e-3, 2, 6, 0.1, 1.0


def lr_at(step):
    if step < WARMUP:
        return LR * step / WARMUP
    return MIN_LR + (LR - MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * (step - WARMUP) / (TOTAL - WARMUP)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    shapes = {"llma.layers.0.attention.wq.weight": [4, 3], "llma.visual_proj.0.bias": [3],
              "llma.tok_embeddings.weight": [5, 2], "llma.norm.weight": [4]}
    params = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    init = {n: p.clone() for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    decay = [params["llma.layers.0.attention.wq.weight"]]
    no_decay = [p for n, p in params.items() if n != "llma.layers.0.attention.wq.weight"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    steps = []
    for step in range(TOTAL):
        grads = {n: torch.randn(s, generator=g) * (3.0 if step == 1 else 0.3) for n, s in shapes.items()}
        for n, p in params.items():
            p.grad = grads[n].clone()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP).item()
        lr = lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        steps.append({"lr": lr, "grad_norm": norm,
                      "grads": {n: t.flatten().tolist() for n, t in grads.items()},
                      "after": {n: p.detach().flatten().tolist() for n, p in params.items()}})
    out = {"lr": LR, "min_lr": MIN_LR, "warmup": WARMUP, "total": TOTAL, "weight_decay": WD,
           "clip": CLIP, "shapes": shapes,
           "init": {n: t.flatten().tolist() for n, t in init.items()}, "steps": steps}
    (a.out / "adamw.json").write_text(json.dumps(out))
    print(f"wrote {a.out / 'adamw.json'}: {TOTAL} steps, torch {torch.__version__}")


if __name__ == "__main__":
    main()
