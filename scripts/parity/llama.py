#!/usr/bin/env python3
"""Reference fixtures for the LLaMA backbone, weight loading and checkpoint conversion
(target/fixtures/llama/), made with Hugging Face `transformers` (nobody here wrote it).

For each tiny random model (float32, CPU):
  <name>/model.safetensors   weights under the reference's names (`llma.` prefix as in
                             SPHINX's MetaModel), wq/wk permuted from HF's rotate-half
                             layout to Meta's interleaved-pair RoPE layout
  <name>/llm.json            the engine's LlamaConfig for it
  <name>/reference.safetensors
                             ids [2, T] and HF logits [2, T, vocab]; the same with keys
                             3 and 9 of row 1 masked (key_mask, masked_logits); a greedy prompt and
                             the 32 tokens HF `generate` (greedy, KV cache) produced,
                             and each one's log-probability from its raw logits
Models: `gqa` (4 query / 2 KV heads, multiple_of 48, ffn_dim_multiplier 1.3) and
`mha_scaled` (no GQA, rope_theta 5e5, linear RoPE scaling: HF factor 2 = reference
rope_scaling 0.5 because the reference multiplies positions while HF divides them).

Also for `gqa`: model.bf16.safetensors / model.f16.safetensors (dtype loading), and
shards/: the model split into 2 model-parallel shards the way fairscale does
(ColumnParallel wq/wk/wv/w1/w3/output on dim 0, RowParallel wo/w2 on dim 1,
ParallelEmbedding tok_embeddings on dim 1, the rest replicated) with a reference
config.json + meta.json, then converted by scripts/convert_checkpoint.py into converted/.

Usage: .venv/bin/python scripts/parity/llama.py [--out DIR]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "target" / "fixtures" / "llama"
PREFIX = "llma."  # SPHINX MetaModel attribute holding the LLM (accessory/model/meta.py)
SEQ_LEN = 17
GREEDY_PROMPT = 8
GREEDY_STEPS = 32
SHARDS = 2
MASKED_KEYS = (3, 9)


def ffn_hidden_dim(dim, multiple_of, ffn_dim_multiplier):
    """The reference FeedForward sizing (llama_ens_light.py), for the HF intermediate_size."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


MODELS = {
    "gqa": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=320, multiple_of=48,
                ffn_dim_multiplier=1.3, norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
                max_seq_len=128, hf_rope={"rope_type": "default"}),
    "mha_scaled": dict(dim=96, n_layers=2, n_heads=3, n_kv_heads=None, vocab_size=256,
                       multiple_of=32, ffn_dim_multiplier=None, norm_eps=1e-6, rope_theta=500000.0,
                       rope_scaling=0.5, max_seq_len=64, hf_rope={"rope_type": "linear", "factor": 2.0}),
}


def hf_model(args, seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=args["vocab_size"], hidden_size=args["dim"],
        intermediate_size=ffn_hidden_dim(args["dim"], args["multiple_of"], args["ffn_dim_multiplier"]),
        num_hidden_layers=args["n_layers"], num_attention_heads=args["n_heads"],
        num_key_value_heads=args["n_kv_heads"] or args["n_heads"],
        max_position_embeddings=args["max_seq_len"] * 2, rms_norm_eps=args["norm_eps"],
        rope_parameters={**args["hf_rope"], "rope_theta": args["rope_theta"]},
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        attn_implementation="eager",
    )
    return order_one(LlamaForCausalLM(cfg).eval())


