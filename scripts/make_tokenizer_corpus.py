#!/usr/bin/env python3
"""Write the tokenizer parity corpus (tests/data/tokenizer/corpus.txt): >= 2,000 lines
chosen to break a SentencePiece -> tokenizers conversion if anything is off: indented
code from the Python standard library, runs of spaces and tabs, digits, CJK, emoji
(ZWJ sequences, skin tones, flags), characters outside the vocabulary (byte fallback),
repeated punctuation, SPHINX-style prompts with boxes, and the literal "▁" symbol.

Deterministic (fixed seed, fixed stdlib files); the output is committed, so the test
does not depend on this machine's Python. Usage: make_tokenizer_corpus.py [OUT]
"""

import inspect
import json
import random
import sys
import textwrap
import argparse
from pathlib import Path

SEED = 20261126
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests/data/tokenizer/corpus.txt"

WORDS = ("the of and to in is for on that with as by this from at be are an or it "
         "document page table figure invoice total amount date signature scanned text "
         "model token image region box coordinate describe detect please provide").split()
CJK = ["这是一个测试句子。", "请检测所有文本并给出它们的边界框坐标。", "日本語の文章です。",
       "東京都渋谷区", "한국어 문장입니다.", "图像中有一只猫和一只狗", "第3页，共12页",
       "（注）本書類は写しです", "人工智能与机器学习", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇩🇪", "🇯🇵", "❤️", "🔥", "✅", "🚀", "🧪", "🫠", "🏳️‍🌈", "👩🏾‍💻"]
# Characters unlikely to be LLaMA pieces: they exercise byte fallback.
RARE = ["𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ሰላም", "ᏣᎳᎩ", "𓂀", "ꦧꦱꦗꦮ", "𐍈", "䶵", "𠀀𠀁", "\u200b", "\ufeff",
        "ǅ", "ẞ", "ﷺ", "⿰", "🀄", "\u0301e", "ⓐⓑⓒ", "㊙", "\x07", "\x1b[0m"]
PUNCT_RUNS = ["-", "=", ".", "*", "_", "~", "#", "/", "a", "ab", "0", "▁", " -", "·"]


def stdlib_code_lines(rng: random.Random, limit: int) -> list:
    modules = [textwrap, json.encoder, argparse, inspect, random]
    lines = []
    for mod in modules:
        for line in Path(mod.__file__).read_text(encoding="utf-8").split("\n"):
            if line.strip() or (line and rng.random() < 0.3):
                lines.append(line)
    rng.shuffle(lines)
    return lines[:limit]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def synthetic(rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:  # indentation + space runs inside text
        return " " * rng.randrange(0, 41) + sentence(rng, rng.randrange(1, 6)).replace(
            " ", " " * rng.randrange(1, 6))
    if kind == 1:  # tabs and mixed whitespace
        return "".join(rng.choice(["\t", " ", "  ", "\t ", " \t"]) for _ in range(rng.randrange(1, 6))) + sentence(rng, 3)
    if kind == 2:  # digits
        return rng.choice([
            f"{rng.randrange(10**9)}", f"{rng.uniform(-1e4, 1e4):.{rng.randrange(6)}f}",
            f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            f"+1 ({rng.randrange(100, 999)}) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
            f"0x{rng.randrange(16**8):08X}", f"Total: ${rng.randrange(10**6):,}.{rng.randrange(100):02d}",
        ])
    if kind == 3:  # CJK, sometimes mixed with Latin and spaces
        return rng.choice(CJK) + rng.choice(["", " ", "  ", " abc ", "123"]) + rng.choice(CJK)
    if kind == 4:  # emoji
        return " ".join(rng.choice(EMOJI) + rng.choice(["", " ", "  ", "ok", "!"]) for _ in range(rng.randrange(1, 5)))
    if kind == 5:  # byte fallback
        return rng.choice(["", " ", "x"]) + rng.choice(RARE) + rng.choice(["", " ", "  "]) + rng.choice(RARE)
    if kind == 6:  # repeated punctuation / letters
        return " " * rng.randrange(0, 5) + rng.choice(PUNCT_RUNS) * rng.randrange(2, 40)
    if kind == 7:  # SPHINX prompts and answers with boxes
        x = [round(rng.random(), 2) for _ in range(4)]
        return rng.choice([
            f"<p>{sentence(rng, 3)}</p>[{x[0]:.2f},{x[1]:.2f},{x[2]:.2f},{x[3]:.2f}]",
            "Please detect all texts and provide their bounding box coordinate.",
            "Generate a detailed description about the image.",
            f"### Human: {sentence(rng, 6)}\n### Assistant:".replace("\n", " "),
        ])
    if kind == 8:  # trailing and leading spaces only
        return " " * rng.randrange(1, 30) + rng.choice(["", sentence(rng, 2)]) + " " * rng.randrange(0, 30)
    if kind == 9:  # capitalisation and punctuation
        return sentence(rng, rng.randrange(3, 12)).capitalize() + rng.choice([".", "?!", "...", ":", ";"])
    if kind == 10:  # code-like tokens
        return " " * 4 * rng.randrange(0, 6) + rng.choice([
            "if (a[i] != b[j]) { return -1; }", "fn main() -> Result<(), Box<dyn Error>> {",
            "SELECT * FROM pages WHERE doc_id = '%s';", "x = np.zeros((3, 224, 224), dtype=np.float32)",
            "<div class=\"row\">&nbsp;</div>", "    }", "#include <stdio.h>", "$ cargo test -p sphinx-model"])
    return "".join(rng.choice([sentence(rng, 2), rng.choice(CJK), rng.choice(EMOJI), rng.choice(RARE),
                               " " * rng.randrange(1, 8), str(rng.randrange(1000))]) for _ in range(4))


def main() -> None:
    ap = argparse.ArgumentParser(description="write the tokenizer parity corpus")
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    rng = random.Random(SEED)
    lines = stdlib_code_lines(rng, 900) + [synthetic(rng) for _ in range(1700)]
    rng.shuffle(lines)
    # One line per text; "\n" and "\r" cannot appear inside a line.
    lines = [l.replace("\r", "").replace("\n", " ") for l in lines]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} lines to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
