#!/usr/bin/env python3
"""Learning curve PNG of `sphinx train` metrics, drawn with PIL only (no matplotlib).

    python3 scripts/plot_curve.py OUT.png TITLE METRICS.jsonl[:LABEL] [MORE.jsonl[:LABEL] ...]

Plots the training loss (nats per supervised token, log scale) against the step, one
line per metrics file; a file's optional `eval` rows (`{"step", "cer"}` lines, as
scripts/train-nano.sh appends them) are drawn as dots on a second axis (CER, 0-100%).
"""
import json
import math
import sys

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (140, 86, 75), (23, 190, 207), (127, 127, 127)]


def read(path):
    losses, cers = [], []
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            if "cer" in row:
                cers.append((row["step"], row["cer"]))
            elif "loss" in row and row.get("targets", 1) > 0:
                losses.append((row["step"], row["loss"]))
    return losses, cers


def smooth(points, window):
    out, acc = [], []
    for s, v in points:
        acc.append(math.log(max(v, 1e-6)))
        if len(acc) > window:
            acc.pop(0)
        out.append((s, math.exp(sum(acc) / len(acc))))
    return out


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, title, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    series = []
    for spec in specs:
        path, _, label = spec.partition(":")
        losses, cers = read(path)
        series.append((label or path, losses, cers))
    W, H = 900, 520
    L, R, T, B = 80, 80, 50, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    steps = [s for _, l, c in series for s, _ in l + c] or [1]
    xmax = max(steps)
    vals = [v for _, l, _ in series for _, v in l] or [1.0]
    lo = math.floor(math.log10(max(min(vals), 1e-4)))
    hi = math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo + 1

    def x(s):
        return L + (W - L - R) * s / xmax

    def y_loss(v):
        f = (math.log10(max(v, 10 ** lo)) - lo) / (hi - lo)
        return H - B - (H - T - B) * f

    def y_cer(c):
        return H - B - (H - T - B) * min(c, 1.0)

    d.rectangle([L, T, W - R, H - B], outline="black")
    for e in range(lo, hi + 1):
        yy = y_loss(10 ** e)
        d.line([L, yy, W - R, yy], fill=(225, 225, 225))
        d.text((L - 45, yy - 6), f"1e{e}", fill="black", font=font)
    for k in range(0, 11, 2):
        yy = y_cer(k / 10)
        d.text((W - R + 8, yy - 6), f"{k * 10}%", fill=(90, 90, 90), font=font)
    for k in range(6):
        s = xmax * k / 5
        d.text((x(s) - 12, H - B + 8), f"{s:.0f}", fill="black", font=font)
    d.text((W // 2 - 20, H - 25), "step", fill="black", font=font)
    d.text((10, T - 30), "loss (nats/token, log)", fill="black", font=font)
    d.text((W - R - 60, T - 30), "held-out CER (dots)", fill=(90, 90, 90), font=font)
    d.text((L + 200, 12), title, fill="black", font=font)
    for i, (label, losses, cers) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        pts = [(x(s), y_loss(v)) for s, v in smooth(losses, 10)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for s, c in cers:
            cx, cy = x(s), y_cer(c)
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], outline=colour, fill=colour)
        # Legend bottom left, where losses have not fallen to yet.
        d.text((L + 10, H - B - 14 * (len(series) - i) - 6), label, fill=colour, font=font)
    img.save(out)


if __name__ == "__main__":
    main()
