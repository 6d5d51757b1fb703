#!/usr/bin/env bash
# GPU check of the SPHINX-X engine: the CPU float32 parity fixtures rerun on CUDA in
# bfloat16 (relative error <= 1e-2), then load time, page-forward time and peak device
# memory for full-size SPHINX-Tiny-1k shapes with random weights.
#
# Two halves, because the GPU machine has PyTorch but no Rust toolchain (../shared/GPU.md):
#   scripts/gpu-parity.sh stage   here: release-build the example binary, regenerate the
#                                 vision + sphinx fixtures, copy both into target/gpu-parity/
#   scripts/gpu-parity.sh run     there (device tool, carry ["target/gpu-parity"],
#                                 timeout ~420 s): builds nothing, only runs and reports.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-common.sh
source scripts/gpu-common.sh
STAGE=target/gpu-parity

case "${1:-}" in
stage)
  stage_example sphinx-model gpu_parity "$STAGE"
  .venv/bin/python scripts/make_parity_fixtures.py vision sphinx
  mkdir -p "$STAGE/fixtures"
  cp -r target/fixtures/vision target/fixtures/sphinx "$STAGE/fixtures/"
  du -sh "$STAGE"
  ;;
run)
  [ -x "$STAGE/gpu_parity" ] || { echo "no $STAGE/gpu_parity: run 'scripts/gpu-parity.sh stage' first and carry $STAGE" >&2; exit 2; }
  use_gpu_torch
  LOG=${OUT:-/tmp}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

  echo "== bf16 parity on CUDA"
  parity=0
  "$STAGE/gpu_parity" parity "$STAGE/fixtures" || parity=$?

  echo "== full-size SPHINX-Tiny-1k, random weights"
  WEIGHTS=${TMPDIR:-/tmp}/sphinx_tiny_1k_random.bf16.safetensors
  "$STAGE/gpu_parity" write-random "$WEIGHTS"
  sync
  idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  # Device memory as the driver sees it (includes libtorch's caching-allocator reserve
  # and the CUDA context), sampled every 100 ms around the load + forward only.
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$LOG/gpu-mem.log" &
  SMI=$!
  "$STAGE/gpu_parity" load-and-run "$WEIGHTS"
  sleep 0.3
  kill "$SMI" 2>/dev/null || true
  wait "$SMI" 2>/dev/null || true
  peak=$(sort -n "$LOG/gpu-mem.log" | tail -1)
  echo "peak device memory during load + forward: ${peak} MiB (idle before: ${idle} MiB)"
  rm -f "$WEIGHTS"
  exit "$parity"
  ;;
*)
  echo "usage: scripts/gpu-parity.sh stage|run" >&2
  exit 2
  ;;
esac
