#!/usr/bin/env python3
"""Convert an official LLaMA2-Accessory / SPHINX checkpoint directory into the one file
pair the engine loads:

    SRC/consolidated.NN-of-MM.model.pth   (MM model-parallel shards, merged here)
    SRC/config.json                       (reference ModelArgs: dim, n_layers, ...)
    SRC/meta.json                         (optional: {"llama_type": ...})
 -> OUT/model.safetensors                 (every parameter, names unchanged)
    OUT/config.json                       (the engine's SphinxConfig: llama_type, llm,
                                           skip_tokens)

Shards may hold {"model": state_dict} (what util/misc.py save_checkpoint writes) or a bare
state dict, in float32, bfloat16 or float16; names keep their `llma.` prefix.

`skip_tokens` records whether the weights carry SPHINX-X's `llma.skip_token`. The released
SPHINX-Tiny / SPHINX-Tiny-1k have none (their public code encodes every sub-image), so they
convert to `skip_tokens: false` and the engine encodes every cell as the reference does; a
model trained with skip tokens converts to `true`. The engine checks the claim against the
weights when it loads. A `vision` block in the source config.json (encoder sizes of models
that are not the released ones) is carried over unchanged.

Shards are merged the way fairscale split them (accessory/model/LLM/llama*.py):
ColumnParallelLinear (attention.wq/wk/wv, feed_forward.w1/w3, output) on dim 0,
RowParallelLinear (attention.wo, feed_forward.w2) on dim 1, ParallelEmbedding
(tok_embeddings) on dim 1; everything else is replicated and must be identical in
every shard. A sparse-MoE LLM (mixtral_sparse*.py; its config.json has `moe` and
`hidden_dim`) stores each layer's experts stacked as plain parameters `feed_forward.w1/w2/w3`
of `[num_experts * hidden_dim / shards, dim]`: every shard holds the same slice of every
expert's hidden units, so shards are merged as the reference's `_sparse_expert_merge` does
(view each as `[num_experts, -1, dim]`, concatenate on dim 1); the router
`feed_forward.gate.weight` is replicated. Every problem found (missing shards, differing key sets, replicas that
differ, unknown tensors of differing shapes, shapes that contradict config.json) is
reported together, naming the file and tensor.

Usage: convert_checkpoint.py SRC --out-dir OUT [--dtype keep|float32|bfloat16|float16]
       [--llama-type llama_ens_light|llama_ens5_light|llama_ens5|mixtral_sparse_ens5] [--max-seq-len N]
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

SHARD_RE = re.compile(r"^consolidated\.(\d+)-of-(\d+)\.model\.pth$")
LLAMA_TYPES = ("llama_ens_light", "llama_ens5_light", "llama_ens5", "mixtral_sparse_ens5")
# The engine's default context when config.json has none: room for 5 views x 259 image
# tokens plus a long answer (engine/model/src/config.rs, LlamaConfig::tinyllama).
DEFAULT_MAX_SEQ_LEN = 4096
# ModelArgs fields the engine reads; other reference keys (max_batch_size, trainable_mode,
# load_pretrained_visual_encoder, ...) only matter to the reference's training code.
# (`vision` is not a ModelArgs key: it is carried over to the engine config as a block.)
ENGINE_KEYS = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of",
               "ffn_dim_multiplier", "norm_eps", "rope_theta", "rope_scaling", "max_seq_len")
# Reference ModelArgs defaults (llama_ens_light.py) for keys a config.json may omit.
DEFAULTS = {"n_kv_heads": None, "multiple_of": 256, "ffn_dim_multiplier": None,
            "norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

COLUMN = re.compile(r"^(output|layers\.\d+\.(attention\.w[qkv]|feed_forward\.w[13]))\.weight$")
ROW = re.compile(r"^layers\.\d+\.(attention\.wo|feed_forward\.w2)\.weight$")
EMBED = re.compile(r"^tok_embeddings\.weight$")
# Mixtral's stacked experts (plain parameters, so no `.weight`).
EXPERTS = re.compile(r"^layers\.\d+\.feed_forward\.w[123]$")


class ConversionError(Exception):
    pass


def find_shards(src: Path):
    found = {}
    worlds = set()
    for p in sorted(src.iterdir()):
        m = SHARD_RE.match(p.name)
        if m:
            found[int(m.group(1))] = p
            worlds.add(int(m.group(2)))
    if not found:
        raise ConversionError(f"{src}: no consolidated.NN-of-MM.model.pth shards")
    if len(worlds) != 1:
        raise ConversionError(f"{src}: shards of different world sizes {sorted(worlds)}")
    world = worlds.pop()
    missing = [f"consolidated.{r:02d}-of-{world:02d}.model.pth" for r in range(world) if r not in found]
    extra = [found[r].name for r in found if r >= world]
    if missing or extra:
        raise ConversionError(f"{src}: incomplete shard set: missing {missing}, out of range {extra}")
    return [found[r] for r in range(world)]


FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def load_shard(path: Path):
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise ConversionError(f"{path}: cannot load as a PyTorch checkpoint: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # Accessory saves {"model": state_dict, ...}
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: expected a non-empty state dict of tensors (or {{'model': ...}})")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ConversionError(f"{path}: entries that are not tensors: {not_tensors[:10]}")
    bad = [f"{k} ({v.dtype})" for k, v in obj.items() if v.dtype not in FLOAT_DTYPES]
    if bad:
        raise ConversionError(f"{path}: tensors of unsupported dtype (expected float32, bfloat16 or "
                              f"float16): {', '.join(bad[:10])}")
    return obj


def llm_prefix(names):
    hits = [n[: -len("tok_embeddings.weight")] for n in names if n.endswith("tok_embeddings.weight")]
    if len(hits) != 1:
        raise ConversionError(f"expected exactly one '*tok_embeddings.weight', found {hits}")
    return hits[0]


def merge_experts(parts, num_experts):
    """The reference's `_sparse_expert_merge`: each shard holds rows `[E * h, dim]`, the
    same h hidden units of every expert; concatenate per expert."""
    return torch.cat([t.reshape(num_experts, -1, t.shape[-1]) for t in parts], dim=1).reshape(-1, parts[0].shape[-1])


def merge(shards, paths, num_experts=None):
    problems = []
    world = len(shards)
    keys0 = set(shards[0])
    for p, sd in zip(paths[1:], shards[1:]):
        if set(sd) != keys0:
            only0 = sorted(keys0 - set(sd))[:10]
            only_r = sorted(set(sd) - keys0)[:10]
            problems.append(f"{p.name} has different tensors than {paths[0].name}: "
                            f"missing {only0}, extra {only_r}")
    if problems:
        raise ConversionError("\n  ".join(["shards disagree:"] + problems))
    prefix = llm_prefix(keys0)
    merged = {}
    for name in sorted(keys0):
        parts = [sd[name] for sd in shards]
        rel = name[len(prefix):] if name.startswith(prefix) else None
        dim = None
        if rel is not None:
            if COLUMN.match(rel):
                dim = 0
            elif ROW.match(rel) or EMBED.match(rel):
                dim = 1
        if world == 1:
            merged[name] = parts[0]
        elif rel is not None and EXPERTS.match(rel):
            bad = [f"{paths[r].name} {tuple(t.shape)}" for r, t in enumerate(parts)
                   if num_experts is None or t.dim() != 2 or t.shape[0] % num_experts != 0]
            if bad or len({tuple(t.shape) for t in parts}) != 1:
                why = ("config.json has no `moe`" if num_experts is None else
                       f"rows must split into moe.num_experts={num_experts} equal experts in every shard")
                problems.append(f"{name}: stacked experts of shapes {[tuple(t.shape) for t in parts]} cannot "
                                f"be merged ({why})")
                continue
            merged[name] = merge_experts(parts, num_experts)
        elif dim is not None:
            shapes = {tuple(t.shape[:dim]) + tuple(t.shape[dim + 1:]) for t in parts}
            if len(shapes) != 1:
                problems.append(f"{name}: shard shapes {[tuple(t.shape) for t in parts]} cannot be "
                                f"concatenated on dim {dim}")
                continue
            merged[name] = torch.cat(parts, dim=dim)
        else:
            if len({tuple(t.shape) for t in parts}) != 1:
                problems.append(f"{name}: not a known model-parallel tensor, but its shape differs "
                                f"across shards: {[tuple(t.shape) for t in parts]}")
                continue
            differ = [paths[r].name for r in range(1, world) if not torch.equal(parts[0], parts[r])]
            if differ:
                problems.append(f"{name}: replicated tensor differs between {paths[0].name} and {differ}")
                continue
            merged[name] = parts[0]
    if problems:
        raise ConversionError("\n  ".join(["cannot merge shards:"] + problems))
    return merged, prefix


def ffn_hidden_dim(dim, multiple_of, ffn_dim_multiplier):
    """Reference FeedForward sizing, to check w1's shape against config.json."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def moe_config(src_cfg, src):
    """The engine's MoeConfig from mixtral_sparse ModelArgs (`moe` dict + `hidden_dim`)."""
    moe = src_cfg.get("moe")
    if moe is None:
        return None
    try:
        return {"num_experts": int(moe["num_experts"]), "experts_per_token": int(moe["num_experts_per_tok"]),
                "hidden_dim": int(src_cfg["hidden_dim"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise ConversionError(f"{src / 'config.json'}: `moe` needs num_experts and num_experts_per_tok, and "
                              f"`hidden_dim` the expert width ({exc!r})") from exc


def engine_llm_config(src_cfg, merged, prefix, max_seq_len, src):
    moe = moe_config(src_cfg, src)
    # Mixtral's ModelArgs also carries head_dim, which its attention recomputes as dim // n_heads.
    moe_keys = ("moe", "hidden_dim", "head_dim") if moe else ()
    ignored = sorted(k for k in src_cfg if k not in ENGINE_KEYS and k != "vision" and k not in moe_keys)
    if ignored:
        print(f"note: config.json keys not used by the engine: {ignored}", file=sys.stderr)
    missing = [k for k in ("dim", "n_layers", "n_heads") if k not in src_cfg]
    if missing:
        raise ConversionError(f"{src / 'config.json'}: missing required keys {missing}")
    cfg = {**DEFAULTS, **{k: v for k, v in src_cfg.items() if k in ENGINE_KEYS}}
    emb = merged[prefix + "tok_embeddings.weight"]
    if cfg.get("vocab_size", -1) in (None, -1) or cfg.get("vocab_size", 0) <= 0:
        cfg["vocab_size"] = int(emb.shape[0])  # reference: "defined later by tokenizer"
    if max_seq_len is not None:
        cfg["max_seq_len"] = max_seq_len
    cfg.setdefault("max_seq_len", DEFAULT_MAX_SEQ_LEN)
    for k in ("norm_eps", "rope_theta"):
        cfg[k] = float(cfg[k])

    dim, heads = cfg["dim"], cfg["n_heads"]
    kv = cfg["n_kv_heads"] or heads
    hd = dim // heads
    if moe and src_cfg.get("head_dim", hd) != hd:
        raise ConversionError(f"{src / 'config.json'}: head_dim {src_cfg['head_dim']} is not dim // n_heads = {hd}, "
                              "which the reference's attention uses")
    hidden = ffn_hidden_dim(dim, cfg["multiple_of"], cfg["ffn_dim_multiplier"])
    expect = {"tok_embeddings.weight": (cfg["vocab_size"], dim), "norm.weight": (dim,),
              "output.weight": (cfg["vocab_size"], dim)}
    for i in range(cfg["n_layers"]):
        L = f"layers.{i}."
        expect.update({L + "attention.wq.weight": (heads * hd, dim), L + "attention.wk.weight": (kv * hd, dim),
                       L + "attention.wv.weight": (kv * hd, dim), L + "attention.wo.weight": (dim, heads * hd),
                       L + "attention_norm.weight": (dim,), L + "ffn_norm.weight": (dim,)})
        if moe:
            rows = moe["num_experts"] * moe["hidden_dim"]
            expect.update({L + "feed_forward.gate.weight": (moe["num_experts"], dim),
                           L + "feed_forward.w1": (rows, dim), L + "feed_forward.w2": (rows, dim),
                           L + "feed_forward.w3": (rows, dim)})
        else:
            expect.update({L + "feed_forward.w1.weight": (hidden, dim), L + "feed_forward.w2.weight": (dim, hidden),
                           L + "feed_forward.w3.weight": (hidden, dim)})
    problems = []
    for rel, shape in expect.items():
        t = merged.get(prefix + rel)
        if t is None:
            problems.append(f"missing {prefix + rel}")
        elif tuple(t.shape) != shape:
            problems.append(f"{prefix + rel}: merged shape {tuple(t.shape)}, config.json implies {shape}")
    extra_layers = sorted({int(m.group(1)) for n in merged
                           for m in [re.match(re.escape(prefix) + r"layers\.(\d+)\.", n)] if m
                           and int(m.group(1)) >= cfg["n_layers"]})
    if extra_layers:
        problems.append(f"weights have layers {extra_layers} beyond n_layers={cfg['n_layers']}")
    if problems:
        raise ConversionError("\n  ".join([f"weights contradict {src / 'config.json'}:"] + problems))
    out = {k: cfg[k] for k in ENGINE_KEYS}
    if moe:
        out["moe"] = moe
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="directory with consolidated.*.model.pth + config.json")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--dtype", choices=["keep", *DTYPES], default="keep")
    ap.add_argument("--llama-type", choices=LLAMA_TYPES, help="override meta.json's llama_type")
    ap.add_argument("--max-seq-len", type=int, help="override config.json's max_seq_len")
    a = ap.parse_args()
    try:
        paths = find_shards(a.src)
        cfg_path = a.src / "config.json"
        try:
            src_cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConversionError(f"{cfg_path}: cannot read reference config: {exc}") from exc
        llama_type = a.llama_type
        if llama_type is None:
            meta_path = a.src / "meta.json"
            try:
                llama_type = json.loads(meta_path.read_text()).get("llama_type")
            except (OSError, ValueError) as exc:
                raise ConversionError(f"{meta_path}: cannot read ({exc}); pass --llama-type") from exc
        if llama_type not in LLAMA_TYPES:
            raise ConversionError(f"llama_type {llama_type!r} is not supported (supported: {LLAMA_TYPES})")
        shards = [load_shard(p) for p in paths]
        moe = moe_config(src_cfg, a.src)
        merged, prefix = merge(shards, paths, moe["num_experts"] if moe else None)
        llm = engine_llm_config(src_cfg, merged, prefix, a.max_seq_len, a.src)
        if a.dtype != "keep":
            merged = {k: (v.to(DTYPES[a.dtype]) if v.is_floating_point() else v) for k, v in merged.items()}
        merged = {k: v.contiguous() for k, v in merged.items()}
        a.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = a.out_dir / "model.safetensors.tmp"
        save_file(merged, str(tmp), metadata={"format": "pt", "source": str(a.src.resolve()),
                                             "shards": str(len(paths))})
        os.replace(tmp, a.out_dir / "model.safetensors")
        skip_tokens = (prefix + "skip_token") in merged
        out_cfg = {"llama_type": llama_type, "llm": llm, "skip_tokens": skip_tokens}
        if "vision" in src_cfg:
            out_cfg["vision"] = src_cfg["vision"]
        (a.out_dir / "config.json").write_text(json.dumps(out_cfg, indent=2) + "\n")
    except ConversionError as exc:
        sys.exit(f"convert_checkpoint: {exc}")
    how = ("with SPHINX-X skip tokens" if skip_tokens else
           "without a skip token: every cell is encoded, as the reference code does")
    print(f"wrote {a.out_dir / 'model.safetensors'} ({len(merged)} tensors from {len(paths)} shards, "
          f"{how}) and {a.out_dir / 'config.json'}")


if __name__ == "__main__":
    main()
