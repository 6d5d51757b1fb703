#!/usr/bin/env bash
# Trains the nano SPHINX-X (configs/nano.json, ~10 M parameters, character vocabulary)
# on synthetic pages for at most 10 minutes of one GPU, then scores its OCR on held-out
# synthetic pages with `sphinx eval` (character error rate) and plots the loss curve.
# The pages are the nano's kind (`sphinx synth --max-lines 5 --min-em 24`: short pages of
# larger text), the same for training and held-out evaluation.
#
# Two halves, because the GPU machine has PyTorch but no Rust toolchain (../shared/GPU.md):
#   scripts/train-nano-gpu.sh stage   here: release-build `sphinx`, copy it and the job
#                                     spec into target/train-nano/
#   scripts/train-nano-gpu.sh run     there (device tool, carry ["target/train-nano"],
#                                     timeout ~600 s): makes the pages with the binary,
#                                     trains under `timeout`, evaluates; results in $OUT.
#   scripts/train-nano-gpu.sh adopt DIR   here, with DIR the run's returned files: installs
#                                     the model as models/sphinx-nano/ (the default model
#                                     of `sphinx run`) and scores it on the CPU: held-out
#                                     CER and pages/s into models/sphinx-nano/eval-cpu.json.
# The budget: synth ~20 s; a 30-step calibration run measures the step time so the real
# run's step count (and so its warmup + cosine schedule) fits TRAIN_SECONDS (default 420;
# should it still overrun, SIGTERM at the limit makes the trainer checkpoint and the run
# exports from that checkpoint); eval ~30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=target/train-nano
# The nano's pages and its held-out range (the same in `run` and `adopt`).
SYNTH_BOUNDS=${SYNTH_BOUNDS:---max-lines 5 --min-em 24}
HELDOUT=(--seed 7 --count 100 --first-index 1000000)

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
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi: CPU run"
  SPHINX="$STAGE/sphinx"
  TRAIN_PAGES=${TRAIN_PAGES:-8000}
  TRAIN_SECONDS=${TRAIN_SECONDS:-420}
  BATCH=${BATCH:-32}
  # shellcheck disable=SC2206 # word splitting of the bounds is the point
  PAGES=($SYNTH_BOUNDS)
  "$SPHINX" synth --seed 7 --count "$TRAIN_PAGES" "${PAGES[@]}" --out "$WORK/train" --quiet
  "$SPHINX" synth "${HELDOUT[@]}" "${PAGES[@]}" --out "$WORK/heldout" --quiet
  job() { # job <run> <steps> <warmup>
    cat <<JOB
{
  "run": "$1",
  "model": {"config": "$STAGE/nano.json", "seed": 0, "tokenizer": "char"},
  "datasets": [{"path": "$WORK/train/conversations.jsonl", "weight": 1.0}],
  "steps": $2, "batch_size": $BATCH, "grad_accum": 1,
  "lr": ${LR:-1.5e-3}, "min_lr": 5e-5, "warmup_steps": $3, "weight_decay": 0.02, "clip_grad": 1.0,
  "checkpoint_every": 500, "seed": 7, "max_text_tokens": 1024,
  "train_vision": true, "export_bf16": true, "cache_pages": $TRAIN_PAGES
}
JOB
  }
  # Calibration (unless STEPS is given): 30 steps (CALIBRATION_STEPS), their median step
  # time and the fixed start-up cost.
  if [ -z "${STEPS:-}" ]; then
    job calibrate "${CALIBRATION_STEPS:-30}" 2 > "$WORK/calibrate.json"
    t0=$(date +%s.%N)
    "$SPHINX" train --config "$WORK/calibrate.json" --out "$WORK/calibrate" > "$RES/calibrate.jsonl"
    t1=$(date +%s.%N)
    STEPS=$(python3 - "$RES/calibrate.jsonl" "$t0" "$t1" "$TRAIN_SECONDS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
wall, budget = float(sys.argv[3]) - float(sys.argv[2]), float(sys.argv[4])
step = sorted(r["step_s"] for r in rows)[len(rows) // 2]
fixed = max(0.0, wall - sum(r["step_s"] for r in rows))
steps = int((budget - fixed - 15) / step)
print(f"calibration: {step * 1000:.0f} ms/step, start-up {fixed:.1f} s -> {steps} steps", file=sys.stderr)
print(max(steps, 50))
PY
)
  fi
  job nano-synth "$STEPS" $((STEPS / 15)) > "$WORK/job.json"
  set +e
  timeout --signal=TERM --kill-after=60 "$((TRAIN_SECONDS + 30))" \
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
  # The trained model comes back with the results (bf16, ~20 MB) as a tar in 15 MiB parts
  # (the device tool returns files of at most 16 MiB):
  #   cat model.tar.part-* | tar -x   ->  nano-synth/
  tar -C "$WORK/out/models" -cf - nano-synth | split -b 15M - "$RES/model.tar.part-"
  "$SPHINX" eval --model "$WORK/out/models/nano-synth" --data "$WORK/heldout/conversations.jsonl" \
    --limit "${EVAL_PAGES:-100}" --batch 50 --max-new-tokens 768 --predictions "$RES/predictions.jsonl" | tee "$RES/eval.json"
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
adopt)
  src=${2:?usage: scripts/train-nano-gpu.sh adopt <folder holding model.tar.part-*>}
  compgen -G "$src/model.tar.part-*" > /dev/null || { echo "no $src/model.tar.part-*" >&2; exit 2; }
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
  unpacked=$(mktemp -d)
  trap 'rm -rf "$unpacked"' EXIT
  cat "$src"/model.tar.part-* | tar -x -C "$unpacked"
  for f in config.json model.safetensors tokenizer.json; do
    [ -f "$unpacked/nano-synth/$f" ] || { echo "the returned model has no $f" >&2; exit 2; }
  done
  rm -rf models/sphinx-nano
  mkdir -p models
  mv "$unpacked/nano-synth" models/sphinx-nano
  cargo build --release -q -p sphinx-worker
  # shellcheck disable=SC2206
  PAGES=($SYNTH_BOUNDS)
  target/release/sphinx synth "${HELDOUT[@]}" "${PAGES[@]}" --out target/nano-heldout --quiet
  target/release/sphinx eval --cpu --model models/sphinx-nano \
    --data target/nano-heldout/conversations.jsonl --limit "${EVAL_PAGES:-100}" --batch 8 \
    --max-new-tokens 768 | tee models/sphinx-nano/eval-cpu.json
  du -sh models/sphinx-nano
  ;;
*)
  echo "usage: scripts/train-nano-gpu.sh stage|run|adopt DIR" >&2
  exit 2
  ;;
esac
