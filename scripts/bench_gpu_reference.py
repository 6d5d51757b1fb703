#!/usr/bin/env python3
"""Baselines for scripts/bench-gpu.sh: Hugging Face transformers `generate` on a LLaMA of
the SPHINX-Tiny-1k LLM's size (TinyLlama-1.1B shape), random weights, bf16, SDPA, greedy,
from input embeddings of the same sequence length our worker feeds its LLM, generating
the same number of tokens. Two peers, each one JSON line per batch size:

- `eager`: the dynamic KV cache, eager PyTorch (what most pipelines run);
- `static-compile`: transformers' static KV cache and `torch.compile` of the forward
  (`mode="reduce-overhead"`: CUDA graphs), the strongest PyTorch peer available there.
  Compilation happens in a warm-up per batch size and is not timed.

And the encoders: timm's `convnext_xxlarge` (open_clip's ConvNeXt-XXL trunk is timm's)
at 512 px, channels-last, and transformers `Dinov2Model` at DINOv2-g/14's size at 224 px,
SDPA, both bf16 eager with random weights, over 5 views per page in chunks of 64 views
(what our worker encodes at once): peer `encoders`, ms per page for both encoders.

Usage: bench_gpu_reference.py <seq_len> <new_tokens> <batch sizes...>
Environment: PEERS (default "eager static-compile encoders"), DEVICE (default cuda).
"""
import json
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    seq_len, new_tokens = int(sys.argv[1]), int(sys.argv[2])
    sizes = [int(b) for b in sys.argv[3:]]
    device = os.environ.get("DEVICE", "cuda")
    peers = os.environ.get("PEERS", "eager static-compile encoders").split()
    if "encoders" in peers:
        encoders(sizes, device)
        peers.remove("encoders")
    if not peers:
        return
    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0,
        max_position_embeddings=4096, attn_implementation="sdpa", torch_dtype=torch.bfloat16,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    eager_forward = model.forward

    def run(b, peer):
        emb = torch.randn(b, seq_len, cfg.hidden_size, device=device, dtype=torch.bfloat16)
        mask = torch.ones(b, seq_len, device=device, dtype=torch.long)
        extra = {"cache_implementation": "static"} if peer == "static-compile" else {}
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=0, eos_token_id=None, **extra)
        sync(device)
        return time.perf_counter() - t0, out.shape[1] * b

    for peer in peers:
        if peer == "static-compile":
            model.forward = torch.compile(eager_forward, mode="reduce-overhead", fullgraph=True)
        else:
            model.forward = eager_forward
        for b in sizes:
            run(b, peer)  # warm-up (and, for static-compile, compilation for this shape)
            wall, generated = run(b, peer)
            print(json.dumps({"peer": peer, "batch": b, "seq_len": seq_len, "generated": generated,
                              "llm_s": wall, "tokens_per_s": generated / wall,
                              "ms_per_page": 1000 * wall / b}), flush=True)


VIEWS_PER_PAGE = 5
CHUNK = 64


def encoders(sizes, device, convnext_px=512, dinov2_px=224, convnext="convnext_xxlarge",
             dinov2=None):
    """ms per page of ConvNeXt-XXL + DINOv2-g over 5 views per page (see the module doc)."""
    import timm
    from transformers import Dinov2Config, Dinov2Model

    dinov2 = dinov2 or dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24,
                            mlp_ratio=4, use_swiglu_ffn=True, patch_size=14, image_size=518)
    torch.manual_seed(0)
    with torch.device(device):
        cnx = timm.create_model(convnext, pretrained=False, num_classes=0)
        cnx = cnx.to(torch.bfloat16).eval().to(memory_format=torch.channels_last)
        dino = Dinov2Model(Dinov2Config(attn_implementation="sdpa", **dinov2))
        dino = dino.to(torch.bfloat16).eval()

    def run(b):
        views = VIEWS_PER_PAGE * b
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            for start in range(0, views, CHUNK):
                n = min(CHUNK, views - start)
                x = torch.randn(n, 3, convnext_px, convnext_px, device=device, dtype=torch.bfloat16)
                cnx.forward_features(x.contiguous(memory_format=torch.channels_last))
                y = torch.randn(n, 3, dinov2_px, dinov2_px, device=device, dtype=torch.bfloat16)
                dino(pixel_values=y)
        sync(device)
        return time.perf_counter() - t0

    for b in sizes:
        run(b)  # warm-up: cuDNN autotuning, allocator growth
        wall = run(b)
        print(json.dumps({"peer": "encoders", "batch": b, "views": VIEWS_PER_PAGE * b,
                          "encode_s": wall, "ms_per_page": 1000 * wall / b}), flush=True)


if __name__ == "__main__":
    main()
