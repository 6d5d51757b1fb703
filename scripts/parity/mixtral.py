#!/usr/bin/env python3
"""Reference fixtures for the Mixtral sparse-MoE LLM (target/fixtures/mixtral/), made with
Hugging Face `transformers` MixtralForCausalLM (nobody here wrote it): a tiny random model
(float32, CPU; 4 experts, top-2), its weights under the reference's names
(`accessory/model/LLM/mixtral_sparse.py`: `feed_forward.gate.weight` and the stacked
`feed_forward.w1/w2/w3` of `[num_experts * hidden_dim, dim]`, w2 transposed; `llma.`
prefix; wq/wk in Meta's interleaved RoPE layout), and:

  reference.safetensors   ids [2, T] and HF logits [2, T, vocab]; for layer 0's MoE block:
                          its input [2*T, dim], output and the router's top-2 indices
  llm.json                the engine's LlamaConfig (with `moe`)
  block.safetensors       layer 0's MoE weights alone (`feed_forward.*`)
  shards/                 the model (plus a replicated `llma.start_img`) split into 2
                          model-parallel shards as the reference saves them: fairscale's
                          Column/Row/Embedding splits for attention, embeddings and output,
                          and each stacked expert tensor split per expert by
                          `_sparse_expert_split` (view [experts, hidden, dim], chunk the hidden
                          units); a reference ModelArgs config.json (`moe`, `hidden_dim`,
                          `head_dim`) and meta.json; converted by scripts/convert_checkpoint.py
                          into converted/
  unsplit_with_extra.safetensors   what converted/model.safetensors must equal

Usage: .venv/bin/python scripts/parity/mixtral.py [--out DIR]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import MixtralConfig, MixtralForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama import PREFIX, hf_to_meta_rope, order_one, split_shards  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEQ_LEN = 13
SHARDS = 2
ARGS = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=320, norm_eps=1e-5,
            rope_theta=1e6, max_seq_len=128, experts=4, top_k=2, hidden=96)


def build_mixtral(seed, a=ARGS):
    """The tiny MixtralForCausalLM with O(1) random weights."""
    torch.manual_seed(seed)
    cfg = MixtralConfig(
        vocab_size=a["vocab_size"], hidden_size=a["dim"], intermediate_size=a["hidden"],
        num_hidden_layers=a["n_layers"], num_attention_heads=a["n_heads"],
        num_key_value_heads=a["n_kv_heads"], num_local_experts=a["experts"],
        num_experts_per_tok=a["top_k"], max_position_embeddings=a["max_seq_len"] * 2,
        rms_norm_eps=a["norm_eps"], rope_theta=a["rope_theta"], tie_word_embeddings=False,
        attn_implementation="eager",
    )
    # The router's logits O(1) too, so routing is not near-uniform.
    return order_one(MixtralForCausalLM(cfg).eval(), unit=("embed_tokens", "mlp.gate.weight"))


def reference_weights(model, a=ARGS):
    """HF Mixtral -> the reference's names (mixtral_sparse.py), Meta RoPE layout."""
    sd = model.state_dict()
    H, E = a["hidden"], a["experts"]
    weights = {f"{PREFIX}tok_embeddings.weight": sd["model.embed_tokens.weight"],
               f"{PREFIX}norm.weight": sd["model.norm.weight"],
               f"{PREFIX}output.weight": sd["lm_head.weight"]}
    for i in range(a["n_layers"]):
        h, r = f"model.layers.{i}.", f"{PREFIX}layers.{i}."
        weights[r + "attention.wq.weight"] = hf_to_meta_rope(sd[h + "self_attn.q_proj.weight"], a["n_heads"])
        weights[r + "attention.wk.weight"] = hf_to_meta_rope(sd[h + "self_attn.k_proj.weight"], a["n_kv_heads"])
        weights[r + "attention.wv.weight"] = sd[h + "self_attn.v_proj.weight"]
        weights[r + "attention.wo.weight"] = sd[h + "self_attn.o_proj.weight"]
        gate_up = sd[h + "mlp.experts.gate_up_proj"]  # [E, 2H, dim]: gate (w1) rows, then up (w3)
        down = sd[h + "mlp.experts.down_proj"]  # [E, dim, H]
        weights[r + "feed_forward.gate.weight"] = sd[h + "mlp.gate.weight"]
        weights[r + "feed_forward.w1"] = gate_up[:, :H].reshape(E * H, a["dim"])
        weights[r + "feed_forward.w3"] = gate_up[:, H:].reshape(E * H, a["dim"])
        weights[r + "feed_forward.w2"] = down.transpose(1, 2).reshape(E * H, a["dim"])
        weights[r + "attention_norm.weight"] = sd[h + "input_layernorm.weight"]
        weights[r + "ffn_norm.weight"] = sd[h + "post_attention_layernorm.weight"]
    return {k: v.contiguous().clone() for k, v in weights.items()}


