#!/usr/bin/env python3
"""Baseline for scripts/bench-gpu.sh: Hugging Face transformers `generate` on a LLaMA of
the SPHINX-Tiny-1k LLM's size (TinyLlama-1.1B shape), random weights, bf16, SDPA, KV
cache, greedy, from input embeddings of the same sequence length our worker feeds its
LLM, generating the same number of tokens. Prints one JSON line per batch size.

Usage: bench_gpu_reference.py <seq_len> <new_tokens> <batch sizes...>
"""
import json
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    seq_len, new_tokens = int(sys.argv[1]), int(sys.argv[2])
    sizes = [int(b) for b in sys.argv[3:]]
    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0,
        max_position_embeddings=4096, attn_implementation="sdpa", torch_dtype=torch.bfloat16,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()

    def run(b):
        emb = torch.randn(b, seq_len, cfg.hidden_size, device="cuda", dtype=torch.bfloat16)
        mask = torch.ones(b, seq_len, device="cuda", dtype=torch.long)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=0, eos_token_id=None)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out.shape[1] * b

    run(2)  # warm-up
    for b in sizes:
        wall, generated = run(b)
        print(json.dumps({"batch": b, "seq_len": seq_len, "generated": generated, "llm_s": wall,
                          "tokens_per_s": generated / wall}), flush=True)


if __name__ == "__main__":
    main()
