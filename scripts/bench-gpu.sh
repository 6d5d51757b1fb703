#!/usr/bin/env bash
# GPU throughput of the worker's batch path vs Hugging Face transformers `generate`.
#
#   scripts/bench-gpu.sh stage   here: release-build engine/worker/examples/bench_gpu and
#                                copy it (stripped) into target/bench-gpu/
#   scripts/bench-gpu.sh run     on the lent GPU (device tool, carry ["target/bench-gpu"]):
#                                runs ours and scripts/bench_gpu_reference.py on the same
#                                sequence lengths, prints a table with the ratios.
#
# Ours: SPHINX-Tiny-1k-sized model (TinyLlama-1.1B + ConvNeXt-XXL + DINOv2-g/14), random
# weights, bf16; letter pages (5 views), one OCR task each, NEW tokens per page; batch
# sizes 1/8/32. Baseline: the same LLM shape in transformers, from input embeddings of
# our sequence length, greedy, KV cache, SDPA, the same number of new tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=target/bench-gpu
NEW=${NEW:-128}
SIZES=${SIZES:-"1 8 32"}

case "${1:-}" in
stage)
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
  cargo build --release -p sphinx-worker --example bench_gpu
  rm -rf "$STAGE" && mkdir -p "$STAGE"
  cp target/release/examples/bench_gpu "$STAGE/"
  strip "$STAGE/bench_gpu"
  du -sh "$STAGE"
  ;;
run)
  [ -x "$STAGE/bench_gpu" ] || { echo "run 'scripts/bench-gpu.sh stage' first and carry $STAGE" >&2; exit 2; }
  TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  LOG=${OUT:-/tmp}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  # shellcheck disable=SC2086
  "$STAGE/bench_gpu" "${TMPDIR:-/tmp}" "$NEW" $SIZES | tee "$LOG/ours.jsonl"
  seq_len=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["seq_len"])' "$LOG/ours.jsonl")
  # shellcheck disable=SC2086
  python3 scripts/bench_gpu_reference.py "$seq_len" "$NEW" $SIZES | tee "$LOG/hf.jsonl"
  python3 - "$LOG/ours.jsonl" "$LOG/hf.jsonl" <<'PY'
import json, sys
ours = {r["batch"]: r for r in map(json.loads, open(sys.argv[1]))}
hf = {r["batch"]: r for r in map(json.loads, open(sys.argv[2]))}
print("| batch | LLM seq len | ours pages/s (end to end) | ours LLM tokens/s | HF generate tokens/s | ratio (LLM) |")
print("|---|---|---|---|---|---|")
for b in sorted(ours):
    o, h = ours[b], hf[b]
    llm_tps = o["generated"] / (o["prefill_s"] + o["decode_s"])
    print(f"| {b} | {o['seq_len']} | {o['pages_per_s']:.2f} | {llm_tps:.0f} | {h['tokens_per_s']:.0f} | {llm_tps / h['tokens_per_s']:.2f}x |")
PY
  ;;
*)
  echo "usage: scripts/bench-gpu.sh stage|run" >&2
  exit 2
  ;;
esac
