#!/usr/bin/env bash
# Demo: installs what is missing, builds `sphinx`, then runs the whole pipeline
# (tile -> model -> results) on the bundled sample documents into out/demo/, with box
# overlays and every result format (JSON, text, hOCR, ALTO, searchable PDF), and unpacks
# one page bundle into viewable PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release -q -p sphinx-worker -p sphinx-core
out=out/demo
rm -rf "$out"
status=0
./target/release/sphinx run samples/*.pdf samples/synthetic/images/*.png --out "$out" --overlays \
  --formats all || status=$?
# 2 = some document failed (listed above); anything else is an error.
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then exit "$status"; fi
first=$(find "$out/work" -name 'page-0000.bundle' | sort | head -n 1)
./target/release/sphinx tile --extract "$first" "$out/views" > /dev/null
# What the model read on the synthetic samples (held-out pages of the nano's kind), next to
# the reference, and the CER over them.
model=models/sphinx-nano
[ -f "$model/model.safetensors" ] || model="$out/.models/random-untrained-nano"
./target/release/sphinx eval --cpu --model "$model" --data samples/synthetic/conversations.jsonl \
  --max-new-tokens 128 --predictions "$out/synthetic-predictions.jsonl" > "$out/synthetic-eval.json"
python3 - "$out" "$model" <<'PY'
import json, os, sys
out, model = sys.argv[1], sys.argv[2]
print(f"\nsamples/synthetic/ read by {model}:")
print(f"{'page':<14} {'reference':<28} {'model read':<40} edits  confidence")
for line in open(f"{out}/synthetic-predictions.jsonl"):
    r = json.loads(line)
    said = repr(r["hypothesis"])
    said = said if len(said) <= 40 else said[:37] + "..."
    conf = "" if r.get("confidence") is None else f"{r['confidence']:.3f}"
    print(f"{os.path.basename(r['image']):<14} {r['reference']!r:<28} {said:<40} {r['edits']:<6} {conf}")
e = json.load(open(f"{out}/synthetic-eval.json"))
print(f"CER {100 * e['cer']:.1f}% over {e['reference_chars']} characters "
      f"(WER {100 * e['wer']:.1f}%, exact lines {100 * e['exact_line_rate']:.0f}%)")
PY
echo
echo "Per input:         $out/documents.jsonl (its doc_id, status and result files)"
echo "Page results:      $out/results/<doc_id>/page-NNNN.json (merged: $out/results/<doc_id>.json)"
echo "Archive formats:   $out/results/<doc_id>.txt, .hocr (hOCR 1.2), .alto.xml (ALTO v4), .pdf (searchable)"
echo "Box overlays:      $out/overlays/<doc_id>/page-NNNN.png"
echo "Page bundles:      $out/work/<doc_id>/page-NNNN.bundle; one unpacked into $out/views/"
exit "$status"
