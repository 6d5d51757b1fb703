"""Local AWS for end-to-end checks and benchmarks: moto_server (S3 + SQS, via
scripts/local-aws.sh) and the tiler Lambda binary under cargo-lambda's runtime emulator,
invoked with S3 put events. Used by serve_e2e.py and bench_tiler_lambda.py.
"""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
CARGO_LAMBDA = ROOT / ".venv/bin/cargo-lambda"
FUNCTION_NAME = "_"
STARTUP_S = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"  ok: {what}", flush=True)


def wait_for(pred, what, timeout):
    start = time.time()
    while time.time() - start < timeout:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_log(path, needle, proc):
    def seen():
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}): {path.read_text()}")
        return path.exists() and needle in path.read_text()

    wait_for(seen, f"{needle!r} in {path}", STARTUP_S)


class Stack:
    """moto + the emulator + the tiler function; stopped on exit."""

    def __init__(self, tiler, logs, tiler_env=None):
        self.procs = []
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [str(ROOT / "scripts/local-aws.sh"), str(free_port())],
            check=True, capture_output=True, text=True,
        ).stdout
        self.vars = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.moto_pid = int(self.vars["LOCAL_AWS_PID"])
        session = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        )
        endpoint = self.vars["AWS_ENDPOINT_URL"]
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.bucket = self.vars["SPHINX_BUCKET"]
        self.infer = self.vars["SPHINX_INFER_QUEUE_URL"]
        self.infer_dlq = self.vars["SPHINX_INFER_DLQ_URL"]
        self.ingest = self.vars["SPHINX_INGEST_QUEUE_URL"]

        self.invoke_port = free_port()
        emulator_log = logs / "emulator.log"
        emulator = subprocess.Popen(
            [str(CARGO_LAMBDA), "lambda", "watch", "--only-lambda-apis",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.invoke_port)],
            cwd=ROOT / "functions/tiler",
            stdout=open(emulator_log, "w"), stderr=open(logs / "emulator.err", "w"),
        )
        self.procs.append(emulator)
        wait_for_log(emulator_log, "starting Runtime server", emulator)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.invoke_port}/.rt",
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "4096",
            "SPHINX_TASKS": "ocr",
            "SPHINX_TIME_RESERVE_S": "1",
            "RUST_LOG": "info",
        }
        for key in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                    "AWS_REGION", "SPHINX_BUCKET", "SPHINX_INGEST_QUEUE_URL",
                    "SPHINX_INFER_QUEUE_URL", "SPHINX_S3_FORCE_PATH_STYLE"]:
            env[key] = self.vars[key]
        # The served model's layout (SPHINX_CANVAS_PX, SPHINX_GRID) and other overrides.
        env.update(tiler_env or {})
        function_log = logs / "function.log"
        function = subprocess.Popen([str(tiler)], env=env, stdout=open(function_log, "w"))
        self.procs.append(function)
        wait_for_log(function_log, "initialized", function)

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            os.kill(self.moto_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def upload_and_tile(self, files):
        """Uploads files under inbox/ and invokes the tiler with their S3 put event."""
        records = []
        for f in files:
            key = f"inbox/{f.name}"
            self.s3.upload_file(str(f), self.bucket, key)
            records.append({
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": self.bucket,
                       "arn": f"arn:aws:s3:::{self.bucket}"},
                       "object": {"key": key.replace(" ", "+"), "size": f.stat().st_size}},
            })
        event = self.logs / "event.json"
        event.write_text(json.dumps({"Records": records}))
        out = subprocess.run(
            [str(CARGO_LAMBDA), "lambda", "invoke", "--invoke-address", "127.0.0.1",
             "--invoke-port", str(self.invoke_port), "--data-file", str(event),
             "--output-format", "json", FUNCTION_NAME],
            capture_output=True, text=True, timeout=300,
        )
        if out.returncode != 0:
            raise AssertionError(f"invoke failed: {out.stdout}{out.stderr}")
        return json.loads(out.stdout)

    def keys(self, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def get_json(self, key):
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def depth(self, url):
        a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


