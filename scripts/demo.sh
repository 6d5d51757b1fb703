#!/usr/bin/env bash
# Demo: installs what is missing, builds `sphinx`, then runs the whole pipeline
# (tile -> model -> results) on the bundled sample documents into out/demo/, with box
# overlays, and unpacks one page bundle into viewable PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release -q -p sphinx-worker -p sphinx-core
out=out/demo
rm -rf "$out"
status=0
./target/release/sphinx run samples/*.pdf samples/synthetic/images/*.png --out "$out" --overlays || status=$?
# 2 = some document failed (listed above); anything else is an error.
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then exit "$status"; fi
first=$(find "$out/work" -name 'page-0000.bundle' | sort | head -n 1)
./target/release/sphinx tile --extract "$first" "$out/views" > /dev/null
echo
echo "Page results:      $out/results/<doc_id>/page-NNNN.json (merged: $out/results/<doc_id>.json)"
echo "Box overlays:      $out/overlays/<doc_id>/page-NNNN.png"
echo "Page bundles:      $out/work/<doc_id>/page-NNNN.bundle; one unpacked into $out/views/"
exit "$status"
