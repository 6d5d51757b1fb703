#!/usr/bin/env bash
# Static checks of the AWS deployment (issue 8), run by scripts/test.sh after
# `cargo fmt --check`; runnable alone: bash scripts/checks.d/infra.sh
#   cfn-lint    infra/template.yaml (SAM transform included), no findings
#   checkov     CloudFormation checks; the only skips are in the template, each with a reason
#   hadolint    infra/Dockerfile (the image is built by scripts/deploy.sh, not here)
#   ShellCheck  the deploy and infra scripts
#   unittest    infra/tests: template invariants (DLQs, visibility, IAM, encryption, ...)
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/setup-infra.sh
bin=.venv-infra/bin

echo "-- cfn-lint infra/template.yaml"
"$bin/cfn-lint" infra/template.yaml

echo "-- checkov (cloudformation)"
# --skip-download: no calls to the vendor's platform (offline, deterministic).
"$bin/checkov" -f infra/template.yaml --framework cloudformation --compact --quiet \
  --skip-download

echo "-- hadolint infra/Dockerfile"
"$bin/hadolint" infra/Dockerfile

echo "-- shellcheck"
"$bin/shellcheck" scripts/deploy.sh scripts/setup-infra.sh scripts/checks.d/infra.sh
bash -n scripts/deploy.sh

echo "-- infra/tests (template invariants)"
"$bin/python" -m unittest discover -s infra/tests -v
