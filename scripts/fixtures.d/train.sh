#!/usr/bin/env bash
# Training fixtures: torch.optim.AdamW + clipping + the reference's LR schedule
# (scripts/parity/adamw.py) for engine/model/tests/train_adamw_parity.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/parity/adamw.py
