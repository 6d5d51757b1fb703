#!/usr/bin/env python3
"""Reference fixtures for the synthetic document generator (engine/core/tests/synth.rs).

Writes target/fixtures/synth/:

box_text.json
    SPHINX box text for pixel boxes, formatted the way the reference's Python writes
    normalised floats: '%.2f' % (v / max(w, h)) (round half to even on the exact binary
    value), `<p>phrase</p>[x1,y1,x2,y2]`, then checked with the reference's own reader, the
    regular expressions of `extract_and_color` in LLaMA2-Accessory
    accessory/demos/multi_turn_mm_box.py (commit of the main branch read on 2026-11-26).
    Includes exact ties (v / side = k + 0.005) where half-up and half-even differ.

ink_extents.json
    Outline extents of every character the generator emits, and of some words, measured
    with PIL (RAQM layout: HarfBuzz shaping with kerning, FreeType glyphs; anchor at the
    left end of the baseline) and the
    shipped DejaVu fonts at several em sizes, in pixels relative to the pen origin. Drawn
    at SCALE x the size and scaled down, so FreeType's hinting (which snaps outlines and
    advances to whole pixels) shifts them by ~1/SCALE px only. The ink box of the same text
    at 1x, unhinted (ab_glyph), is then [floor x1, floor y1, ceil x2, ceil y2] of it.

Run: .venv/bin/python scripts/make_synth_fixtures.py
"""
import json
import random
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "fixtures" / "synth"
FONTS = ROOT / "assets" / "fonts"

# The reader of the reference demo (multi_turn_mm_box.py, extract_and_color).
PHRASE_BOX = re.compile(r'<p>(.*?)<\/p>\s*(\[[\d.,;\s]*\])')
NUMBER = re.compile(r'\d+\.\d+')


def box_text(phrase, box, width, height):
    side = max(width, height)
    return "<p>%s</p>[%s]" % (phrase, ",".join("%.2f" % (v / side) for v in box))


def box_cases():
    rng = random.Random(20261126)
    cases = []
    # Exact ties: v / side = n / 200 with n odd, e.g. 0.125, 0.375, 0.005.
    for side in (200, 400, 800, 1000, 1400):
        for n in range(1, 200, 2):
            v = n * side // 200
            if v * 200 == n * side:
                cases.append(([v, 0, side, v], side, side // 2 or 1))
    for _ in range(400):
        w, h = rng.randint(100, 1400), rng.randint(100, 1400)
        x1, x2 = sorted(rng.sample(range(0, w + 1), 2))
        y1, y2 = sorted(rng.sample(range(0, h + 1), 2))
        cases.append(([x1, y1, x2, y2], w, h))
    out = []
    for i, (box, w, h) in enumerate(cases):
        phrase = "phrase %d" % i
        text = box_text(phrase, box, w, h)
        (match,) = PHRASE_BOX.findall(text)
        assert match[0] == phrase
        nums = [float(x) for x in NUMBER.findall(match[1])]
        side = max(w, h)
        assert len(nums) == 4 and all(abs(n * side - v) <= 0.005 * side + 1e-9 for n, v in zip(nums, box))
        out.append({"phrase": phrase, "box": box, "width": w, "height": h, "text": text})
    return out


# Every character the text generator can emit.
GLYPHS = ("abcdefghijklmnopqrstuvwxyz" "ABCDEFGHIJKLMNOPQRSTUVWXYZ" "0123456789" "$%#,.:?!()-")
WORDS = ["Hello", "page", "RIVER", "42", "$19.99", "(town)", "year-end", "Map:", "quick", "Wall"]


# FreeType hints outlines and advances to whole pixels; drawn at SCALE times the size,
# hinting moves edges by at most ~1/SCALE of a pixel at the size that matters, so the
# scaled-down ink box is the unhinted outline's extent that ab_glyph rasterises.
SCALE = 8


def ink_cases():
    # RAQM (HarfBuzz) applies the fonts' kerning as typesetters do; PIL's BASIC layout
    # leaves DejaVu unkerned.
    assert features.check("raqm"), "PIL without libraqm cannot shape text"
    faces = {"sans": "DejaVuSans.ttf", "serif": "DejaVuSerif.ttf", "mono": "DejaVuSansMono.ttf"}
    out = []
    for face, file in faces.items():
        for size in (12, 18, 27, 34):
            big = size * SCALE
            font = ImageFont.truetype(str(FONTS / file), big, layout_engine=ImageFont.Layout.RAQM)
            for kind, texts in (("glyph", GLYPHS), ("word", WORDS)):
                for text in texts:
                    pad = 2 * big
                    img = Image.new("L", (pad * 2 + big * len(text), pad * 2), 0)
                    ImageDraw.Draw(img).text((pad, pad), text, fill=255, font=font, anchor="ls")
                    x1, y1, x2, y2 = img.getbbox()
                    out.append({"kind": kind, "face": face, "size": size, "text": text,
                                "outline": [(x1 - pad) / SCALE, (y1 - pad) / SCALE,
                                            (x2 - pad) / SCALE, (y2 - pad) / SCALE]})
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "box_text.json").write_text(json.dumps(box_cases()))
    (OUT / "ink_extents.json").write_text(json.dumps(ink_cases()))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
