#!/usr/bin/env bash
# Trains the nano SPHINX-X (configs/nano.json, ~10 M parameters, character vocabulary)
# on synthetic pages for at most 10 minutes of one GPU, then scores its OCR on held-out
# synthetic pages with `sphinx eval` (character error rate) and plots the loss curve.
#
# Two halves, because the GPU machine has PyTorch but no Rust toolchain (../shared/GPU.md):
#   scripts/train-nano-gpu.sh stage   here: release-build `sphinx`, copy it and the job
#                                     spec into target/train-nano/
#   scripts/train-nano-gpu.sh run     there (device tool, carry ["target/train-nano"],
#                                     timeout ~600 s): makes the pages with the binary,
#                                     trains under `timeout`, evaluates; results in $OUT.
# The budget: synth ~1 min, training TRAIN_SECONDS (default 420; SIGTERM at the limit
# makes the trainer checkpoint, and the run then exports from that checkpoint), eval ~1 min.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=target/train-nano

case "${1:-}" in
stage)
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
  cargo build --release -p sphinx-worker
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  cp target/release/sphinx "$STAGE/"
  # Debug line tables make it large; the device tool carries at most 64 MiB.
  strip "$STAGE/sphinx"
  cp configs/nano.json "$STAGE/"
  du -sh "$STAGE"
  ;;
run)
  [ -x "$STAGE/sphinx" ] || { echo "no $STAGE/sphinx: run 'scripts/train-nano-gpu.sh stage' first and carry $STAGE" >&2; exit 2; }
  TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  RES=${OUT:-/tmp/train-nano-out}
  WORK=${TMPDIR:-/tmp}/train-nano
  mkdir -p "$RES" "$WORK"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  SPHINX="$STAGE/sphinx"
  TRAIN_PAGES=${TRAIN_PAGES:-3000}
  "$SPHINX" synth --seed 7 --count "$TRAIN_PAGES" --out "$WORK/train" --quiet
  "$SPHINX" synth --seed 7 --count 50 --first-index 1000000 --out "$WORK/heldout" --quiet
  cat > "$WORK/job.json" <<JOB
{
  "run": "nano-synth",
  "model": {"config": "$STAGE/nano.json", "seed": 0, "tokenizer": "char"},
  "datasets": [{"path": "$WORK/train/conversations.jsonl", "weight": 1.0}],
  "steps": ${STEPS:-3000}, "batch_size": 8, "grad_accum": 1,
  "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "weight_decay": 0.02, "clip_grad": 1.0,
  "checkpoint_every": 500, "seed": 7, "max_text_tokens": 2800,
  "train_vision": true, "export_bf16": true, "cache_pages": $TRAIN_PAGES
}
JOB
  set +e
  timeout --signal=TERM --kill-after=60 "${TRAIN_SECONDS:-420}" \
    "$SPHINX" train --config "$WORK/job.json" --out "$WORK/out" > "$RES/metrics.jsonl"
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "training stopped early (status $rc); exporting the last checkpoint with steps = its step"
    last=$(tail -1 "$RES/metrics.jsonl" | python3 -c 'import json,sys;print(json.load(sys.stdin)["step"])')
    python3 - "$WORK/job.json" "$last" <<'PY'
import json, sys
p, last = sys.argv[1], int(sys.argv[2])
j = json.load(open(p)); j["steps"] = last; j["warmup_steps"] = min(j["warmup_steps"], last)
json.dump(j, open(p, "w"))
PY
    "$SPHINX" train --config "$WORK/job.json" --out "$WORK/out" --resume >> "$RES/metrics.jsonl"
  fi
  ls -la "$WORK/out/models/nano-synth"
  # The trained model comes back with the results (bf16, ~20 MB).
  cp -r "$WORK/out/models/nano-synth" "$RES/model"
  "$SPHINX" eval --model "$WORK/out/models/nano-synth" --data "$WORK/heldout/conversations.jsonl" \
    --limit 50 | tee "$RES/eval.json"
  python3 - "$RES" <<'PY'
import json, sys
res = sys.argv[1]
rows = [json.loads(l) for l in open(f"{res}/metrics.jsonl") if l.startswith("{")]
try:
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    plt.figure(figsize=(6, 3.5)); plt.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    plt.yscale("log"); plt.xlabel("step"); plt.ylabel("loss (nats/char)"); plt.title("nano SPHINX-X on synthetic pages")
    plt.tight_layout(); plt.savefig(f"{res}/learning-curve.png", dpi=120)
except ImportError:
    print("matplotlib missing: no plot (metrics.jsonl has the curve)")
print(f"steps {rows[-1]['step']}, final loss {rows[-1]['loss']:.4f}, "
      f"median tokens/s {sorted(r['tokens_per_s'] for r in rows)[len(rows)//2]:.0f}")
PY
  ;;
*)
  echo "usage: scripts/train-nano-gpu.sh stage|run" >&2
  exit 2
  ;;
esac
