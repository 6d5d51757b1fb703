#!/usr/bin/env bash
# Inputs of the tiler Lambda tests: a multi-page PDF, a JPEG and a corrupt file.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/gen_tiler_fixtures.py
