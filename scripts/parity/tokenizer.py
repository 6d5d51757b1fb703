#!/usr/bin/env python3
"""Reference fixtures for the tokenizer (target/fixtures/tokenizer/): converts the real
LLaMA-2 SentencePiece model with scripts/convert_tokenizer.py and records what the
`sentencepiece` library (nobody here wrote it) gives on every line of the committed
corpus tests/data/tokenizer/corpus.txt: ids, BOS/EOS ids and decoded text.

Usage: .venv/bin/python scripts/parity/tokenizer.py [--model tokenizer.model] [--out DIR]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import sentencepiece as spm

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path("/work/shared/models/llama2-tokenizer/tokenizer.model")
CORPUS = ROOT / "tests" / "data" / "tokenizer" / "corpus.txt"
DEFAULT_OUT = ROOT / "target" / "fixtures" / "tokenizer"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_tokenizer.py"), str(a.model),
                    str(a.out / "tokenizer.json")], check=True)
    sp = spm.SentencePieceProcessor(model_file=str(a.model))
    # The corpus is one text per "\n"-terminated line (other line breaks stay inside lines).
    lines = CORPUS.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "corpus must end with a newline"
    lines = lines[:-1]
    ids = [sp.encode(line) for line in lines]
    out = {"bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "vocab_size": sp.get_piece_size(),
           "ids": ids, "decoded": [sp.decode(i) for i in ids]}
    (a.out / "sentencepiece.json").write_text(json.dumps(out, ensure_ascii=False))
    print(f"wrote {a.out}: {len(lines)} lines")


if __name__ == "__main__":
    main()