def engine_config(a=ARGS):
    return dict(dim=a["dim"], n_layers=a["n_layers"], n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"],
                vocab_size=a["vocab_size"], norm_eps=a["norm_eps"], rope_theta=a["rope_theta"],
                max_seq_len=a["max_seq_len"],
                moe=dict(num_experts=a["experts"], experts_per_token=a["top_k"], hidden_dim=a["hidden"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "target/fixtures/mixtral")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    a = ARGS
    model = build_mixtral(31)
    g = torch.Generator().manual_seed(32)
    ids = torch.randint(0, a["vocab_size"], (2, SEQ_LEN), generator=g)
    seen = {}
    mlp = model.model.layers[0].mlp
    h1 = mlp.register_forward_hook(lambda m, i, o: seen.update(block_in=i[0], block_out=o))
    h2 = mlp.gate.register_forward_hook(lambda m, i, o: seen.update(indices=o[2]))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    h1.remove(), h2.remove()
    weights = reference_weights(model)
    save_file(weights, out / "model.safetensors")
    block = {k[len(f"{PREFIX}layers.0."):]: v for k, v in weights.items() if k.startswith(f"{PREFIX}layers.0.feed_forward.")}
    save_file(block, out / "block.safetensors")
    save_file({
        "ids": ids,
        "logits": logits.contiguous(),
        "block_input": seen["block_in"].reshape(-1, a["dim"]).contiguous(),
        "block_output": seen["block_out"].reshape(-1, a["dim"]).contiguous(),
        "block_indices": seen["indices"].contiguous(),
    }, out / "reference.safetensors")
    (out / "llm.json").write_text(json.dumps(engine_config(), indent=1) + "\n")
    write_shards(weights, out, a)
    print(f"mixtral fixtures -> {out}")


def write_shards(weights, out, a):
    E = a["experts"]
    sd = dict(weights)
    sd[PREFIX + "start_img"] = torch.rand(1, 1, a["dim"], generator=torch.Generator().manual_seed(7))
    save_file(sd, out / "unsplit_with_extra.safetensors")
    shards = split_shards(sd, SHARDS)  # experts come out replicated here; split them now
    for name, t in sd.items():
        if name.endswith(("feed_forward.w1", "feed_forward.w2", "feed_forward.w3")):
            parts = torch.chunk(t.view(E, -1, t.shape[-1]), SHARDS, dim=1)
            for r in range(SHARDS):
                shards[r][name] = parts[r].reshape(-1, t.shape[-1]).clone()
    d = out / "shards"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("consolidated.*.pth"):
        old.unlink()
    for r, shard in enumerate(shards):
        torch.save({"model": shard}, d / f"consolidated.{r:02d}-of-{SHARDS:02d}.model.pth")
    params = dict(dim=a["dim"], hidden_dim=a["hidden"], head_dim=a["dim"] // a["n_heads"], n_layers=a["n_layers"],
                  n_heads=a["n_heads"], n_kv_heads=a["n_kv_heads"], norm_eps=a["norm_eps"],
                  rope_theta=a["rope_theta"], max_seq_len=a["max_seq_len"], max_batch_size=32,
                  moe={"num_experts_per_tok": a["top_k"], "num_experts": E}, load_balancing_weight=0.1)
    (d / "config.json").write_text(json.dumps(params, indent=2))
    (d / "meta.json").write_text(json.dumps({"llama_type": "mixtral_sparse_ens5"}))
    subprocess.run([sys.executable, str(ROOT / "scripts/convert_checkpoint.py"), str(d),
                    "--out-dir", str(out / "converted")], check=True)


if __name__ == "__main__":
    main()
