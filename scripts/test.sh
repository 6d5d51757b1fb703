#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what is missing
# (scripts/setup.sh), regenerates the reference fixtures with the libraries nobody
# here wrote (PIL, transformers, timm, sentencepiece), checks formatting and lints
# (cargo fmt, scripts/checks.d/: infra template, Dockerfile, deploy scripts),
# then runs the Rust test suites (unit, property, parity, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
# The test harness runs tests side by side, each process loading libtorch: one OpenMP
# thread each, so they do not oversubscribe a 2-core machine. (Only here: users' commands
# keep libtorch's default.)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }
start=$SECONDS

step "reference fixtures (target/fixtures)"
for gen in scripts/fixtures.d/*.sh; do
  [ -e "$gen" ] || continue
  bash "$gen"
done

step "cargo fmt --check"
cargo fmt --all -- --check

for check in scripts/checks.d/*.sh; do
  [ -e "$check" ] || continue
  step "static checks: $check"
  bash "$check"
done

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked 2>&1

for e2e in scripts/e2e.d/*.sh; do
  [ -e "$e2e" ] || continue
  step "end to end: $e2e"
  bash "$e2e"
done

step "all tests passed in $((SECONDS - start)) s (after setup)"
