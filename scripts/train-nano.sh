#!/usr/bin/env bash
# Trains the nano SPHINX-X (configs/nano.json) from random weights on synthetic pages of
# its kind, scores it on held-out pages with `sphinx eval`, draws the learning curve and
# prints the figures the README quotes. One script for the CPU and a GPU: the same pages,
# config, steps and schedule (a GPU only makes the steps faster).
#
#   scripts/train-nano.sh                 build, synth, train, eval
#   INSTALL=1 scripts/train-nano.sh       ... and install the model as models/sphinx-nano/
#   RESUME=1 scripts/train-nano.sh        keep WORK's pages, continue from the last checkpoint
#
# Where there is no Rust toolchain (a lent GPU machine), build here, carry the binary and
# pass it: SPHINX=path/to/sphinx WORK=$OUT/nano scripts/train-nano.sh (libtorch is taken
# from the Python torch there).
#
# The recipe (docs/nano.md, third attempt): pages whose one line starts at the same pixel
# in a monospaced face at one size (PAGE_FLAGS), so the k-th answer character is always
# read from the same image column; the character tokenizer with one piece per fixed
# prompt phrase (`char-prompts`: the OCR prompt is 6 tokens instead of ~265, so the
# answer looks back ~200 positions instead of ~470); the random encoders frozen (trained,
# they flatten the image before the LLM learns to read it). Training uses seed 7, pages
# 0..TRAIN_PAGES; held-out pages are seed 7 from index 1,000,000 on, a range training
# never touches.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-target/train-nano}
PAGE_FLAGS=(--page 256x64 --max-lines 1 --min-em 27 --max-em 27 --no-shapes --ocr-only
  --face mono --line-start 16 --max-chars 7)
TRAIN_PAGES=${TRAIN_PAGES:-4000}
HELDOUT_PAGES=${HELDOUT_PAGES:-200}
HELDOUT_FIRST=1000000
STEPS=${STEPS:-800}
BATCH=16
LR=2e-3
CHECKPOINT_EVERY=100
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
elif python3 -c 'import torch' 2> /dev/null; then
  TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
started=$(date +%s)
if [ "${RESUME:-0}" != 1 ] || [ ! -f "$WORK/train/conversations.jsonl" ]; then
  rm -rf "$WORK"
  mkdir -p "$WORK"
  "$SPHINX" synth --seed 7 --count "$TRAIN_PAGES" "${PAGE_FLAGS[@]}" --out "$WORK/train" --quiet
  "$SPHINX" synth --seed 7 --count "$HELDOUT_PAGES" --first-index "$HELDOUT_FIRST" "${PAGE_FLAGS[@]}" \
    --out "$WORK/heldout" --quiet
fi
data=$(cd "$WORK" && pwd)
name=sphinx-nano
out="$WORK/final"
cat > "$WORK/$name.json" <<JOB
{
  "run": "$name",
  "model": {"config": "configs/nano.json", "seed": 0, "tokenizer": "char-prompts"},
  "datasets": [{"path": "$data/train/conversations.jsonl", "weight": 1.0}],
  "steps": $STEPS, "batch_size": $BATCH, "grad_accum": 1,
  "lr": $LR, "min_lr": $LR, "warmup_steps": 10, "weight_decay": 0.02, "clip_grad": 1.0,
  "checkpoint_every": $CHECKPOINT_EVERY, "seed": 7, "max_text_tokens": 512,
  "train_vision": false, "export_bf16": true, "cache_pages": $TRAIN_PAGES
}
JOB
resume=()
if [ "${RESUME:-0}" = 1 ] && [ -d "$out/checkpoints" ]; then
  resume=(--resume)
else
  rm -rf "$out"
  : > "$WORK/$name.jsonl"
fi
train_started=$(date +%s)
set +e
"$SPHINX" train --config "$WORK/$name.json" --out "$out" "${resume[@]}" >> "$WORK/$name.jsonl"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "training stopped (status $rc); RESUME=1 $0 continues from the last checkpoint" >&2
  exit "$rc"
fi
train_s=$(($(date +%s) - train_started))
model="$out/models/$name"
# Held-out CER along the run: each checkpoint's trainable weights (the encoders are frozen,
# so they are the projector, image tags and LLM: laid over the exported model's encoders)
# on the first 50 held-out pages.
: > "$WORK/curve-cer.jsonl"
for ckpt in "$out"/checkpoints/$name/step-*/; do
  step=$((10#$(basename "$ckpt" | sed 's/step-//')))
  [ "$step" -lt "$STEPS" ] || continue
  tmp="$WORK/ckpt-model"
  rm -rf "$tmp" && mkdir -p "$tmp"
  python3 - "$model/model.safetensors" "$ckpt/trainable.safetensors" "$tmp/model.safetensors" <<'PY'
import sys
from safetensors.torch import load_file, save_file
full, part = load_file(sys.argv[1]), load_file(sys.argv[2])
full.update({k: v.to(full[k].dtype) for k, v in part.items()})
save_file(full, sys.argv[3])
PY
  cp "$model/config.json" "$model/tokenizer.json" "$tmp/"
  "$SPHINX" eval --cpu --model "$tmp" --data "$WORK/heldout/conversations.jsonl" --limit 50 \
    --batch 50 --max-new-tokens 64 |
    python3 -c "import json,sys; e=json.load(sys.stdin); print(json.dumps({'step': $step, 'cer': e['cer'], 'pages': e['pages']}))" \
      >> "$WORK/curve-cer.jsonl"
done
"$SPHINX" eval --cpu --model "$model" --data "$WORK/heldout/conversations.jsonl" \
  --batch 50 --max-new-tokens 64 --predictions "$WORK/predictions.jsonl" > "$WORK/eval.json"
python3 - "$WORK" "$name" "$train_s" "$(($(date +%s) - started))" <<'PY'
import json, sys
work, name, train_s, wall_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ev = json.load(open(f"{work}/eval.json"))
rows = [json.loads(l) for l in open(f"{work}/{name}.jsonl") if l.startswith("{")]
last = rows[-1]["step"]
with open(f"{work}/metrics.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
    for l in open(f"{work}/curve-cer.jsonl"):
        f.write(l)
    f.write(json.dumps({"step": last, "cer": ev["cer"], "pages": ev["pages"]}) + "\n")
print(f"steps {last}, final loss {rows[-1]['loss']:.4f}, "
      f"median step {sorted(r['step_s'] for r in rows)[len(rows) // 2]:.2f} s")
print(f"training wall time {train_s / 60:.1f} min, whole script {wall_s / 60:.1f} min")
print(f"held-out ({ev['pages']} pages): CER {100 * ev['cer']:.2f}%, WER {100 * ev['wer']:.2f}%, "
      f"exact lines {100 * ev['exact_line_rate']:.1f}%, {ev['pages_per_s']:.2f} pages/s")
PY
python3 scripts/plot_curve.py "$WORK/learning-curve.png" "nano SPHINX-X from random weights" \
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