def order_one(model, unit=("embed_tokens",)):
    """Redraws an HF causal LM's weights for O(1) activations: HF's init (std 0.02)
    makes near-zero logits (and near-uniform MoE routing), under which a wrong layout or
    norm could hide within the tolerance. Norm gains ~1 +- 0.2, parameters whose name
    contains one of `unit` N(0, 1), the rest N(0, 1 / fan_in) (fan_in: the last dim)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif any(u in name for u in unit):
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5)
    return model


def hf_to_meta_rope(w, n_heads):
    """Undo HF's permute of wq/wk: rotate-half halves -> Meta's interleaved pairs."""
    out_dim, in_dim = w.shape
    return w.view(n_heads, 2, out_dim // n_heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def reference_state_dict(model, args):
    sd = model.state_dict()
    n_kv = args["n_kv_heads"] or args["n_heads"]
    out = {f"{PREFIX}tok_embeddings.weight": sd["model.embed_tokens.weight"],
           f"{PREFIX}norm.weight": sd["model.norm.weight"],
           f"{PREFIX}output.weight": sd["lm_head.weight"]}
    for i in range(args["n_layers"]):
        h, r = f"model.layers.{i}.", f"{PREFIX}layers.{i}."
        out[r + "attention.wq.weight"] = hf_to_meta_rope(sd[h + "self_attn.q_proj.weight"], args["n_heads"])
        out[r + "attention.wk.weight"] = hf_to_meta_rope(sd[h + "self_attn.k_proj.weight"], n_kv)
        out[r + "attention.wv.weight"] = sd[h + "self_attn.v_proj.weight"]
        out[r + "attention.wo.weight"] = sd[h + "self_attn.o_proj.weight"]
        out[r + "feed_forward.w1.weight"] = sd[h + "mlp.gate_proj.weight"]
        out[r + "feed_forward.w2.weight"] = sd[h + "mlp.down_proj.weight"]
        out[r + "feed_forward.w3.weight"] = sd[h + "mlp.up_proj.weight"]
        out[r + "attention_norm.weight"] = sd[h + "input_layernorm.weight"]
        out[r + "ffn_norm.weight"] = sd[h + "post_attention_layernorm.weight"]
    assert len(out) == len(sd), "every HF parameter must map to one reference name"
    return {k: v.contiguous().clone() for k, v in out.items()}


def engine_config(args):
    keys = ["dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of",
            "ffn_dim_multiplier", "norm_eps", "rope_theta", "rope_scaling", "max_seq_len"]
    return {k: args[k] for k in keys}


def reference_outputs(model, args, seed):
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, args["vocab_size"], (2, SEQ_LEN), generator=g)
    prompt = torch.randint(0, args["vocab_size"], (1, GREEDY_PROMPT), generator=g)
    # Key padding in the middle of row 1 (HF forward keeps positions 0..T-1).
    mask = torch.ones_like(ids)
    mask[1, list(MASKED_KEYS)] = 0
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        masked_logits = model(input_ids=ids, attention_mask=mask).logits
        gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=GREEDY_STEPS, min_new_tokens=GREEDY_STEPS,
                             eos_token_id=None, pad_token_id=0, use_cache=True,
                             return_dict_in_generate=True, output_logits=True)
    tokens = gen.sequences[:, GREEDY_PROMPT:]
    assert tokens.shape == (1, GREEDY_STEPS), tokens.shape
    # Each chosen token's log-probability under the model: log-softmax of generate's raw
    # logits at that step (before any logits processor), gathered at the token.
    step_logits = torch.stack(gen.logits, dim=1).float()
    logprobs = torch.log_softmax(step_logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return {"ids": ids, "logits": logits.float().contiguous(), "key_mask": mask,
            "masked_logits": masked_logits.float().contiguous(), "greedy_prompt": prompt,
            "greedy_tokens": tokens.contiguous(), "greedy_logprobs": logprobs.contiguous()}


def split_shards(sd, world):
    """fairscale model parallel: what rank r of `world` holds for each parameter."""
    def rule(name):
        rel = name[len(PREFIX):]
        if rel in ("output.weight",) or rel.endswith(("attention.wq.weight", "attention.wk.weight",
                                                      "attention.wv.weight", "feed_forward.w1.weight",
                                                      "feed_forward.w3.weight")):
            return 0  # ColumnParallelLinear: output features split
        if rel.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
            return 1  # RowParallelLinear: input features split
        if rel == "tok_embeddings.weight":
            return 1  # ParallelEmbedding: embedding dim split
        return None  # replicated

    shards = [{} for _ in range(world)]
    for name, t in sd.items():
        dim = rule(name)
        parts = [t] * world if dim is None else torch.chunk(t, world, dim=dim)
        for r in range(world):
            shards[r][name] = parts[r].clone()
    return shards


def write_shards(sd, args, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("consolidated.*.pth"):
        old.unlink()
    for r, shard in enumerate(split_shards(sd, SHARDS)):
        # Accessory saves {"model": state_dict}; keep that wrapper.
        torch.save({"model": shard}, out_dir / f"consolidated.{r:02d}-of-{SHARDS:02d}.model.pth")
    params = {k: args[k] for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of",
                                   "ffn_dim_multiplier", "norm_eps", "rope_theta")}
    params["max_batch_size"] = 32  # reference ModelArgs keys the converter must ignore
    (out_dir / "config.json").write_text(json.dumps(params, indent=2))
    (out_dir / "meta.json").write_text(json.dumps({"llama_type": "llama_ens5_light"}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    for seed, (name, args) in enumerate(MODELS.items()):
        d = a.out / name
        d.mkdir(parents=True, exist_ok=True)
        model = hf_model(args, seed)
        sd = reference_state_dict(model, args)
        save_file(sd, str(d / "model.safetensors"))
        (d / "llm.json").write_text(json.dumps(engine_config(args), indent=2))
        save_file(reference_outputs(model, args, seed), str(d / "reference.safetensors"))
        if name == "gqa":
            save_file({k: v.bfloat16() for k, v in sd.items()}, str(d / "model.bf16.safetensors"))
            save_file({k: v.half() for k, v in sd.items()}, str(d / "model.f16.safetensors"))
            # A replicated non-LLM parameter (as SPHINX's start_img) rides along in the shards.
            shard_sd = dict(sd)
            shard_sd[PREFIX + "start_img"] = torch.rand(1, 1, args["dim"], generator=torch.Generator().manual_seed(7))
            save_file(shard_sd, str(d / "unsplit_with_extra.safetensors"))
            write_shards(shard_sd, args, d / "shards")
            subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_checkpoint.py"),
                            str(d / "shards"), "--out-dir", str(d / "converted")], check=True)
        print(f"wrote {d}")


if __name__ == "__main__":
    main()
