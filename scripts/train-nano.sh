#!/usr/bin/env bash
# Trains the nano SPHINX-X (configs/nano.json) from random weights on synthetic pages of
# its kind, scores it on held-out pages with `sphinx eval`, draws the learning curve and
# prints the figures the README quotes. One script for the CPU and a GPU: the same pages,
# config, steps and schedule (a GPU only makes the steps faster).
#
#   scripts/train-nano.sh                 build, synth, train, eval (CPU: ~TBD min on 2 cores)
#   INSTALL=1 scripts/train-nano.sh       ... and install the model as models/sphinx-nano/
#
# Where there is no Rust toolchain (the lent GPU machine), build here and pass the binary:
#   SPHINX=path/to/sphinx scripts/train-nano.sh
#
# Knobs (defaults are the committed model's run): WORK (scratch, default target/train-nano),
# TRAIN_PAGES, HELDOUT_PAGES, STEPS, BATCH, LR, THREADS (CPU threads, default 2).
#
# The nano's kind of page, for training and held-out evaluation alike (docs/nano.md):
# PAGE_FLAGS below. Training uses seed 7, pages 0..TRAIN_PAGES; the held-out pages are
# seed 7 from index 1,000,000 on, a range training never touches.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-target/train-nano}
PAGE_FLAGS=(--page 256x64 --max-lines 1 --min-em 22 --max-em 28 --no-shapes --ocr-only)
TRAIN_PAGES=${TRAIN_PAGES:-10000}
HELDOUT_PAGES=${HELDOUT_PAGES:-200}
HELDOUT_FIRST=1000000
STEPS=${STEPS:-3000}
BATCH=${BATCH:-16}
# A constant learning rate after a fixed warmup (min_lr = lr): the first N steps of any
# run are then exactly the run with STEPS=N, so a run cut short at a checkpoint is still
# reproducible by its step count.
LR=${LR:-1.5e-3}
WARMUP=${WARMUP:-30}
VISION_LR_SCALE=${VISION_LR_SCALE:-1.0}
POOL_PAGES=${POOL_PAGES:-64}
POOL_WEIGHT=${POOL_WEIGHT:-0.5}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-100}
THREADS=${THREADS:-2}
# Passive OpenMP waits: on a shared machine, spinning threads that lose their core turn
# every step's barriers into waits for the scheduler (measured on the 2-core machine with
# another job running: 14 s per step spinning, 3 s passive).
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if [ -z "${SPHINX:-}" ]; then
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
  cargo build --release -q -p sphinx-worker
  SPHINX=target/release/sphinx
fi
started=$(date +%s)
if [ "${RESUME:-0}" = 1 ] && [ -f "$WORK/job.json" ]; then
  # Continue a stopped run (SIGTERM / ctrl-c checkpoint) to STEPS: same pages, same spec
  # but for the step count (with the constant learning rate, any step count is the same
  # run cut at that step).
  python3 - "$WORK/job.json" "$STEPS" <<'PY'
import json, sys
path, steps = sys.argv[1], int(sys.argv[2])
job = json.load(open(path))
job["steps"] = steps
json.dump(job, open(path, "w"), indent=1)
PY
else
rm -rf "$WORK"
mkdir -p "$WORK"
"$SPHINX" synth --seed 7 --count "$TRAIN_PAGES" "${PAGE_FLAGS[@]}" --out "$WORK/train" --quiet
"$SPHINX" synth --seed 7 --count "$HELDOUT_PAGES" --first-index "$HELDOUT_FIRST" "${PAGE_FLAGS[@]}" \
  --out "$WORK/heldout" --quiet
