#!/usr/bin/env python3
"""Python baseline for scripts/bench-tiling.sh: the same job as `sphinx tile`, done the
reference implementation's way (LLaMA2-Accessory / SPHINX): PyMuPDF renders each page,
PIL pads it to a square with the CLIP mean colour (page top-left, as SPHINX-X places it),
resizes the square to the canvas with BICUBIC, makes the global view with a BICUBIC
resize, splits the canvas into the grid, and PNG-encodes every non-skipped view.

PNG encoding uses compress_level=1 (PIL's fastest), so the baseline is not slowed by
compression the Rust side does not do. Prints one JSON line with pages and seconds.
"""
import argparse
import io
import json
import sys
import time

import pymupdf as fitz
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
PAD = tuple(int(round(m * 255)) for m in CLIP_MEAN)


def tile_page(page_img, canvas, grid):
    w, h = page_img.size
    side = max(w, h)
    square = Image.new("RGB", (side, side), PAD)
    square.paste(page_img, (0, 0))
    tile = canvas // grid
    big = square.resize((canvas, canvas), Image.BICUBIC)
    views = [square.resize((tile, tile), Image.BICUBIC)]
    content_w = w * canvas / side
    content_h = h * canvas / side
    for r in range(grid):
        for c in range(grid):
            if c * tile >= content_w or r * tile >= content_h:
                views.append(None)  # skip token: no pixels
                continue
            views.append(big.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile)))
    out = []
    for v in views:
        if v is None:
            continue
        buf = io.BytesIO()
        v.save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("pdfs", nargs="+")
    ap.add_argument("--canvas", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    pages = 0
    start = time.perf_counter()
    for _ in range(args.repeat):
        for path in args.pdfs:
            doc = fitz.open(path)
            for page in doc:
                rect = page.rect
                zoom = args.canvas / max(rect.width, rect.height)
                pix = page.get_pixmap(matrix=fitz.Matrix(zoom, zoom), alpha=False)
                img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
                tile_page(img, args.canvas, args.grid)
                pages += 1
    seconds = time.perf_counter() - start
    json.dump({"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
