#!/usr/bin/env bash
# Installs the infra lint tools (cfn-lint, checkov, hadolint, shellcheck) into
# .venv-infra from scripts/requirements-infra.txt. Idempotent: skips when the stamp
# matches the requirements file. Called by scripts/setup.sh and scripts/checks.d/infra.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

req=scripts/requirements-infra.txt
venv=.venv-infra
stamp=$venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing infra lint tools from $req (~1.5 min the first time)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q --progress-bar off -r "$req"
  echo "$want" > "$stamp"
else
  log "infra lint tools up to date"
fi