# Half of every batch comes from a small pool of POOL_PAGES pages (the first of the
# training pages), seen again and again: telling them apart pays only through the image,
# which pushes the model off the blind-language-model plateau early (docs/nano.md);
# the other half are the fresh pages it learns to read in general from.
head -n "$POOL_PAGES" "$WORK/train/conversations.jsonl" > "$WORK/train/pool.jsonl"
cat > "$WORK/job.json" <<JOB
{
  "run": "sphinx-nano",
  "model": {"config": "configs/nano.json", "seed": 0, "tokenizer": "char"},
  "datasets": [{"path": "$WORK/train/conversations.jsonl", "weight": 1.0},
               {"path": "$WORK/train/pool.jsonl", "weight": $POOL_WEIGHT}],
  "steps": $STEPS, "batch_size": $BATCH, "grad_accum": 1,
  "lr": $LR, "min_lr": $LR, "warmup_steps": $WARMUP, "weight_decay": 0.02,
  "clip_grad": 1.0, "checkpoint_every": $CHECKPOINT_EVERY, "seed": 7, "max_text_tokens": 512,
  "train_vision": true, "vision_lr_scale": $VISION_LR_SCALE,
  "export_bf16": true, "cache_pages": $TRAIN_PAGES
}
JOB
fi
train_started=$(date +%s)
resume=()
[ "${RESUME:-0}" = 1 ] && resume=(--resume)
set +e
"$SPHINX" train --config "$WORK/job.json" --out "$WORK/out" "${resume[@]}" >> "$WORK/metrics.jsonl"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "training stopped (status $rc); RESUME=1 STEPS=<n> $0 continues it (to the step it stopped at: exports it)" >&2
  exit "$rc"
fi
train_s=$(( $(date +%s) - train_started ))
model="$WORK/out/models/sphinx-nano"
# Held-out CER along the way: every checkpoint (all weights train, so a checkpoint's
# trainable.safetensors is the whole model) on the first CURVE_PAGES held-out pages.
for ckpt in "$WORK"/out/checkpoints/sphinx-nano/step-*/; do
  step=$((10#$(basename "$ckpt" | sed 's/step-//')))
  [ "$step" -lt "$STEPS" ] || continue
  tmp="$WORK/ckpt-model"
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$ckpt/trainable.safetensors" "$tmp/model.safetensors"
  cp "$model/config.json" "$model/tokenizer.json" "$tmp/"
  "$SPHINX" eval --cpu --model "$tmp" --data "$WORK/heldout/conversations.jsonl" --limit "${CURVE_PAGES:-50}" \
    --batch 50 --max-new-tokens 128 | python3 -c "import json,sys; e=json.load(sys.stdin); print(json.dumps({'step': $step, 'cer': e['cer'], 'pages': e['pages']}))" >> "$WORK/curve-cer.jsonl"
done
"$SPHINX" eval --cpu --model "$model" --data "$WORK/heldout/conversations.jsonl" \
  --batch 50 --max-new-tokens 128 --predictions "$WORK/predictions.jsonl" > "$WORK/eval.json"
python3 - "$WORK" "$train_s" "$(( $(date +%s) - started ))" "$STEPS" <<'PY'
import json, sys
work, train_s, wall_s, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ev = json.load(open(f"{work}/eval.json"))
rows = [json.loads(l) for l in open(f"{work}/metrics.jsonl") if l.startswith("{")]
import os
with open(f"{work}/metrics.jsonl", "a") as f:
    if os.path.exists(f"{work}/curve-cer.jsonl"):
        f.write(open(f"{work}/curve-cer.jsonl").read())
    f.write(json.dumps({"step": steps, "cer": ev["cer"], "pages": ev["pages"]}) + "\n")
print(f"steps {rows[-1]['step']}, final loss {rows[-1]['loss']:.4f}, "
      f"median step {sorted(r['step_s'] for r in rows)[len(rows) // 2]:.2f} s")
print(f"training wall time {train_s / 60:.1f} min, whole script {wall_s / 60:.1f} min")
print(f"held-out ({ev['pages']} pages): CER {100 * ev['cer']:.2f}%, WER {100 * ev['wer']:.2f}%, "
      f"exact lines {100 * ev['exact_line_rate']:.1f}%, {ev['pages_per_s']:.2f} pages/s")
PY
python3 scripts/plot_curve.py "$WORK/learning-curve.png" "nano SPHINX-X, $STEPS steps x $BATCH pages" \
  "$WORK/metrics.jsonl:sphinx-nano" || echo "no plot (PIL missing?)"
cp "$WORK/metrics.jsonl" "$model/metrics.jsonl"
cp "$WORK/eval.json" "$model/eval-heldout.json"
if [ "${INSTALL:-0}" = 1 ]; then
  rm -rf models/sphinx-nano
  mkdir -p models
  cp -r "$model" models/sphinx-nano
  du -sh models/sphinx-nano
fi
echo "model: $model; curve: $WORK/learning-curve.png; predictions: $WORK/predictions.jsonl"
