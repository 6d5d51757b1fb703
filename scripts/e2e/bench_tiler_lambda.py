#!/usr/bin/env python3
"""Tiler Lambda figures on this machine: init time and pages/s of one invocation.

Runs the release `sphinx-tiler` (x86_64, built here; the deployed arm64 zip is the same
code) under cargo-lambda's runtime emulator against moto's S3 + SQS, uploads the PDFs of
a folder, and invokes the function ONCE with an S3 event naming all of them. Reports the
function's init time (its own "initialized" log line), the invocation's wall time and
pages/s, including S3 reads, bundle writes and SQS sends over the local wire.

Usage: .venv/bin/python scripts/e2e/bench_tiler_lambda.py [folder (tests/data/corpus)]
Needs target/release/sphinx-tiler (cargo build --release -p sphinx-tiler).
"""
import json
import sys
import time
from pathlib import Path

from local_stack import ROOT, Stack

TILER = ROOT / "target/release/sphinx-tiler"
LOGS = ROOT / "target/bench-tiler-logs"


def main():
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/data/corpus"
    if not TILER.exists():
        sys.exit(f"missing {TILER}: cargo build --release -p sphinx-tiler")
    files = sorted(folder.glob("*.pdf"))
    stack = Stack(TILER, LOGS)
    try:
        init = next(
            json.loads(line)
            for line in (LOGS / "function.log").read_text().splitlines()
            if "initialized" in line
        )
        t0 = time.time()
        response = stack.upload_and_tile(files)
        took = time.time() - t0
        outcomes = response["outcomes"]
        pages = sum(
            int(o.split("pages: ")[1].rstrip(" }")) for o in outcomes if o.startswith("Enqueued")
        )
        visible, hidden = stack.depth(stack.infer)
        print(json.dumps({
            "documents": len(files),
            "pages": pages,
            "jobs_queued": visible + hidden,
            "init_ms": round(init["fields"]["init_ms"], 1),
            "invocation_s (upload + invoke)": round(took, 2),
            "pages_per_s": round(pages / took, 2),
        }, indent=1))
    finally:
        stack.close()


if __name__ == "__main__":
    main()
