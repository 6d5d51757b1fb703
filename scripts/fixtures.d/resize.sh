#!/usr/bin/env bash
# PIL BICUBIC reference views for the tiler's resampling parity test (engine/core/tests/resize_parity.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_resize_fixtures.py
