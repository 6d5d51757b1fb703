#!/usr/bin/env bash
# The cloud path end to end on local S3 + SQS (see scripts/e2e/serve_e2e.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
.venv/bin/python scripts/e2e/serve_e2e.py
