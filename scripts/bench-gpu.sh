#!/usr/bin/env bash
# GPU throughput of the worker's batch path vs Hugging Face transformers `generate`.
#
#   scripts/bench-gpu.sh stage   here: release-build engine/worker/examples/bench_gpu and
#                                copy it (stripped) into target/bench-gpu/
#   scripts/bench-gpu.sh run     on the lent GPU (device tool, carry ["target/bench-gpu"]):
#                                runs ours and scripts/bench_gpu_reference.py on the same
#                                sequence lengths, prints a table with the ratios and the
#                                price per million pages, and appends it, dated, with the
#                                card's name, to docs/performance.md ($OUT/performance.md
#                                when the checkout is read-only there). It keeps within
#                                BUDGET seconds (540: the device tool's per-call limit is
#                                600): ours gets 55% of it, the peers what is left less
#                                20 s for the table; a part over its share is stopped, the
#                                table keeps what it measured and says what was cut
#                                (cut.txt). MODES=graphs or fewer SIZES shorten it. Its
#                                files (meta.json, ours.jsonl, hf.jsonl) go to $OUT as
#                                they are written.
#   scripts/bench-gpu.sh table DIR
#                                the table again from those files, e.g. of a run cut
#                                short (scripts/bench_gpu_table.py).
#
# Ours: SPHINX-Tiny-1k-sized model (TinyLlama-1.1B + ConvNeXt-XXL + DINOv2-g/14), random
# weights, bf16; letter pages (5 views), one OCR task each, NEW tokens per page (256);
# batch sizes 1/8/32/64, decoding eagerly, eagerly with the static shapes graphs replay,
# and with the decode step replayed from CUDA graphs (`--cuda-graphs`; the script checks
# graphs give every page the text of the static eager run). Peers: the same LLM shape in
# transformers, from input embeddings of our sequence length, greedy, SDPA, the same
# number of new tokens, eager with its dynamic cache and with its static cache +
# torch.compile. Ours is timed end to end (encoders included); the peers run the LLM
# only, so the ratios favour them. The encoders get their own table: our encode phase
# against timm's ConvNeXt-XXL (channels-last) + transformers' DINOv2-g on the same 5
# views per page.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-common.sh
source scripts/gpu-common.sh
STAGE=target/bench-gpu
NEW=${NEW:-256}
SIZES=${SIZES:-"1 8 32 64"}
# Our decode modes: eager, static (eager, graph shapes), graphs (CUDA graphs of the step).
MODES=${MODES:-eager,static,graphs}
# $ per GPU-hour for the price per million pages.
PRICE=${PRICE:-2.5}
# Seconds for the whole `run`, table included.
BUDGET=${BUDGET:-540}

# within SECONDS FILE NAME CMD...: runs CMD, its output tee'd to FILE, stopped after
# SECONDS; a stop or a failure is recorded in $LOG/cut.txt (the table prints it) and the
# run goes on with what was measured.
within() {
  local secs=$1 file=$2 name=$3 rc=0
  shift 3
  if [ "$secs" -lt 10 ]; then
    echo "$name: not run, the budget (BUDGET=$BUDGET s) was spent" | tee -a "$LOG/cut.txt" >&2
    return 0
  fi
  timeout --kill-after=10 "$secs" "$@" | tee "$file" || rc=${PIPESTATUS[0]}
  case $rc in
    0) ;;
    124 | 137) echo "$name: stopped at its share of the budget, $secs s (BUDGET=$BUDGET s)" | tee -a "$LOG/cut.txt" >&2 ;;
    *) echo "$name: FAILED (exit $rc)" | tee -a "$LOG/cut.txt" >&2; failed=1 ;;
  esac
}

case "${1:-}" in
stage)
  stage_example sphinx-worker bench_gpu "$STAGE"
  # The CUDA-graph shim's own capture/replay test (engine/cuda-graph/tests/replay.rs).
  test_bin=$(cargo test --release --locked -p sphinx-cuda-graph --test replay --no-run --message-format=json \
    | python3 -c 'import json,sys;print([m["executable"] for m in map(json.loads,sys.stdin) if m.get("executable")][-1])')
  cp "$test_bin" "$STAGE/graph_replay" && strip "$STAGE/graph_replay"
  du -sh "$STAGE"
  ;;
run)
  [ -x "$STAGE/bench_gpu" ] || { echo "run 'scripts/bench-gpu.sh stage' first and carry $STAGE" >&2; exit 2; }
  use_gpu_torch
  LOG=${OUT:-/tmp}
  card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
  echo "$card"
  python3 -c 'import datetime,json,sys;json.dump({"date":str(datetime.date.today()),"card":sys.argv[1],"new":int(sys.argv[2]),"price":float(sys.argv[3])},open(sys.argv[4],"w"))' \
    "$card" "$NEW" "$PRICE" "$LOG/meta.json"
  start=$SECONDS
  rm -f "$LOG/cut.txt"
  failed=0
  # The shim first (seconds): if capture or replay is broken here, say so and bench without graphs.
  if ! timeout 60 "$STAGE/graph_replay" 2>&1 | tee "$LOG/graph_replay.txt"; then
    echo "CUDA graph replay test FAILED on this card: benchmarking without graphs" | tee -a "$LOG/cut.txt" >&2
    MODES=eager,static
  fi
  # shellcheck disable=SC2086
  within $(((BUDGET - (SECONDS - start)) * 55 / 100)) "$LOG/ours.jsonl" "ours ($MODES)" \
    "$STAGE/bench_gpu" "${TMPDIR:-/tmp}" "$NEW" "$MODES" $SIZES
  # The peers run on the sequence length ours fed its LLM.
  seq_len=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["seq_len"])' "$LOG/ours.jsonl" 2>/dev/null || true)
  if [ -n "$seq_len" ]; then
    # shellcheck disable=SC2086
    within $((BUDGET - (SECONDS - start) - 20)) "$LOG/hf.jsonl" "peers" \
      python3 scripts/bench_gpu_reference.py "$seq_len" "$NEW" $SIZES
  else
    echo "peers: not run, ours measured no batch (no sequence length to give them)" | tee -a "$LOG/cut.txt" >&2
  fi
  python3 scripts/bench_gpu_table.py "$LOG" > "$LOG/table.md"
  append_result "$LOG/table.md"
  echo "run took $((SECONDS - start)) s of BUDGET=$BUDGET"
  exit "$failed"
  ;;
table)
  # The table again from a run's files (e.g. the partial ones of a run cut short).
  [ -f "${2:-}/meta.json" ] || { echo "usage: scripts/bench-gpu.sh table DIR (DIR/meta.json, ours.jsonl, hf.jsonl)" >&2; exit 2; }
  python3 scripts/bench_gpu_table.py "$2"
  ;;
*)
  echo "usage: scripts/bench-gpu.sh stage|run|table DIR" >&2
  exit 2
  ;;
esac
