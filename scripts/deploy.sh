#!/usr/bin/env bash
# Deploys the SPHINX-X document service to an AWS account (infra/template.yaml):
# builds the tiler Lambda for arm64 with cargo-lambda, optionally builds and pushes the
# worker image (infra/Dockerfile) to ECR, then `sam deploy`s the stack.
#
#   scripts/deploy.sh --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sphinx-worker:1.0.0 \
#       --vpc vpc-0abc --subnets subnet-01,subnet-02
#   scripts/deploy.sh --build-image --vpc vpc-0abc --subnets subnet-01,subnet-02 \
#       --param TrainScheduleState=ENABLED --param MaxWorkers=8
#
# Flags
#   --stack NAME          CloudFormation stack name                     (default: sphinx)
#   --region REGION       AWS region            (default: $AWS_REGION, else the CLI's)
#   --image URI           worker image already in ECR (WorkerImage)
#   --build-image         docker build infra/Dockerfile and push it to ECR (needs Docker)
#   --repo NAME           ECR repository for --build-image         (default: sphinx-worker)
#   --tag TAG             image tag for --build-image     (default: git short commit id)
#   --vpc ID              VPC of the GPU instances (VpcId)
#   --subnets A,B         subnets of the GPU instances (SubnetIds); they need a NAT
#                         gateway or VPC endpoints for S3, SQS, ECR, ECS and Logs
#   --spot true|false     GPU instances on Spot (UseSpot)                 (default: true)
#   --instance-types L    comma list (GpuInstanceTypes)
#   --alarm-email ADDR    e-mail for the dead-letter alarms (AlarmEmail)
#   --param KEY=VALUE     any other template parameter (repeatable; README table)
#   --skip-lambda-build   reuse target/lambda/sphinx-tiler/bootstrap
#   --confirm             review the change set before it is executed
#   --dry-run             print the commands instead of running them
#
# Needs: cargo + rustup, cargo-lambda and zig (from .venv, scripts/setup.sh), the AWS CLI
# v2 and the SAM CLI, credentials for the account in the usual AWS_* / profile way.
# Nothing here stores credentials.
set -euo pipefail
cd "$(dirname "$0")/.."

stack=sphinx
region=${AWS_REGION:-}
image=""
build_image=0
repo=sphinx-worker
tag=""
vpc=""
subnets=""
spot=""
instance_types=""
alarm_email=""
params=()
lambda_build=1
confirm=0
dry_run=0

die() { printf 'deploy: %s\n' "$*" >&2; exit 2; }
log() { printf '\033[1;34m[deploy]\033[0m %s\n' "$*" >&2; }
run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
need() { command -v "$1" >/dev/null 2>&1 || [ "$dry_run" = 1 ] || die "$1 not found ($2)"; }

while [ $# -gt 0 ]; do
  case $1 in
    --stack) stack=${2:?}; shift 2 ;;
    --region) region=${2:?}; shift 2 ;;
    --image) image=${2:?}; shift 2 ;;
    --build-image) build_image=1; shift ;;
    --repo) repo=${2:?}; shift 2 ;;
    --tag) tag=${2:?}; shift 2 ;;
    --vpc) vpc=${2:?}; shift 2 ;;
    --subnets) subnets=${2:?}; shift 2 ;;
    --spot) spot=${2:?}; shift 2 ;;
    --instance-types) instance_types=${2:?}; shift 2 ;;
    --alarm-email) alarm_email=${2:?}; shift 2 ;;
    --param) params+=("${2:?}"); shift 2 ;;
    --skip-lambda-build) lambda_build=0; shift ;;
    --confirm) confirm=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown flag $1 (see --help)" ;;
  esac
done

[ -n "$vpc" ] || die "--vpc is required"
[ -n "$subnets" ] || die "--subnets is required"
if [ "$build_image" = 0 ] && [ -z "$image" ]; then
  die "give --image URI or --build-image"
fi
need aws "AWS CLI v2"
need sam "AWS SAM CLI"
if [ -z "$region" ]; then
  region=$(aws configure get region 2>/dev/null || true)
  [ -n "$region" ] || die "no region: pass --region or set AWS_REGION"
fi

# --- tiler Lambda: target/lambda/sphinx-tiler/bootstrap (the template's CodeUri) -----
if [ "$lambda_build" = 1 ]; then
  need cargo "source scripts/env.sh"
  export PATH="$PWD/.venv/bin:$PATH" # cargo-lambda and zig (scripts/requirements.txt)
  need cargo-lambda "run scripts/setup.sh"
  if command -v rustup >/dev/null 2>&1; then
    run rustup target add aarch64-unknown-linux-gnu
  fi
  log "building the tiler for arm64"
  run cargo lambda build -p sphinx-tiler --profile lambda --arm64
fi
[ -f target/lambda/sphinx-tiler/bootstrap ] || [ "$dry_run" = 1 ] \
  || die "target/lambda/sphinx-tiler/bootstrap missing (drop --skip-lambda-build)"

# --- worker image -----------------------------------------------------------------
if [ "$build_image" = 1 ]; then
  need docker "the worker image is built with Docker"
  account=$(aws sts get-caller-identity --query Account --output text)
  registry="$account.dkr.ecr.$region.amazonaws.com"
  tag=${tag:-$(git rev-parse --short=12 HEAD)}
  image="$registry/$repo:$tag"
  if ! aws ecr describe-repositories --region "$region" --repository-names "$repo" >/dev/null 2>&1; then
    log "creating ECR repository $repo"
    run aws ecr create-repository --region "$region" --repository-name "$repo" \
      --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true \
      --encryption-configuration encryptionType=AES256
  fi
  log "building $image"
  if [ "$dry_run" = 1 ]; then
    echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
  else
    aws ecr get-login-password --region "$region" \
      | docker login --username AWS --password-stdin "$registry"
  fi
  run docker build --platform linux/amd64 -f infra/Dockerfile -t "$image" .
  run docker push "$image"
fi

# --- stack --------------------------------------------------------------------------
overrides=("WorkerImage=$image" "VpcId=$vpc" "SubnetIds=$subnets")
[ -z "$spot" ] || overrides+=("UseSpot=$spot")
[ -z "$instance_types" ] || overrides+=("GpuInstanceTypes=$instance_types")
[ -z "$alarm_email" ] || overrides+=("AlarmEmail=$alarm_email")
overrides+=("${params[@]}")

confirm_flag=--no-confirm-changeset
[ "$confirm" = 0 ] || confirm_flag=--confirm-changeset

# No `sam build`: the function code is the folder cargo-lambda wrote above, and
# `sam deploy` zips and uploads it (to the SAM-managed bucket, --resolve-s3).
log "deploying stack $stack in $region"
run sam deploy \
  --template-file infra/template.yaml \
  --stack-name "$stack" \
  --region "$region" \
  --resolve-s3 \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --no-fail-on-empty-changeset \
  "$confirm_flag" \
  --parameter-overrides "${overrides[@]}"

run aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
  --query 'Stacks[0].Outputs' --output table
