#!/usr/bin/env bash
# Installs everything this project needs on a fresh machine of the `rust` kind.
# Idempotent: each step checks what is already there and skips it.
#
#   Debian tools      poppler-utils and qpdf (the archive-format checks)
#   .venv/            project-local Python: torch==2.11.0 (libtorch for tch) and the
#                     reference packages the parity tests compare against
#   .venv-infra/      lint tools for infra/ (cfn-lint, checkov, hadolint, shellcheck),
#                     apart from .venv because checkov pins older boto3/packaging
#   rust targets      aarch64-unknown-linux-gnu for the arm64 Lambda zip (best effort)
#
# Afterwards `source scripts/env.sh` sets LIBTORCH_USE_PYTORCH, PATH and LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# --- Debian tools ------------------------------------------------------------
# poppler (pdftotext, pdffonts) and qpdf check the searchable PDFs (engine/archive tests).
missing=()
for tool in pdftotext:poppler-utils pdffonts:poppler-utils qpdf:qpdf; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
fi

# --- Python venv -----------------------------------------------------------
req=scripts/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages from $req (torch is ~4.6 GB the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --progress-bar off -r "$req"
  echo "$want" > "$stamp"
else
  log "Python packages up to date"
fi

# --- infra lint tools (scripts/checks.d/infra.sh) ---------------------------------
./scripts/setup-infra.sh

# --- Rust toolchain pieces ---------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || true
  if ! rustup target list --installed | grep -q aarch64-unknown-linux-gnu; then
    log "adding rust target aarch64-unknown-linux-gnu (for the arm64 Lambda zip)"
    rustup target add aarch64-unknown-linux-gnu || log "could not add aarch64 target; x86_64 Lambda builds still work"
  fi
fi

log "ready: source scripts/env.sh"
