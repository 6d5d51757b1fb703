#!/usr/bin/env bash
# Demo: installs what is missing, builds `sphinx`, then tiles the bundled sample
# documents into out/demo/ and unpacks one page bundle into viewable PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release -q -p sphinx-worker
out=out/demo
rm -rf "$out"
status=0
./target/release/sphinx tile samples/ --out "$out" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then exit "$status"; fi
first=$(find "$out/work" -name 'page-0000.bundle' | sort | head -n 1)
./target/release/sphinx tile --extract "$first" "$out/views"
echo
echo "Page bundles: $out/work/<doc_id>/page-NNNN.bundle (one object per page)"
echo "Views of one page, as PNGs: $out/views/"
ls -l "$out/views"
exit "$status"
