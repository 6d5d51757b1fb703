#!/usr/bin/env bash
# Model parity fixtures: transformers Llama, timm ConvNeXt, transformers Dinov2,
# sentencepiece, and the SPHINX-X forward composed from them (scripts/parity/*.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_parity_fixtures.py
