"""The views the reference code gives its encoders for one page image: the peer of the
engine's page path (engine/worker/tests/view_parity.rs runs it).

Written only with PIL, torchvision and torch, following LLaMA2-Accessory exactly:
accessory/data/transform.py `T_padded_resize` (PadToSquare with the CLIP-mean colour
truncated to bytes, the page pasted CENTRED: `(0, (w - h) // 2)` or `((h - w) // 2, 0)`;
torchvision Resize(canvas, BICUBIC) on the PIL image; ToTensor; Normalize with the CLIP
mean/std), then the view derivation of `encode_image`:
  llama_ens5_light.py (1024 canvas): ConvNeXt sees F.interpolate(canvas, 512, bicubic) and
    the four 512 quarters of the canvas; DINOv2 sees F.interpolate(canvas, 224, bicubic)
    and the four 224 quarters of F.interpolate(canvas, 448, bicubic);
  llama_ens_light.py (512 canvas): ConvNeXt sees F.interpolate(canvas, 512) (nearest, an
    identity at 512), DINOv2 sees F.interpolate(canvas, 224, bicubic).
In float32 (the reference interpolates in float16 on the GPU; that rounding is its own).
`--align top-left` pastes the page at (0, 0) instead: SPHINX-X's placement for models with
skip tokens (the one deviation from the released code, for the engine's skip-token path).

Usage: reference_views.py PAGE.png --layout llama_ens5_light|llama_ens_light
       [--align center|top-left] --out VIEWS.safetensors
writes `convnext` [V, 3, 512, 512] and `dinov2` [V, 3, 224, 224] (CLIP-normalized, in the
reference's view order) and `canvas` [3, S, S] (uint8, the PIL canvas).
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PadToSquare:
    """accessory/data/transform.py: the page centred on a square of the mean colour
    (`top_left`: at (0, 0), SPHINX-X's placement for skip tokens)."""

    def __init__(self, background_color, top_left=False):
        self.bg_color = tuple(int(x * 255) for x in background_color)
        self.top_left = top_left

    def __call__(self, img):
        width, height = img.size
        if width == height:
            return img
        elif width > height:
            result = Image.new(img.mode, (width, width), self.bg_color)
            result.paste(img, (0, 0 if self.top_left else (width - height) // 2))
            return result
        else:
            result = Image.new(img.mode, (height, height), self.bg_color)
            result.paste(img, (0 if self.top_left else (height - width) // 2, 0))
            return result


def t_padded_resize(size, top_left=False):
    return transforms.Compose([
        PadToSquare(background_color=OPENAI_CLIP_MEAN, top_left=top_left),
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD),
    ])


def ens5_views(image):
    """llama_ens5_light.py encode_image, for a batch of one [1, 3, 1024, 1024]."""
    image_224 = F.interpolate(image, size=(224, 224), mode="bicubic")
    image_448 = F.interpolate(image, size=(448, 448), mode="bicubic")
    parts_224 = [image_448[..., :224, :224], image_448[..., :224, 224:],
                 image_448[..., 224:, :224], image_448[..., 224:, 224:]]
    local_224 = torch.stack([image_224] + parts_224, dim=1)
    local_224 = local_224.view(-1, *local_224.shape[2:])
    image_512 = F.interpolate(image, size=(512, 512), mode="bicubic")
    parts_512 = [image[..., :512, :512], image[..., :512, 512:],
                 image[..., 512:, :512], image[..., 512:, 512:]]
    local_512 = torch.stack([image_512] + parts_512, dim=1)
    local_512 = local_512.view(-1, *local_512.shape[2:])
    return local_512, local_224


def ens_views(image):
    """llama_ens_light.py encode_image, for a batch of one [1, 3, 512, 512]."""
    return F.interpolate(image, size=(512, 512)), F.interpolate(image, size=(224, 224), mode="bicubic")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page")
    ap.add_argument("--layout", choices=["llama_ens5_light", "llama_ens_light"], required=True)
    ap.add_argument("--align", choices=["center", "top-left"], default="center")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    top_left = a.align == "top-left"
    canvas_side = 1024 if a.layout == "llama_ens5_light" else 512
    page = Image.open(a.page).convert("RGB")
    image = t_padded_resize(canvas_side, top_left)(page)[None]
    with torch.no_grad():
        convnext, dinov2 = (ens5_views if a.layout == "llama_ens5_light" else ens_views)(image)
    # The 8-bit canvas itself, for diagnostics (PadToSquare + Resize without ToTensor).
    pil_canvas = transforms.Resize(canvas_side, interpolation=transforms.InterpolationMode.BICUBIC)(
        PadToSquare(OPENAI_CLIP_MEAN, top_left)(page))
    canvas = torch.from_numpy(np.asarray(pil_canvas).copy()).permute(2, 0, 1).contiguous()
    save_file({"convnext": convnext.contiguous(), "dinov2": dinov2.contiguous(), "canvas": canvas}, a.out)
    print(f"{a.page}: {tuple(page.size)} -> {a.layout} views {tuple(convnext.shape)} {tuple(dinov2.shape)}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
