#!/usr/bin/env python3
"""Convert a SentencePiece BPE `tokenizer.model` into a `tokenizer.json` for the
Hugging Face `tokenizers` library (and the Rust `tokenizers` crate) that gives the SAME
ids as SentencePiece on every input.

Why not `transformers`' converter: SentencePiece's BPE merges any adjacent pair whose
concatenation is a piece, highest piece score first, ties to the LEFTMOST pair. In the
LLaMA model every whitespace-only piece ("▁".."▁"*16) has the same score (-1e9), so a
run of spaces is merged greedily from the left, after every other merge, and the last
space of a run stays with the next word ("    <img" -> "▁▁▁▁", "▁<", "img"). A BPE with
one rank per merge and a Metaspace pre-tokenizer that splits at every space cannot do
that. Here:

* normalizer: prepend "▁" (add_dummy_prefix) and replace " " with "▁"
  (escape_whitespaces), as the model's normalizer_spec says; nothing else ("identity").
* pre-tokenizer: split into SentencePiece's words (SplitIntoWords with
  allow_whitespace_only_pieces): a run of "▁" plus the non-space text after it.
* merges: every (a, b) with a + b a normal piece, ordered by the piece score (highest
  first); the equal-score whitespace pieces last, as (▁*k, ▁) for k = 15..1, so each
  run grows from its left end exactly like SentencePiece's leftmost tie-break.
* byte fallback for characters outside the vocabulary; <unk>, <s>, </s> are plain vocab
  entries (not matched inside text, as SentencePiece never matches them there).

Usage: convert_tokenizer.py tokenizer.model tokenizer.json
"""

import argparse
import json
import sys
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as sp_pb2

SPACE = "\u2581"  # SentencePiece's escaped-whitespace symbol "▁".

# SentencePiece ModelProto.SentencePiece.Type values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def load_model(path: Path) -> sp_pb2.ModelProto:
    model = sp_pb2.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError subclasses of Exception
        sys.exit(f"{path}: not a SentencePiece model ({exc})")
    return model


def check_supported(model: sp_pb2.ModelProto, path: Path) -> None:
    """Refuse models whose behaviour this converter does not reproduce."""
    ts, ns = model.trainer_spec, model.normalizer_spec
    problems = []
    if ts.model_type != sp_pb2.TrainerSpec.BPE:
        problems.append("model_type is not BPE")
    if ts.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix is set")
    if not ts.split_by_whitespace:
        problems.append("split_by_whitespace is off")
    if not ts.allow_whitespace_only_pieces:
        problems.append("allow_whitespace_only_pieces is off")
    if ns.name != "identity" or ns.precompiled_charsmap:
        problems.append(f"normalizer {ns.name!r} is not 'identity'")
    if ns.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces is set")
    if not ns.escape_whitespaces:
        problems.append("escape_whitespaces is off")
    user = [p.piece for p in model.pieces if p.type in (USER_DEFINED, UNUSED)]
    if user:
        problems.append(f"user-defined/unused pieces {user[:5]}")
    if problems:
        sys.exit(f"{path}: unsupported SentencePiece model: {'; '.join(problems)}")


def build_merges(model: sp_pb2.ModelProto) -> list:
    vocab = {p.piece: (i, p.score) for i, p in enumerate(model.pieces) if p.type == NORMAL}
    ws_pieces = {piece for piece in vocab if set(piece) == {SPACE}}
    ws_scores = {vocab[p][1] for p in ws_pieces}
    if len(ws_scores) != 1:
        sys.exit("whitespace-only pieces do not share one score; converter assumption broken")
    normal = []
    for piece, (pid, score) in vocab.items():
        if piece in ws_pieces:
            continue
        chars = list(piece)
        for cut in range(1, len(chars)):
            left, right = "".join(chars[:cut]), "".join(chars[cut:])
            if left in vocab and right in vocab:
                normal.append((-score, pid, cut, left, right))
    normal.sort()
    ws_score = ws_scores.pop()
    if any(score <= ws_score for (score_neg, *_rest) in normal for score in [-score_neg]):
        sys.exit("a normal piece scores below the whitespace pieces; converter assumption broken")
    merges = [[left, right] for (*_key, left, right) in normal]
    longest = max(len(p) for p in ws_pieces)
    for k in range(longest - 1, 0, -1):
        if SPACE * k in vocab and SPACE * (k + 1) in vocab:
            merges.append([SPACE * k, SPACE])
    return merges


def build_tokenizer_json(model: sp_pb2.ModelProto) -> dict:
    vocab = {p.piece: i for i, p in enumerate(model.pieces)}
    ts, ns = model.trainer_spec, model.normalizer_spec
    normalizers = []
    if ns.add_dummy_prefix:
        normalizers.append({"type": "Prepend", "prepend": SPACE})
    normalizers.append({"type": "Replace", "pattern": {"String": " "}, "content": SPACE})
    decoders = [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if ns.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": {
            "type": "Split",
            # SentencePiece SplitIntoWords: a run of spaces with the text that follows it.
            "pattern": {"Regex": f"{SPACE}*[^{SPACE}]+|{SPACE}+"},
            "behavior": "Isolated",
            "invert": False,
        },
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": model.pieces[ts.unk_id].piece,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": bool(ts.byte_fallback),
            "ignore_merges": False,
            "vocab": vocab,
            "merges": build_merges(model),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="SentencePiece tokenizer.model")
    ap.add_argument("out", type=Path, help="tokenizer.json to write")
    args = ap.parse_args()
    model = load_model(args.model)
    check_supported(model, args.model)
    tok = build_tokenizer_json(model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.out}: {len(tok['model']['vocab'])} pieces, "
          f"{len(tok['model']['merges'])} merges")


if __name__ == "__main__":
    main()
