#!/usr/bin/env python3
"""Fixtures for scripts/convert_hf_llm.py on the Hugging Face layouts a base LLM is
published in (target/fixtures/hf_llm/), made by transformers itself:

  llama/hf/     LlamaForCausalLM.save_pretrained of the tiny `gqa` Llama (llama.py)
  mixtral/hf/   the tiny Mixtral (mixtral.py) in the hub layout of mistralai/Mixtral-8x7B
                (`block_sparse_moe.gate`, `block_sparse_moe.experts.E.w1/w2/w3`); written here
                from the model's fused experts and CHECKED by loading it back with
                transformers' own `from_pretrained` (its checkpoint conversion) to the same logits
  <kind>/reference.safetensors   ids and transformers' logits
  <kind>/converted/llm.{safetensors,json}   the converter's output

Usage: .venv/bin/python scripts/parity/hf_llm.py [--out DIR]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import MixtralForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama  # noqa: E402
import mixtral  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def mixtral_hub_layout(model, a=mixtral.ARGS):
    sd = model.state_dict()
    H = a["hidden"]
    out = {}
    for k, v in sd.items():
        if ".mlp.experts." in k or ".mlp.gate." in k:
            continue
        out[k] = v
    for i in range(a["n_layers"]):
        h = f"model.layers.{i}."
        gate_up, down = sd[h + "mlp.experts.gate_up_proj"], sd[h + "mlp.experts.down_proj"]
        out[h + "block_sparse_moe.gate.weight"] = sd[h + "mlp.gate.weight"]
        for e in range(a["experts"]):
            m = h + f"block_sparse_moe.experts.{e}."
            out[m + "w1.weight"] = gate_up[e, :H]
            out[m + "w3.weight"] = gate_up[e, H:]
            out[m + "w2.weight"] = down[e]
    return {k: v.contiguous().clone() for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "target/fixtures/hf_llm")
    out = ap.parse_args().out
    torch.set_grad_enabled(False)
    ids = torch.randint(0, 320, (2, 11), generator=torch.Generator().manual_seed(91))
    lm = llama.hf_model(llama.MODELS["gqa"], seed=21)
    lm.save_pretrained(out / "llama/hf")
    save_file({"ids": ids, "logits": lm(input_ids=ids).logits.contiguous()}, str(out / "llama/reference.safetensors"))

    mx = mixtral.build_mixtral(22)
    hf = out / "mixtral/hf"
    hf.mkdir(parents=True, exist_ok=True)
    for old in hf.glob("*.safetensors"):
        old.unlink()
    save_file(mixtral_hub_layout(mx), str(hf / "model.safetensors"), metadata={"format": "pt"})
    mx.config.architectures = ["MixtralForCausalLM"]
    mx.config.to_json_file(str(hf / "config.json"))
    logits = mx(input_ids=ids).logits
    back = MixtralForCausalLM.from_pretrained(hf, attn_implementation="eager").eval()
    assert torch.allclose(back(input_ids=ids).logits, logits, atol=1e-5), "hub layout misread by transformers"
    save_file({"ids": ids, "logits": logits.contiguous()}, str(out / "mixtral/reference.safetensors"))
    for kind in ("llama", "mixtral"):
        subprocess.run([sys.executable, str(ROOT / "scripts/convert_hf_llm.py"), str(out / kind / "hf"),
                        "--out", str(out / kind / "converted/llm.safetensors"), "--max-seq-len", "128"], check=True)
    print(f"hf_llm fixtures -> {out}")


if __name__ == "__main__":
    main()
