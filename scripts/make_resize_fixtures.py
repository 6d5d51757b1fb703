#!/usr/bin/env python3
"""Reference views for the tiling/resampling parity test (engine/core/tests/resize_parity.rs).

For each case this writes, into <repo>/target/fixtures/resize/:
  <case>.page.png            the page bitmap the Rust tiler gets (8-bit RGB)
  <case>.global.png          PIL's global view
  <case>.r<R>c<C>.png        PIL's crop of every grid cell (skipped cells included)
and cases.json listing each case with its canvas, grid and the cells PIL leaves
entirely in padding.

The expected views are made the reference way (LLaMA2-Accessory's PadToSquare +
bicubic Resize, with the page at the TOP-LEFT as SPHINX-X's skip tokens need):
pad the page to a square of side max(w, h) with round(CLIP mean * 255), resize the
square with PIL BICUBIC to canvas x canvas and crop the grid, and resize the same
square to tile x tile for the global view.

Run: .venv/bin/python scripts/make_resize_fixtures.py
"""

import json
import pathlib
import sys

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "target" / "fixtures" / "resize"
# Corpus PDFs: the repository copy first, the shared folder as a fallback.
CORPUS_DIRS = [REPO / "tests" / "data" / "corpus", REPO.parent / "shared" / "corpus" / "pdfs"]

# OpenAI CLIP mean, as in accessory/data/transform.py; PadToSquare truncates it to bytes.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
PAD_RGB = tuple(int(m * 255) for m in CLIP_MEAN)


def corpus_pdf(name):
    for d in CORPUS_DIRS:
        p = d / name
        if p.exists():
            return p
    sys.exit(f"make_resize_fixtures: {name} not found in {[str(d) for d in CORPUS_DIRS]}")


def render_pdf(name, dpi, rotate=0):
    import pymupdf as fitz

    with fitz.open(corpus_pdf(name)) as doc:
        page = doc[0]
        pix = page.get_pixmap(matrix=fitz.Matrix(dpi / 72, dpi / 72).prerotate(rotate), alpha=False)
        img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    return img


def text_like(w, h, seed):
    """Sharp-edged synthetic page: white paper, black 'text' bars, a coloured block, noise."""
    rng = np.random.default_rng(seed)
    a = np.full((h, w, 3), 255, np.uint8)
    line_h = max(2, h // 40)
    for y in range(line_h, h - line_h, 2 * line_h):
        x = int(rng.integers(0, max(1, w // 10)))
        while x < w:
            word = int(rng.integers(max(1, w // 40), max(2, w // 8)))
            a[y : y + line_h, x : min(w, x + word)] = 0
            x += word + int(rng.integers(max(1, w // 80), max(2, w // 30)))
    a[h // 3 : h // 2, w // 4 : w // 2] = (200, 30, 60)
    noise = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    a[h - noise.shape[0] :, w - noise.shape[1] :] = noise
    return Image.fromarray(a, "RGB")


def noise(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def cases():
    """(name, page bitmap, canvas, grid): tall, wide, tiny, larger/smaller than the canvas,
    exactly the canvas, real rendered pages with sharp text edges."""
    return [
        ("pdf_earnings_1k", render_pdf("earnings.pdf", 110), 1024, 2),
        ("pdf_lincoln_448", render_pdf("lincoln_letter.pdf", 60), 448, 2),
        ("pdf_landscape_1k", render_pdf("math_2503_04086.pdf", 100, rotate=90), 1024, 2),
        ("wide_1k", text_like(900, 300, 1), 1024, 2),
        ("tall_448", text_like(150, 700, 2), 448, 2),
        ("tiny_448", text_like(37, 23, 3), 448, 2),
        ("small_1k", text_like(600, 500, 4), 1024, 2),
        ("exact_canvas_1k", text_like(1024, 700, 5), 1024, 2),
        ("noise_big_448", noise(1000, 800, 6), 448, 2),
        ("grid3_wide", text_like(1200, 350, 7), 960, 3),
    ]


def views(page, canvas, grid):
    """The canvas (PadToSquare + bicubic Resize) and its cells."""
    w, h = page.size
    side = max(w, h)
    square = Image.new("RGB", (side, side), PAD_RGB)
    square.paste(page, (0, 0))
    tile = canvas // grid
    big = square.resize((canvas, canvas), Image.BICUBIC)
    cells = {}
    for r in range(grid):
        for c in range(grid):
            cells[(r, c)] = big.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
    return big, cells


def all_padding(img):
    a = np.asarray(img)
    return bool((a == np.array(PAD_RGB, np.uint8)).all())


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    for name, page, canvas, grid in cases():
        page = page.convert("RGB")
        page.save(OUT / f"{name}.page.png")
        big, cells = views(page, canvas, grid)
        big.save(OUT / f"{name}.canvas.png")
        padding_cells = []
        for (r, c), img in cells.items():
            if all_padding(img):
                padding_cells.append([r, c])
        index.append(
            {
                "name": name,
                "page_size": list(page.size),
                "canvas": canvas,
                "grid": grid,
                "all_padding_cells": padding_cells,
            }
        )
        print(f"{name}: page {page.size}, canvas {canvas}/{grid}, all-padding cells {padding_cells}")
    (OUT / "cases.json").write_text(json.dumps({"pad_rgb": PAD_RGB, "cases": index}, indent=1))


if __name__ == "__main__":
    main()
