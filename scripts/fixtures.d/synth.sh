#!/usr/bin/env bash
# Reference fixtures of the synthetic document generator (Python formatting, PIL glyphs).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_synth_fixtures.py
