#!/usr/bin/env bash
# The reference conversation template's prompts and box reader outputs (accessory/data/conversation/lib.py logic).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_conversation_fixtures.py
