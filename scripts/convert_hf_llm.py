#!/usr/bin/env python3
"""Convert a base LLM in the Hugging Face safetensors layout into the engine's LLM under
the reference's names (`llma.tok_embeddings`, `llma.layers.N.attention.wq`, ...), the first
part of assembling a SPHINX-X to fine-tune from parts (scripts/assemble_model.py):

    SRC/config.json                        (HF: architectures, hidden_size, ...)
    SRC/model.safetensors or SRC/model-NNNNN-of-MMMMM.safetensors
 -> OUT.safetensors                        (llma.* tensors)
    OUT.json                               (the engine's LlamaConfig)

Architectures:
  LlamaForCausalLM     (TinyLlama, LLaMA2): q/k/v/o_proj, mlp.gate/up/down_proj.
  InternLM2ForCausalLM (internlm/internlm2-*, its own modeling_internlm2.py):
      `model.tok_embeddings`, `attention.wqkv`, `attention.wo`, `feed_forward.w1/w2/w3`,
      `attention_norm`, `ffn_norm`, `model.norm`, `output`. `wqkv` packs, per KV head, its
      query heads, then its key, then its value: the modeling code reads it with
      `rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=2 + num_key_value_groups)`, queries
      `[..., :groups, :]` flattened `(h gs)`, key `[..., -2, :]`, value `[..., -1, :]`.
      Unpacking it this way is what InternLM's own tools/convert2llama.py does.
  MixtralForCausalLM   (mistralai/Mixtral-8x7B hub layout): `block_sparse_moe.gate` and
      `block_sparse_moe.experts.E.w1/w2/w3`, stacked into the reference's
      `feed_forward.w1/w2/w3` of `[num_experts * hidden, dim]` (w2 transposed, as
      accessory/model/LLM/mixtral_sparse.py stores it) and `feed_forward.gate`.

Hugging Face rotates query/key halves (`rotate_half`); the engine follows Meta's
interleaved pairs, so every wq/wk is permuted back (the inverse of HF's
convert_llama_weights_to_hf permute). A linear `rope_scaling` {"factor": f} becomes the
reference's position multiplier 1/f; other scalings are refused.

Every problem (unknown architecture, missing or mis-shaped tensors, tensors left over) is
reported at once, naming the file and tensor.

Usage: convert_hf_llm.py SRC --out OUT.safetensors [--max-seq-len N]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "llma."  # SPHINX MetaModel attribute holding the LLM (accessory/model/meta.py)
ARCHITECTURES = ("LlamaForCausalLM", "InternLM2ForCausalLM", "MixtralForCausalLM")
# The engine's default context (engine/model/src/config.rs, LlamaConfig::tinyllama).
DEFAULT_MAX_SEQ_LEN = 4096


class ConversionError(Exception):
    pass


def hf_to_meta_rope(w, n_heads):
    """HF's rotate-half row order of wq/wk -> Meta's interleaved pairs."""
    out_dim, in_dim = w.shape
    return w.view(n_heads, 2, out_dim // n_heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def unpack_wqkv(wqkv, n_heads, n_kv_heads, head_dim):
    """InternLM2's packed `wqkv` -> (wq, wk, wv), HF row order (modeling_internlm2.py)."""
    groups = n_heads // n_kv_heads
    dim = wqkv.shape[1]
    w = wqkv.view(n_kv_heads, groups + 2, head_dim, dim)
    wq = w[:, :groups].reshape(n_heads * head_dim, dim)
    wk = w[:, -2].reshape(n_kv_heads * head_dim, dim)
    wv = w[:, -1].reshape(n_kv_heads * head_dim, dim)
    return wq, wk, wv


def read_weights(src: Path):
    files = sorted(src.glob("model-*-of-*.safetensors")) or sorted(src.glob("model.safetensors"))
    if not files:
        raise ConversionError(f"{src}: no model.safetensors or model-NNNNN-of-MMMMM.safetensors")
    tensors = {}
    for f in files:
        try:
            part = load_file(str(f))
        except Exception as exc:
            raise ConversionError(f"{f}: not a safetensors file: {exc}") from exc
        dup = sorted(set(part) & set(tensors))
        if dup:
            raise ConversionError(f"{f}: tensors also in an earlier file: {dup[:10]}")
        tensors.update(part)
    return tensors, files


