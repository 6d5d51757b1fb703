#!/usr/bin/env bash
# A full-size SPHINX-MoE (Mixtral-8x7B + four-expert MoV, random bf16 weights made on the
# card) on one lent GPU: build time, one page's encode / prefill / decode, peak memory.
#
#   scripts/gpu-moe.sh stage   here: release-build engine/model/examples/moe_gpu and copy
#                              it (stripped) into target/gpu-moe/
#   scripts/gpu-moe.sh run     on the lent GPU (device tool, carry ["target/gpu-moe"]):
#                              runs it with nvidia-smi sampling memory.used every 200 ms,
#                              prints the result and appends it, dated, with the card's
#                              name, to docs/performance.md ($OUT/performance.md when the
#                              checkout is read-only there). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-common.sh
source scripts/gpu-common.sh
STAGE=target/gpu-moe
NEW=${NEW:-64}

case "${1:-}" in
stage)
  stage_example sphinx-model moe_gpu "$STAGE"
  du -sh "$STAGE"
  ;;
run)
  [ -x "$STAGE/moe_gpu" ] || { echo "run 'scripts/gpu-moe.sh stage' first and carry $STAGE" >&2; exit 2; }
  use_gpu_torch
  LOG=${OUT:-/tmp}
  card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
  echo "$card"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$LOG/memory.csv" &
  sampler=$!
  trap 'kill $sampler 2>/dev/null || true' EXIT
  "$STAGE/moe_gpu" "$NEW" | tee "$LOG/moe.json"
  kill $sampler 2>/dev/null || true
  peak=$(sort -n "$LOG/memory.csv" | tail -n 1)
  python3 - "$LOG/moe.json" "$card" "$peak" > "$LOG/moe.md" <<'PY'
import datetime, json, sys
r = json.load(open(sys.argv[1]))
p = r["page"]
print(f"### {datetime.date.today()}: SPHINX-MoE (full size, random bf16) on {sys.argv[2]}\n")
print(f"{r['params'] / 1e9:.1f} B parameters, {r['weight_bytes'] / 2**30:.1f} GiB of weights, "
      f"made on the card in {r['build_s']:.1f} s; peak memory.used {int(sys.argv[3]) / 1024:.1f} GiB "
      f"(nvidia-smi, every 200 ms).\n")
print("| views | sequence | encode s | prefill s | decode s (tokens) | page s |")
print("|---|---|---|---|---|---|")
print(f"| {p['views']} | {p['seq_len']} | {p['encode_s']:.3f} | {p['prefill_s']:.3f} | "
      f"{p['decode_s']:.3f} ({p['new_tokens']}) | {p['page_s']:.3f} |")
PY
  append_result "$LOG/moe.md"
  ;;
*)
  echo "usage: scripts/gpu-moe.sh stage|run" >&2
  exit 2
  ;;
esac
