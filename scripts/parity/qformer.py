#!/usr/bin/env python3
"""Reference fixtures for the BLIP-2 Q-Former expert (target/fixtures/qformer/), made with
Hugging Face `transformers` Blip2Model (nobody here wrote it): blip2-opt-2.7b's structure at
tiny sizes (ViT 64 wide, 2 layers; Q-Former 48 wide, 3 layers with cross-attention every 2nd
layer; 32 query tokens; a one-layer OPT the reference drops), random O(1) weights, float32.

  model.safetensors      the `vision_model.*`, `query_tokens` and `qformer.*` tensors, with
                         the ViT's qkv bias stored as released BLIP-2 checkpoints store it:
                         `self_attn.q_bias` and `self_attn.v_bias` (the key has no bias;
                         transformers 5 packs them into `qkv.bias` with a zero middle third)
  reference.safetensors  pixels [2, 3, 56, 56]; `image` (Blip2VisionModel last_hidden_state,
                         [2, 17, 64]) and `queries` (get_qformer_features, [2, 32, 48])

Usage: .venv/bin/python scripts/parity/qformer.py [--out DIR]
"""
import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Blip2Config, Blip2Model

ROOT = Path(__file__).resolve().parents[2]
VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
              image_size=56, patch_size=14, layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu")
QFORMER = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
               layer_norm_eps=1e-12, cross_attention_frequency=2, encoder_hidden_size=64, hidden_act="gelu")
TEXT = dict(model_type="opt", vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
            num_attention_heads=2, word_embed_proj_dim=16)


def build_qformer(seed):
    """The tiny Blip2Model with O(1) random weights and no key bias."""
    torch.manual_seed(seed)
    cfg = Blip2Config(vision_config=VISION, qformer_config=QFORMER, text_config=TEXT, num_query_tokens=32)
    cfg._attn_implementation = "eager"
    model = Blip2Model(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("language"):
                continue
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.normal_(0.0, 0.2)
            elif name.endswith(("query_tokens", "class_embedding", "position_embedding")):
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, 1.0 / p[0].numel() ** 0.5)
        w = VISION["hidden_size"]
        for layer in model.vision_model.encoder.layers:
            layer.self_attn.qkv.bias[w:2 * w] = 0.0  # BLIP-2 has no key bias
    return model


def qformer_features(model, pixels):
    out = model.get_qformer_features(pixel_values=pixels)
    return getattr(out, "last_hidden_state", out)


def qformer_weights(model, prefix=""):
    """Blip2Model's tensors without its language model, q/v biases as released."""
    w = VISION["hidden_size"]
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("language"):
            continue
        if k.endswith("self_attn.qkv.bias"):
            base = prefix + k[: -len("qkv.bias")]
            sd[base + "q_bias"], sd[base + "v_bias"] = v[:w].clone(), v[2 * w:].clone()
            continue
        sd[prefix + k] = v.contiguous()
    return sd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "target/fixtures/qformer")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    model = build_qformer(61)
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(62))
    with torch.no_grad():
        image = model.vision_model(pixel_values=pixels).last_hidden_state
        queries = qformer_features(model, pixels)
    save_file(qformer_weights(model), str(out / "model.safetensors"))
    save_file({"pixels": pixels, "image": image.contiguous(), "queries": queries.contiguous()},
              str(out / "reference.safetensors"))
    print(f"qformer fixtures -> {out}")


if __name__ == "__main__":
    main()
