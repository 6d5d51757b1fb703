# shellcheck shell=bash
# Sourced by the scripts that release-build an example here and run it on a lent GPU
# (bench-gpu.sh, gpu-moe.sh, gpu-parity.sh): the GPU machine has PyTorch but no Rust
# toolchain, so the binary travels, stripped (debug line tables make it ~80 MB; the
# device tool carries at most 64 MiB).

# stage_example PACKAGE EXAMPLE DIR: release-builds the example and copies it, stripped,
# into DIR (emptied first).
stage_example() {
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
  cargo build --release -p "$1" --example "$2"
  rm -rf "$3" && mkdir -p "$3"
  cp "target/release/examples/$2" "$3/"
  strip "$3/$2"
}

# use_gpu_torch: puts the GPU machine's libtorch (its PyTorch's) on LD_LIBRARY_PATH.
use_gpu_torch() {
  local lib
  lib=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# append_result FILE: prints a dated result table and appends it to docs/performance.md
# ($OUT/performance.md when the checkout is read-only on the GPU machine).
append_result() {
  cat "$1"
  local doc=docs/performance.md
  [ -w "$doc" ] || doc="${OUT:-/tmp}/performance.md"
  { echo; cat "$1"; } >> "$doc"
  echo "appended to $doc"
}
