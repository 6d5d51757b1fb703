#!/usr/bin/env bash
# Model parity fixtures (every scripts/parity/*.py): transformers Llama / Mixtral (and
# InternLM2's layout over Llama), timm ConvNeXt, transformers Dinov2 and Blip2, open_clip,
# sentencepiece, the SPHINX-X and four-expert SPHINX forwards composed from them, and the
# parts a fine-tune is assembled from.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_parity_fixtures.py
