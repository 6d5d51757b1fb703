#!/usr/bin/env python3
"""Reference fixtures for InternLM2 as a SPHINX-X backbone (target/fixtures/internlm2/).

The peer is Hugging Face `transformers` LlamaForCausalLM (nobody here wrote it): InternLM2
is LLaMA's architecture (RMSNorm, rotate-half RoPE, GQA, SwiGLU, no biases) with other
names and one packed `wqkv` per layer, which is exactly what InternLM's own
tools/convert2llama.py relies on when it turns an InternLM2 checkpoint into a Llama one.
A tiny random Llama (float32, CPU; 4 query heads over 2 KV heads so the packing's groups
matter, an intermediate size no `multiple_of` rule gives, rope theta 1e6) is written in the
InternLM2 hub layout:

  hf/config.json                 InternLM2Config keys, architectures InternLM2ForCausalLM
  hf/model-0000N-of-00002.safetensors
                                 `model.tok_embeddings`, `model.layers.N.attention.wqkv`
                                 (per KV head: its query heads, its key, its value, as
                                 modeling_internlm2.py reads it; checked here by reading it
                                 back that way), `attention.wo`, `feed_forward.w1/w2/w3`,
                                 `attention_norm`, `ffn_norm`, `model.norm`, `output`
  converted/llm.safetensors, converted/llm.json
                                 scripts/convert_hf_llm.py's output (the engine's names)
  reference.safetensors          ids [2, T] and LlamaForCausalLM's logits [2, T, vocab]

Usage: .venv/bin/python scripts/parity/internlm2.py [--out DIR]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama import order_one  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEQ_LEN = 13
A = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=320, hidden=96,
         norm_eps=1e-5, rope_theta=1e6, max_seq_len=128)


def pack_wqkv(q, k, v, n_heads, n_kv, head_dim):
    """q/k/v_proj rows -> InternLM2's wqkv rows: for each KV head h, its query heads
    h*groups .. (h+1)*groups-1, then key h, then value h."""
    groups = n_heads // n_kv
    dim = q.shape[1]
    q = q.view(n_kv, groups, head_dim, dim)
    k = k.view(n_kv, 1, head_dim, dim)
    v = v.view(n_kv, 1, head_dim, dim)
    return torch.cat([q, k, v], dim=1).reshape(-1, dim)


def read_like_modeling_internlm2(qkv_states, n_heads, n_kv, head_dim):
    """modeling_internlm2.py's read of wqkv's output, op for op:
    rearrange 'b q (h gs d) -> b q h gs d' (gs = 2 + groups), queries [..., :groups, :]
    flattened '(h gs)', key [..., -2, :], value [..., -1, :]."""
    b, t, _ = qkv_states.shape
    groups = n_heads // n_kv
    x = qkv_states.view(b, t, n_kv, groups + 2, head_dim)
    return x[..., :groups, :].reshape(b, t, n_heads, head_dim), x[..., -2, :], x[..., -1, :]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "target/fixtures/internlm2")
    out = ap.parse_args().out
    (out / "hf").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(41)
    cfg = LlamaConfig(
        vocab_size=A["vocab_size"], hidden_size=A["dim"], intermediate_size=A["hidden"],
        num_hidden_layers=A["n_layers"], num_attention_heads=A["n_heads"],
        num_key_value_heads=A["n_kv_heads"], max_position_embeddings=A["max_seq_len"] * 2,
        rms_norm_eps=A["norm_eps"], rope_parameters={"rope_type": "default", "rope_theta": A["rope_theta"]},
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, attn_implementation="eager",
    )
    model = order_one(LlamaForCausalLM(cfg).eval())
    sd = model.state_dict()
    hd = A["dim"] // A["n_heads"]
    x = torch.randn(1, 3, A["dim"])
    intern = {"model.tok_embeddings.weight": sd["model.embed_tokens.weight"],
              "model.norm.weight": sd["model.norm.weight"], "output.weight": sd["lm_head.weight"]}
    for i in range(A["n_layers"]):
        h = f"model.layers.{i}."
        q, k, v = (sd[h + f"self_attn.{n}_proj.weight"] for n in "qkv")
        wqkv = pack_wqkv(q, k, v, A["n_heads"], A["n_kv_heads"], hd)
        rq, rk, rv = read_like_modeling_internlm2(x @ wqkv.T, A["n_heads"], A["n_kv_heads"], hd)
        for got, w, n in ((rq, q, A["n_heads"]), (rk, k, A["n_kv_heads"]), (rv, v, A["n_kv_heads"])):
            assert torch.equal(got, (x @ w.T).view(1, 3, n, hd)), "packing disagrees with the modeling code's read"
        intern[h + "attention.wqkv.weight"] = wqkv
        intern[h + "attention.wo.weight"] = sd[h + "self_attn.o_proj.weight"]
        intern[h + "feed_forward.w1.weight"] = sd[h + "mlp.gate_proj.weight"]
        intern[h + "feed_forward.w3.weight"] = sd[h + "mlp.up_proj.weight"]
        intern[h + "feed_forward.w2.weight"] = sd[h + "mlp.down_proj.weight"]
        intern[h + "attention_norm.weight"] = sd[h + "input_layernorm.weight"]
        intern[h + "ffn_norm.weight"] = sd[h + "post_attention_layernorm.weight"]
    intern = {k: v.contiguous().clone() for k, v in intern.items()}
    names = sorted(intern)
    for old in (out / "hf").glob("model*.safetensors"):
        old.unlink()
    half = len(names) // 2
    for n, part in enumerate((names[:half], names[half:]), start=1):
        save_file({k: intern[k] for k in part}, str(out / "hf" / f"model-{n:05d}-of-00002.safetensors"))
    hf_cfg = {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
              "hidden_size": A["dim"], "num_hidden_layers": A["n_layers"],
              "num_attention_heads": A["n_heads"], "num_key_value_heads": A["n_kv_heads"],
              "intermediate_size": A["hidden"], "vocab_size": A["vocab_size"], "rms_norm_eps": A["norm_eps"],
              "rope_theta": A["rope_theta"], "rope_scaling": None, "bias": False, "hidden_act": "silu",
              "max_position_embeddings": A["max_seq_len"] * 2, "tie_word_embeddings": False,
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    (out / "hf" / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")

    g = torch.Generator().manual_seed(42)
    ids = torch.randint(0, A["vocab_size"], (2, SEQ_LEN), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save_file({"ids": ids, "logits": logits.contiguous()}, str(out / "reference.safetensors"))
    subprocess.run([sys.executable, str(ROOT / "scripts/convert_hf_llm.py"), str(out / "hf"),
                    "--out", str(out / "converted/llm.safetensors"), "--max-seq-len", str(A["max_seq_len"])],
                   check=True)
    print(f"internlm2 fixtures -> {out}")


if __name__ == "__main__":
    main()