def engine_config(hf, arch, max_seq_len, src):
    need = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size"]
    missing = [k for k in need if k not in hf]
    if missing:
        raise ConversionError(f"{src / 'config.json'}: missing {missing}")
    # transformers >= 5 writes rope settings into `rope_parameters`.
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or (params if params.get("rope_type", "default") != "default" else None)
    factor = None
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "linear":
            raise ConversionError(f"{src / 'config.json'}: rope_scaling {scaling} is not supported "
                                  "(only linear scaling has a reference equivalent)")
        factor = 1.0 / float(scaling["factor"])
    theta = hf.get("rope_theta", params.get("rope_theta", 10000.0))
    cfg = {
        "dim": hf["hidden_size"], "n_layers": hf["num_hidden_layers"], "n_heads": hf["num_attention_heads"],
        "n_kv_heads": hf.get("num_key_value_heads") or hf["num_attention_heads"],
        "vocab_size": hf["vocab_size"], "norm_eps": float(hf.get("rms_norm_eps", 1e-5)),
        "rope_theta": float(theta), "rope_scaling": factor,
        "max_seq_len": max_seq_len or DEFAULT_MAX_SEQ_LEN,
    }
    if arch == "MixtralForCausalLM":
        cfg["moe"] = {"num_experts": hf["num_local_experts"], "experts_per_token": hf["num_experts_per_tok"],
                      "hidden_dim": hf["intermediate_size"]}
    else:
        cfg["hidden_dim"] = hf["intermediate_size"]
    if hf.get("bias") or hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ConversionError(f"{src / 'config.json'}: linear biases are not part of these backbones")
    return cfg


