#!/usr/bin/env bash
# Local S3 + SQS for the tiler: starts moto_server (from .venv) on 127.0.0.1, creates the
# bucket and the ingest/infer queues (each with a dead-letter queue), and prints the
# settings as KEY=VALUE lines (eval-able: `eval "$(scripts/local-aws.sh)"`).
#
# Usage: scripts/local-aws.sh [PORT]     (default 5055; the server runs in the background,
#        stop it with `kill $LOCAL_AWS_PID`)
# No real credentials: fixed dummy keys, region us-east-1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${1:-5055}"
HOST=127.0.0.1
ENDPOINT="http://$HOST:$PORT"
BUCKET="${SPHINX_LOCAL_BUCKET:-sphinx-local}"
# How often a message is received before it moves to its dead-letter queue.
MAX_RECEIVE_COUNT=3
# How long to wait for the server to answer, in tenths of a second.
STARTUP_TENTHS=300

PY="$ROOT/.venv/bin/python"
MOTO="$ROOT/.venv/bin/moto_server"
if [[ ! -x "$MOTO" ]]; then
  echo "local-aws.sh: $MOTO not found; run scripts/setup.sh first" >&2
  exit 1
fi
mkdir -p "$ROOT/target"
LOG="$ROOT/target/local-aws-$PORT.log"
"$MOTO" -H "$HOST" -p "$PORT" >"$LOG" 2>&1 &
PID=$!

for ((i = 0; i < STARTUP_TENTHS; i++)); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('$ENDPOINT/moto-api/', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "local-aws.sh: moto_server exited; see $LOG" >&2
    exit 1
  fi
  sleep 0.1
done
if ((i == STARTUP_TENTHS)); then
  kill "$PID" 2>/dev/null || true
  echo "local-aws.sh: moto_server did not answer on $ENDPOINT within $((STARTUP_TENTHS / 10)) s; see $LOG" >&2
  exit 1
fi

AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
  "$PY" - "$ENDPOINT" "$BUCKET" "$MAX_RECEIVE_COUNT" <<'PYEOF'
import json, sys
import boto3

endpoint, bucket, max_receive = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint)
sqs = boto3.client("sqs", endpoint_url=endpoint)
s3.create_bucket(Bucket=bucket)

def queue(name):
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive})
    return sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"], dlq

ingest, ingest_dlq = queue("sphinx-ingest")
infer, infer_dlq = queue("sphinx-infer")
print(f"SPHINX_INGEST_QUEUE_URL={ingest}")
print(f"SPHINX_INGEST_DLQ_URL={ingest_dlq}")
print(f"SPHINX_INFER_QUEUE_URL={infer}")
print(f"SPHINX_INFER_DLQ_URL={infer_dlq}")
PYEOF

echo "LOCAL_AWS_PID=$PID"
echo "AWS_ENDPOINT_URL=$ENDPOINT"
echo "AWS_ACCESS_KEY_ID=test"
echo "AWS_SECRET_ACCESS_KEY=test"
echo "AWS_REGION=us-east-1"
echo "SPHINX_BUCKET=$BUCKET"
echo "SPHINX_S3_FORCE_PATH_STYLE=1"
