#!/usr/bin/env bash
# The hostile corpus (decoder bombs, pathological PDFs, a huge TIFF) for
# engine/core/tests/hostile_isolation.rs and the end-to-end test; made once into target/hostile/.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_hostile_corpus.py
