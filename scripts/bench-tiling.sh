#!/usr/bin/env bash
# Benchmark: `sphinx tile` (release, one thread; documents rendered in a child process
# under hard limits, as in production) against the Python reference way (PyMuPDF render
# + PIL pad-to-square + BICUBIC resize + split, scripts/bench_tiling_reference.py) and
# against itself rendering in-process (`--render-in-process`, the cost of isolation), on
# the same pages in the same run. Prints pages/s of each and the ratios.
#
#   ./scripts/bench-tiling.sh [PDF folder (default: tests/data/corpus)] [repeats (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
source scripts/env.sh
dir=${1:-tests/data/corpus}
repeat=${2:-3}
cargo build --release -q -p sphinx-worker -p sphinx-core
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

best_inproc=0
for i in $(seq "$repeat"); do
  rm -rf "$tmp/out"
  t0=$(date +%s.%N)
  ./target/release/sphinx tile --threads 1 --quiet --render-in-process --out "$tmp/out" "${pdfs[@]}" >"$tmp/summary"
  t1=$(date +%s.%N)
  rate=$(python3 -c "print($pages/($t1-$t0))")
  best_inproc=$(python3 -c "print(max($best_inproc,$rate))")
done

best_py=0
for i in $(seq "$repeat"); do
  rate=$(python scripts/bench_tiling_reference.py "${pdfs[@]}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["pages_per_s"])')
  best_py=$(python3 -c "print(max($best_py,$rate))")
done

python3 - "$best_rust" "$best_py" "$pages" "$best_inproc" <<'PY'
import sys
rust, py, pages, inproc = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
print(f"pages per run: {pages} (best of runs, one thread each)")
print(f"| implementation | pages/s |")
print(f"|---|---|")
print(f"| sphinx tile (Rust, hayro; render child) | {rust:.1f} |")
print(f"| sphinx tile --render-in-process | {inproc:.1f} |")
print(f"| Python reference (PyMuPDF + PIL) | {py:.1f} |")
print(f"| ratio vs Python | {rust/py:.2f}x |")
print(f"| isolation cost (child / in-process) | {rust/inproc:.2f}x |")
PY
