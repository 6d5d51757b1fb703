#!/usr/bin/env bash
# Trains the nano SPHINX-X (configs/nano.json) from random weights on synthetic pages of
# its kind, scores it on held-out pages with `sphinx eval`, draws the learning curve and
# prints the figures the README quotes. One script for the CPU and a GPU: the same pages,
# config, curriculum, steps and schedule (a GPU only makes the steps faster).
#
#   scripts/train-nano.sh                 build, synth, train, eval
#   INSTALL=1 scripts/train-nano.sh       ... and install the model as models/sphinx-nano/
#   RESUME=1 scripts/train-nano.sh        keep WORK's pages and finished stages, continue
#
# Where there is no Rust toolchain (a lent GPU machine), build here, carry the binary and
# pass it: SPHINX=path/to/sphinx WORK=$OUT/nano scripts/train-nano.sh (libtorch is taken
# from the Python torch there).
#
# Curriculum (docs/nano.md): trained on fresh pages from the start, the model sits on the
# blind-language-model plateau (the same answer for every page) for hundreds of steps.
# Memorising a handful of pages is only possible through the image, so the stages are
# growing pools of the training pages -- 16, 64, 256, 1024 -- each from the previous
# stage's model, then all TRAIN_PAGES pages for FINAL_STEPS steps. The final stage has a
# constant learning rate after its warmup, so a run stopped at a checkpoint of step N is
# exactly the run with FINAL_STEPS=N (RESUME=1 FINAL_STEPS=N exports it).
#
# The nano's kind of page, for training and held-out evaluation alike: PAGE_FLAGS. Training
# uses seed 7, pages 0..TRAIN_PAGES; held-out pages are seed 7 from index 1,000,000 on, a
# range training never touches.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-target/train-nano}
PAGE_FLAGS=(--page 256x64 --max-lines 1 --min-em 22 --max-em 28 --no-shapes --ocr-only)
TRAIN_PAGES=${TRAIN_PAGES:-10000}
HELDOUT_PAGES=${HELDOUT_PAGES:-200}
HELDOUT_FIRST=1000000
# pool:steps of the growing-pool stages (the first from random weights).
POOL_STAGES=${POOL_STAGES:-16:50 64:60 256:100 1024:100}
FINAL_STEPS=${FINAL_STEPS:-300}
BATCH=16
LR=1.5e-3
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

