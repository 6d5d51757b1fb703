"""Reference fixtures for the two MoV encoders (engine/model/tests/{convnext,dinov2}_parity.rs).

CLIP-ConvNeXt: timm's `convnext_xxlarge` builder (the model open_clip wraps) with tiny
depths/dims, its classifier reset as open_clip does, and head pooling/flatten replaced by
identity as LLaMA2-Accessory's llama_ens5_light.py does; tokens = spatial mean + positions.

DINOv2: transformers' Dinov2Model with use_swiglu_ffn=True, its weights renamed to the
facebookresearch hub names (the names in SPHINX-X checkpoints). One deliberate deviation:
transformers resamples the position embeddings with `size=`, while the hub model SPHINX-X
runs (dinov2/models/vision_transformer.py) uses `scale_factor=(grid + 0.1) / M`, which
samples different source coordinates. The fixture swaps in the hub's rule (one
F.interpolate call) so it describes the model the real weights were trained with.

Random float32 weights and inputs; writes target/fixtures/vision/.
Usage: .venv/bin/python scripts/parity/vision.py [--out DIR]
(or all generators: .venv/bin/python scripts/make_parity_fixtures.py)
"""

import argparse
import json
import math
import types
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import Dinov2Config, Dinov2Model

# Tiny sizes; must equal ConvNextConfig::tiny_test() / DinoConfig::tiny_test() in Rust.
CONVNEXT_TINY = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32], norm_eps=1e-5)
DINO_TINY = dict(embed_dim=32, depth=2, num_heads=4, patch_size=14, pos_grid=6)
# Reference prefixes inside the SPHINX-X model (llama_ens5_light.py attribute names).
CONVNEXT_PREFIX = "openclip_convnext_xxl."
DINO_PREFIX = "dinov2_vitg14."
# The hub model's offset added to the target grid before computing the bicubic scale.
HUB_INTERPOLATE_OFFSET = 0.1


def randomize_(module: nn.Module, gen: torch.Generator) -> None:
    """Gives every parameter random values of a scale that keeps activations O(1), so
    layer scales, norm affines and biases all matter in the comparison."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2 and "token" not in name and "position" not in name:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:  # norm weights, layer-scale gammas
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:  # cls/mask tokens, position embeddings
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------- ConvNeXt (timm)


def build_convnext(gen: torch.Generator, cfg=CONVNEXT_TINY) -> nn.Module:
    """timm convnext_xxlarge with overridden sizes, prepared like SPHINX-X prepares it."""
    model = timm.create_model(
        "convnext_xxlarge", pretrained=False, depths=cfg["depths"], dims=cfg["dims"], norm_eps=cfg["norm_eps"]
    )
    model.reset_classifier(0)  # open_clip TimmModel with a 'linear' proj: trunk without classifier
    model.head.global_pool = nn.Identity()  # llama_ens5_light.py
    model.head.flatten = nn.Identity()
    randomize_(model, gen)
    return model.eval()


def convnext_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """llama_ens5_light.py encode_image: [B,C,h,w] -> positions row-major, mean prepended."""
    feats = model(x).flatten(-2).permute(0, 2, 1)
    return torch.cat([feats.mean(dim=1, keepdim=True), feats], dim=1)


def convnext_weights(model: nn.Module) -> dict:
    return {CONVNEXT_PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- DINOv2 (transformers)


def _hub_interpolate_pos_encoding(self, embeddings, height, width):
    """facebookresearch/dinov2 DinoVisionTransformer.interpolate_pos_encoding's rule."""
    num_positions = self.position_embeddings.shape[1] - 1
    m = int(math.sqrt(num_positions))
    gh, gw = height // self.patch_size, width // self.patch_size
    if gh == m and gw == m:
        return self.position_embeddings
    pos = self.position_embeddings.float()
    dim = pos.shape[-1]
    grid = pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        scale_factor=((gh + HUB_INTERPOLATE_OFFSET) / m, (gw + HUB_INTERPOLATE_OFFSET) / m),
        mode="bicubic",
    )
    assert grid.shape[-2:] == (gh, gw)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat([pos[:, :1], grid], dim=1).to(self.position_embeddings.dtype)


