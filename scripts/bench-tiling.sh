#!/usr/bin/env bash
# Benchmark: `sphinx tile` (release, one thread) against the Python reference way
# (PyMuPDF render + PIL pad-to-square + BICUBIC resize + split, scripts/bench_tiling_reference.py)
# on the same pages in the same run. Prints pages/s of both and the ratio.
#
#   ./scripts/bench-tiling.sh [PDF folder (default: tests/data/corpus)] [repeats (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
source scripts/env.sh
dir=${1:-tests/data/corpus}
repeat=${2:-3}
cargo build --release -q -p sphinx-worker
mapfile -t pdfs < <(find "$dir" -maxdepth 1 -name '*.pdf' | sort)
[ "${#pdfs[@]}" -gt 0 ] || { echo "no PDFs in $dir" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Rust: one thread, output to a scratch folder, best of $repeat runs.
best_rust=0
for i in $(seq "$repeat"); do
  rm -rf "$tmp/out"
  t0=$(date +%s.%N)
  ./target/release/sphinx tile --threads 1 --quiet --out "$tmp/out" "${pdfs[@]}" >"$tmp/summary"
  t1=$(date +%s.%N)
  pages=$(sed -n 's/.*pages: \([0-9]*\).*/\1/p' "$tmp/summary")
  rate=$(python3 -c "print($pages/($t1-$t0))")
  best_rust=$(python3 -c "print(max($best_rust,$rate))")
done

best_py=0
for i in $(seq "$repeat"); do
  rate=$(python scripts/bench_tiling_reference.py "${pdfs[@]}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["pages_per_s"])')
  best_py=$(python3 -c "print(max($best_py,$rate))")
done

python3 - "$best_rust" "$best_py" "$pages" <<'PY'
import sys
rust, py, pages = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"pages per run: {pages} (best of runs, one thread each)")
print(f"| implementation | pages/s |")
print(f"|---|---|")
print(f"| sphinx tile (Rust, hayro) | {rust:.1f} |")
print(f"| Python reference (PyMuPDF + PIL) | {py:.1f} |")
print(f"| ratio | {rust/py:.2f}x |")
PY