def convert_tensors(sd, hf, arch, cfg):
    """HF names -> reference names; returns (tensors, problems). Consumes `sd`."""
    sd = dict(sd)
    out, problems = {}, []
    dim, heads, kv, layers = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"], cfg["n_layers"]
    hd = dim // heads

    def take(name, shape):
        t = sd.pop(name, None)
        if t is None:
            problems.append(f"missing {name}")
        elif tuple(t.shape) != tuple(shape):
            problems.append(f"{name}: shape {tuple(t.shape)}, config.json implies {tuple(shape)}")
            t = None
        return t

    def put(name, t):
        if t is not None:
            out[PREFIX + name] = t

    intern = arch == "InternLM2ForCausalLM"
    vocab = cfg["vocab_size"]
    put("tok_embeddings.weight", take("model.tok_embeddings.weight" if intern else "model.embed_tokens.weight",
                                      (vocab, dim)))
    put("norm.weight", take("model.norm.weight", (dim,)))
    head_name = "output.weight" if intern else "lm_head.weight"
    if head_name not in sd and hf.get("tie_word_embeddings") and PREFIX + "tok_embeddings.weight" in out:
        out[PREFIX + "output.weight"] = out[PREFIX + "tok_embeddings.weight"].clone()
    else:
        put("output.weight", take(head_name, (vocab, dim)))
    for i in range(layers):
        h, r = f"model.layers.{i}.", f"layers.{i}."
        if intern:
            wqkv = take(h + "attention.wqkv.weight", ((heads + 2 * kv) * hd, dim))
            if wqkv is not None:
                wq, wk, wv = unpack_wqkv(wqkv, heads, kv, hd)
                put(r + "attention.wq.weight", hf_to_meta_rope(wq, heads))
                put(r + "attention.wk.weight", hf_to_meta_rope(wk, kv))
                put(r + "attention.wv.weight", wv)
            put(r + "attention.wo.weight", take(h + "attention.wo.weight", (dim, heads * hd)))
            hid = cfg["hidden_dim"]
            for w, shape in (("w1", (hid, dim)), ("w2", (dim, hid)), ("w3", (hid, dim))):
                put(r + f"feed_forward.{w}.weight", take(h + f"feed_forward.{w}.weight", shape))
            put(r + "attention_norm.weight", take(h + "attention_norm.weight", (dim,)))
            put(r + "ffn_norm.weight", take(h + "ffn_norm.weight", (dim,)))
            continue
        a = h + "self_attn."
        wq = take(a + "q_proj.weight", (heads * hd, dim))
        wk = take(a + "k_proj.weight", (kv * hd, dim))
        put(r + "attention.wq.weight", None if wq is None else hf_to_meta_rope(wq, heads))
        put(r + "attention.wk.weight", None if wk is None else hf_to_meta_rope(wk, kv))
        put(r + "attention.wv.weight", take(a + "v_proj.weight", (kv * hd, dim)))
        put(r + "attention.wo.weight", take(a + "o_proj.weight", (dim, heads * hd)))
        if arch == "MixtralForCausalLM":
            moe = cfg["moe"]
            e_n, hid = moe["num_experts"], moe["hidden_dim"]
            m = h + "block_sparse_moe."
            put(r + "feed_forward.gate.weight", take(m + "gate.weight", (e_n, dim)))
            w1 = [take(m + f"experts.{e}.w1.weight", (hid, dim)) for e in range(e_n)]
            w2 = [take(m + f"experts.{e}.w2.weight", (dim, hid)) for e in range(e_n)]
            w3 = [take(m + f"experts.{e}.w3.weight", (hid, dim)) for e in range(e_n)]
            if all(t is not None for t in w1 + w2 + w3):
                put(r + "feed_forward.w1", torch.cat(w1, 0))
                put(r + "feed_forward.w2", torch.cat([t.t() for t in w2], 0))
                put(r + "feed_forward.w3", torch.cat(w3, 0))
        else:
            hid = cfg["hidden_dim"]
            m = h + "mlp."
            put(r + "feed_forward.w1.weight", take(m + "gate_proj.weight", (hid, dim)))
            put(r + "feed_forward.w2.weight", take(m + "down_proj.weight", (dim, hid)))
            put(r + "feed_forward.w3.weight", take(m + "up_proj.weight", (hid, dim)))
        put(r + "attention_norm.weight", take(h + "input_layernorm.weight", (dim,)))
        put(r + "ffn_norm.weight", take(h + "post_attention_layernorm.weight", (dim,)))
    # Buffers some exports carry (rotary inv_freq) are recomputed by the engine.
    left = sorted(k for k in sd if not k.endswith("rotary_emb.inv_freq"))
    if left:
        problems.append(f"tensors this {arch} does not have: {left[:10]}"
                        + (f" (+{len(left) - 10} more)" if len(left) > 10 else ""))
    return {k: v.contiguous() for k, v in out.items()}, problems


def convert(src: Path, max_seq_len=None):
    """SRC folder -> (llma.* tensors, engine LlamaConfig dict); raises ConversionError."""
    cfg_path = src / "config.json"
    try:
        hf = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{cfg_path}: cannot read: {exc}") from exc
    archs = hf.get("architectures") or []
    arch = next((a for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise ConversionError(f"{cfg_path}: architectures {archs} not supported (supported: {ARCHITECTURES})")
    cfg = engine_config(hf, arch, max_seq_len, src)
    sd, files = read_weights(src)
    tensors, problems = convert_tensors(sd, hf, arch, cfg)
    if problems:
        shown = ", ".join(f.name for f in files)
        raise ConversionError("\n  ".join([f"{arch} weights in {src} ({shown}) do not fit {cfg_path}:"] + problems))
    return tensors, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="OUT.safetensors (OUT.json is written beside it)")
    ap.add_argument("--max-seq-len", type=int)
    a = ap.parse_args()
    try:
        tensors, cfg = convert(a.src, a.max_seq_len)
    except ConversionError as exc:
        sys.exit(f"convert_hf_llm: {exc}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(a.out), metadata={"format": "pt", "source": str(a.src.resolve())})
    a.out.with_suffix(".json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"wrote {a.out} ({len(tensors)} tensors) and {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