def build_dinov2(gen: torch.Generator, cfg=DINO_TINY) -> Dinov2Model:
    config = Dinov2Config(
        hidden_size=cfg["embed_dim"],
        num_hidden_layers=cfg["depth"],
        num_attention_heads=cfg["num_heads"],
        mlp_ratio=4,
        patch_size=cfg["patch_size"],
        image_size=cfg["patch_size"] * cfg["pos_grid"],
        use_swiglu_ffn=True,
        layer_norm_eps=1e-6,
        qkv_bias=True,
    )
    model = Dinov2Model(config)
    model.embeddings.interpolate_pos_encoding = types.MethodType(_hub_interpolate_pos_encoding, model.embeddings)
    randomize_(model, gen)
    return model.eval()


def dinov2_tokens(model: Dinov2Model, x: torch.Tensor) -> torch.Tensor:
    """forward_features' x_norm_clstoken followed by x_norm_patchtokens (= all normed tokens)."""
    return model(pixel_values=x).last_hidden_state


def dinov2_hub_weights(model: Dinov2Model) -> dict:
    """transformers Dinov2 state dict -> facebookresearch hub names (fused qkv and w12)."""
    sd = model.state_dict()
    out = {
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "mask_token": sd["embeddings.mask_token"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(model.config.num_hidden_layers):
        h, b = f"encoder.layer.{i}.", f"blocks.{i}."
        att = h + "attention."
        for kind in ("weight", "bias"):
            out[b + f"norm1.{kind}"] = sd[h + f"norm1.{kind}"]
            out[b + f"norm2.{kind}"] = sd[h + f"norm2.{kind}"]
            out[b + f"attn.qkv.{kind}"] = torch.cat([sd[att + f"{p}_proj.{kind}"] for p in "qkv"], 0)
            out[b + f"attn.proj.{kind}"] = sd[att + f"o_proj.{kind}"]
            out[b + f"mlp.w12.{kind}"] = torch.cat([sd[h + f"mlp.gate_proj.{kind}"], sd[h + f"mlp.up_proj.{kind}"]], 0)
            out[b + f"mlp.w3.{kind}"] = sd[h + f"mlp.down_proj.{kind}"]
        out[b + "ls1.gamma"] = sd[h + "layer_scale1.lambda1"]
        out[b + "ls2.gamma"] = sd[h + "layer_scale2.lambda1"]
    return {DINO_PREFIX + k: v.contiguous() for k, v in out.items()}


def _check_mapping_complete(model: Dinov2Model, mapped: dict) -> None:
    n_src = sum(p.numel() for p in model.state_dict().values())
    n_dst = sum(v.numel() for v in mapped.values())
    assert n_src == n_dst, f"DINOv2 renaming lost parameters: {n_src} -> {n_dst}"


ROOT = Path(__file__).resolve().parents[2]


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(20260511)

    convnext = build_convnext(gen)
    conv_in = torch.randn(2, 3, 128, 128, generator=gen)
    conv_out = convnext_tokens(convnext, conv_in)
    save_file(convnext_weights(convnext), out / "convnext_weights.safetensors")
    save_file({"input": conv_in, "tokens": conv_out.contiguous()}, out / "convnext_io.safetensors")

    dino = build_dinov2(gen)
    dino_w = dinov2_hub_weights(dino)
    _check_mapping_complete(dino, dino_w)
    grid = DINO_TINY["patch_size"] * DINO_TINY["pos_grid"]
    dino_in = torch.randn(2, 3, 56, 56, generator=gen)  # 4x4 patches: resampled positions
    dino_native = torch.randn(1, 3, grid, grid, generator=gen)  # trained grid: positions as is
    save_file(dino_w, out / "dinov2_weights.safetensors")
    save_file(
        {
            "input": dino_in,
            "tokens": dinov2_tokens(dino, dino_in).contiguous(),
            "input_native": dino_native,
            "tokens_native": dinov2_tokens(dino, dino_native).contiguous(),
        },
        out / "dinov2_io.safetensors",
    )
    (out / "config.json").write_text(json.dumps({"convnext": CONVNEXT_TINY, "dinov2": DINO_TINY}, indent=1) + "\n")
    print(f"vision fixtures -> {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "fixtures" / "vision")
    generate(ap.parse_args().out)