# job <run> <model json> <dataset> <steps> <lr> <min_lr> <warmup> <cache> <checkpoint_every> <bf16>
job() {
  cat <<JOB
{
  "run": "$1",
  "model": $2,
  "datasets": [{"path": "$3", "weight": 1.0}],
  "steps": $4, "batch_size": $BATCH, "grad_accum": 1,
  "lr": $5, "min_lr": $6, "warmup_steps": $7, "weight_decay": 0.02, "clip_grad": 1.0,
  "checkpoint_every": $9, "seed": 7, "max_text_tokens": 512,
  "train_vision": true, "export_bf16": ${10}, "cache_pages": $8
}
JOB
}
: > "$WORK/stages.txt"
train_started=$(date +%s)
prev=""
offset=0
for stage in $POOL_STAGES; do
  n=${stage%%:*}
  steps=${stage##*:}
  name=pool-$n
  out="$WORK/$name"
  if [ -z "$prev" ]; then
    # From random weights: a short warmup, cosine to 1e-4.
    model='{"config": "configs/nano.json", "seed": 0, "tokenizer": "char"}'
    rates=(2e-3 1e-4)
  else
    model="{\"dir\": \"$prev\"}"
    rates=($LR $LR)
  fi
  if [ "${RESUME:-0}" != 1 ] || [ ! -f "$out/models/$name/model.safetensors" ]; then
    head -n "$n" "$data/train/conversations.jsonl" > "$data/train/pool-$n.jsonl"
    job "$name" "$model" "$data/train/pool-$n.jsonl" "$steps" "${rates[0]}" "${rates[1]}" 5 "$n" 100000 false \
      > "$WORK/$name.json"
    rm -rf "$out"
    "$SPHINX" train --config "$WORK/$name.json" --out "$out" > "$WORK/$name.jsonl"
  fi
  echo "$name $offset" >> "$WORK/stages.txt"
  offset=$((offset + steps))
  prev=$(cd "$out/models/$name" && pwd)
done
name=sphinx-nano
out="$WORK/final"
job "$name" "{\"dir\": \"$prev\"}" "$data/train/conversations.jsonl" "$FINAL_STEPS" $LR $LR 5 "$TRAIN_PAGES" 100 true \
  > "$WORK/$name.json"
resume=()
if [ "${RESUME:-0}" = 1 ] && [ -d "$out/checkpoints" ]; then
  resume=(--resume)
else
  rm -rf "$out"
  : > "$WORK/$name.jsonl"
fi
set +e
"$SPHINX" train --config "$WORK/$name.json" --out "$out" "${resume[@]}" >> "$WORK/$name.jsonl"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "training stopped (status $rc); RESUME=1 FINAL_STEPS=<step it stopped at> $0 exports it" >&2
  exit "$rc"
fi
echo "$name $offset" >> "$WORK/stages.txt"
train_s=$(($(date +%s) - train_started))
model="$out/models/$name"
# Held-out CER along the final stage: its checkpoints (all weights train, so a
# checkpoint's trainable.safetensors is the whole model) on the first 50 held-out pages.
: > "$WORK/curve-cer.jsonl"
for ckpt in "$out"/checkpoints/$name/step-*/; do
  step=$((10#$(basename "$ckpt" | sed 's/step-//')))
  [ "$step" -lt "$FINAL_STEPS" ] || continue
  tmp="$WORK/ckpt-model"
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$ckpt/trainable.safetensors" "$tmp/model.safetensors"
  cp "$model/config.json" "$model/tokenizer.json" "$tmp/"
  "$SPHINX" eval --cpu --model "$tmp" --data "$WORK/heldout/conversations.jsonl" --limit 50 \
    --batch 50 --max-new-tokens 128 |
    python3 -c "import json,sys; e=json.load(sys.stdin); print(json.dumps({'step': $((offset + step)), 'cer': e['cer'], 'pages': e['pages']}))" \
      >> "$WORK/curve-cer.jsonl"
done
"$SPHINX" eval --cpu --model "$model" --data "$WORK/heldout/conversations.jsonl" \
  --batch 50 --max-new-tokens 128 --predictions "$WORK/predictions.jsonl" > "$WORK/eval.json"
# One learning curve over all stages (steps counted from the first), CER dots added.
python3 - "$WORK" "$train_s" "$(($(date +%s) - started))" <<'PY'
import json, sys
work, train_s, wall_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ev = json.load(open(f"{work}/eval.json"))
rows = []
for line in open(f"{work}/stages.txt"):
    name, offset = line.split()
    for l in open(f"{work}/{name}.jsonl"):
        if l.startswith("{"):
            r = json.loads(l)
            r["stage"], r["step"] = name, r["step"] + int(offset)
            rows.append(r)
last = rows[-1]["step"]
with open(f"{work}/metrics.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
    for l in open(f"{work}/curve-cer.jsonl"):
        f.write(l)
    f.write(json.dumps({"step": last, "cer": ev["cer"], "pages": ev["pages"]}) + "\n")
print(f"steps {last} (all stages), final loss {rows[-1]['loss']:.4f}, "
      f"median step {sorted(r['step_s'] for r in rows)[len(rows) // 2]:.2f} s")
print(f"training wall time {train_s / 60:.1f} min, whole script {wall_s / 60:.1f} min")
print(f"held-out ({ev['pages']} pages): CER {100 * ev['cer']:.2f}%, WER {100 * ev['wer']:.2f}%, "
      f"exact lines {100 * ev['exact_line_rate']:.1f}%, {ev['pages_per_s']:.2f} pages/s")
PY
python3 scripts/plot_curve.py "$WORK/learning-curve.png" "nano SPHINX-X: growing pools, then all pages" \
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
