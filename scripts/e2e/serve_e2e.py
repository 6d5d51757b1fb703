#!/usr/bin/env python3
"""The cloud path end to end on one machine, with the real binaries and wire protocols.

moto_server plays S3 + SQS (scripts/local-aws.sh: bucket, ingest and infer queues each
with a dead-letter queue, maxReceiveCount 3). The tiler Lambda runs under cargo-lambda's
runtime emulator and is invoked with S3 put events; `sphinx serve` drains the infer
queue. Checked, in order:

1. Four uploads (a 3-page PDF, a PNG, a corrupt file, a decoder bomb from the hostile
   corpus whose inline image inflates to 1.6 GB) -> one result per good page, one merged
   result per good document, an error record for the corrupt one and a `render_memory`
   record for the bomb (its render child hit its 1 GiB heap), queues empty, nothing in the DLQ.
2. `sphinx run` on the same files gives the same keys and the same tokens.
3. A job that can never succeed ends in the infer DLQ with an error record.
4. kill -9 of a worker in the middle of its work, then a new worker: every page has
   exactly one result and nothing is missing.
5. SIGTERM drains within the grace period: the worker exits 0, no job is lost or left
   invisible, and a next worker finishes the rest.
6. Fine-tuning as a deployment schedules it: base model, data and job spec in the bucket;
   `sphinx train` stopped by SIGTERM exits 3 with a checkpoint, `--resume` finishes from
   it, the run is published with `models/latest`, and `sphinx serve` given
   `s3://bucket/models/latest` serves a page with it.

Needs target/debug/{sphinx,sphinx-engine,sphinx-tiler} (cargo test builds them) and .venv (setup.sh).
Usage: .venv/bin/python scripts/e2e/serve_e2e.py
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local_stack import CARGO_LAMBDA, ROOT, Stack, check, wait_for

SPHINX = ROOT / "target/debug/sphinx"
TILER = ROOT / "target/debug/sphinx-tiler"
LOGS = ROOT / "target/e2e-serve-logs"
# Tokens per task: enough to exercise decoding, few enough for a CPU test.
MAX_NEW_TOKENS = "8"


def serve_env(stack, model, **extra):
    env = dict(os.environ)
    for key in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                "SPHINX_BUCKET", "SPHINX_INFER_QUEUE_URL", "SPHINX_S3_FORCE_PATH_STYLE"]:
        env[key] = stack.vars[key]
    env.update({
        "SPHINX_MODEL": str(model),
        "SPHINX_MAX_NEW_TOKENS": MAX_NEW_TOKENS,
        "SPHINX_POLL_WAIT_S": "1",
        "SPHINX_BATCH_WAIT_MS": "200",
        "SPHINX_IDLE_EXIT_S": "3",
        "SPHINX_RELEASE_BACKOFF_S": "1",
        "SPHINX_LOG": "info",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_serve(stack, model, log_name, **extra):
    log = open(LOGS / log_name, "w")
    return subprocess.Popen([str(SPHINX), "serve", "--cpu"], env=serve_env(stack, model, **extra),
                            stdout=log, stderr=subprocess.STDOUT)


def serve_until_idle(stack, model, log_name, timeout=600, **extra):
    proc = start_serve(stack, model, log_name, **extra)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    check(code == 0, f"sphinx serve ({log_name}) exited 0 after the queue went idle (got {code})")


def page_jobs_pending(stack):
    visible, hidden = stack.depth(stack.infer)
    return visible + hidden


def tokens_of(result):
    return [(t["task"], t["raw_text"], t["tokens"]) for t in result["tasks"]]


def fine_tune_and_serve(stack, model, work, docs):
    """The scheduled fine-tuning loop of a deployment, on local S3: the base model, the
    data and the job spec in the bucket; `sphinx train` stopped by SIGTERM (a Spot notice)
    and rerun with `--resume`; the run it publishes served through `models/latest`."""
    for name in ["config.json", "model.safetensors", "tokenizer.json"]:
        stack.s3.upload_file(str(model / name), stack.bucket, f"models/base/{name}")
    data = work / "synth"
    made = subprocess.run([str(SPHINX), "synth", "--seed", "11", "--count", "4", "--out", str(data)],
                          capture_output=True, text=True)
    check(made.returncode == 0, f"sphinx synth made a dataset ({made.stderr[-300:]})")
    for f in sorted(p for p in data.rglob("*") if p.is_file()):
        stack.s3.upload_file(str(f), stack.bucket, f"datasets/synth/{f.relative_to(data)}")
    run, steps = "e2e-ft", 10
    spec = {"run": run, "model": {"dir": f"s3://{stack.bucket}/models/base/"},
            "datasets": [{"path": f"s3://{stack.bucket}/datasets/synth/conversations.jsonl", "weight": 1.0}],
            "steps": steps, "batch_size": 1, "lr": 1e-4, "warmup_steps": 1, "seed": 5,
            "cache_pages": 4, "precision": "f32"}
    stack.s3.put_object(Bucket=stack.bucket, Key="jobs/finetune.json", Body=json.dumps(spec).encode())
    env = serve_env(stack, model, SPHINX_DATA_CACHE=work / "data-cache",
                    SPHINX_MODEL_CACHE=work / "model-cache")
    train = [str(SPHINX), "train", "--config", f"s3://{stack.bucket}/jobs/finetune.json", "--resume", "--cpu"]
    first_log = LOGS / "train-stopped.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen(train, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: first.poll() is not None or '"step":1,' in first_log.read_text(),
                 "the first training step", 300)
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=300)
    said = first_log.read_text()
    check(code == 3, f"SIGTERM: a checkpoint after the current step, then exit status 3 (got {code})")
    stopped = int(said.split("stopped at step ")[1].split(";")[0])
    check(0 < stopped < steps, f"stopped at step {stopped} of {steps}")
    check(any(k.endswith("/state.json") for k in stack.keys(f"checkpoints/{run}/")),
          "its checkpoint is in the bucket")
    check(stack.keys(f"models/{run}/") == [], "a stopped run publishes no model")
    second = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
    (LOGS / "train-resumed.log").write_text(second.stdout + second.stderr)
    check(second.returncode == 0, f"the resumed run finished (exit {second.returncode})")
    check(f"from step {stopped} to {steps}" in second.stderr, f"it resumed at step {stopped}")
    files = [k.rsplit("/", 1)[1] for k in stack.keys(f"models/{run}/")]
    check(sorted(files) == ["config.json", "metrics.jsonl", "model.safetensors", "tokenizer.json"],
          f"models/{run}/ holds the model folder ({files})")
    metrics = stack.s3.get_object(Bucket=stack.bucket, Key=f"models/{run}/metrics.jsonl")["Body"].read()
    check([json.loads(line)["step"] for line in metrics.decode().splitlines()] == list(range(1, steps + 1)),
          "its metrics hold every step once, across the stop")
    pointer = stack.s3.get_object(Bucket=stack.bucket, Key="models/latest")["Body"].read().decode().strip()
    check(pointer == run, f"models/latest names the run ({pointer!r})")

    page = docs / "served.png"
    page.write_bytes((ROOT / "tests/data/formats/palette.png").read_bytes() + b"\0")  # new bytes, new doc
    stack.upload_and_tile([page])
    before = set(stack.keys("results/"))
    serve_until_idle(stack, f"s3://{stack.bucket}/models/latest", "serve-latest.log",
                     SPHINX_MODEL_CACHE=work / "model-cache")
    new = [k for k in set(stack.keys("results/")) - before if k.count("/") == 2]
    check(len(new) == 1, f"the page was served ({new})")
    served_by = stack.get_json(new[0])["model"]["id"]
    check(served_by == run, f"by the fine-tuned run, found through models/latest ({served_by})")

    # `sphinx run` on this machine takes the same model from the bucket.
    local = work / "local-latest"
    ran = subprocess.run([str(SPHINX), "run", str(page), "--out", str(local), "--quiet", "--cpu",
                          "--model", f"s3://{stack.bucket}/models/latest"],
                         env=serve_env(stack, model, SPHINX_MODEL_CACHE=work / "run-model-cache"),
                         capture_output=True, text=True, timeout=600)
    (LOGS / "run-latest.log").write_text(ran.stdout + ran.stderr)
    check(ran.returncode == 0, f"sphinx run --model s3://.../models/latest exited 0 ({ran.returncode})")
    results = [p for p in (local / "results").rglob("page-*.json")]
    ran_by = json.loads(results[0].read_text())["model"]["id"] if results else None
    check(ran_by == run, f"sphinx run used the fine-tuned run too ({ran_by})")
    # ... and so do `sphinx infer` and `sphinx eval` (the held-out check after a run).
    bucket_model = f"s3://{stack.bucket}/models/latest"
    env = serve_env(stack, model, SPHINX_MODEL_CACHE=work / "run-model-cache")
    inferred = subprocess.run([str(SPHINX), "infer", "--cpu", "--model", bucket_model, "--task", "ocr",
                               "--max-new-tokens", "4", str(page)],
                              env=env, capture_output=True, text=True, timeout=600)
    check(inferred.returncode == 0 and json.loads(inferred.stdout)["model"]["id"] == run,
          f"sphinx infer --model {bucket_model} uses the run ({inferred.stderr[-300:]})")
    scored = subprocess.run([str(SPHINX), "eval", "--cpu", "--quiet", "--model", bucket_model,
                             "--data", str(data / "conversations.jsonl"), "--limit", "2",
                             "--max-new-tokens", "4"],
                            env=env, capture_output=True, text=True, timeout=600)
    check(scored.returncode == 0 and json.loads(scored.stdout)["pages"] == 2,
          f"sphinx eval --model {bucket_model} scores 2 pages ({scored.stderr[-300:]})")


def main():
    for path, how in [(SPHINX, "cargo build -p sphinx-worker"), (TILER, "cargo build -p sphinx-tiler"),
                      (CARGO_LAMBDA, "scripts/setup.sh")]:
        if not path.exists():
            sys.exit(f"missing {path}: {how}")
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="sphinx-e2e-"))
    docs = work / "docs"
    docs.mkdir()
    pdf = docs / "notes.pdf"
    shutil.copy(ROOT / "samples/mattsnotes.pdf", pdf)
    png = docs / "palette.png"
    shutil.copy(ROOT / "tests/data/formats/palette.png", png)
    corrupt = docs / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n" + random.Random(7).randbytes(4000))
    bomb = docs / "bomb.pdf"
    hostile = ROOT / "target/hostile/inline_bomb.pdf"
    if not hostile.exists():
        sys.exit(f"missing {hostile}: run .venv/bin/python scripts/make_hostile_corpus.py")
    shutil.copy(hostile, bomb)

    # The local path first, with its default model (the committed nano), which the cloud
    # path then serves too.
    local = work / "local"
    print("== sphinx run on the same files", flush=True)
    run = subprocess.run([str(SPHINX), "run", str(docs), "--out", str(local), "--quiet", "--cpu",
                          "--max-new-tokens", MAX_NEW_TOKENS, "--max-render-memory", "1024",
                          "--formats", "all"],
                         capture_output=True, text=True)
    (LOGS / "run.log").write_text(run.stdout + run.stderr)
    check(run.returncode == 2, f"sphinx run exits 2 when a document failed (got {run.returncode})")
    model = ROOT / "models/sphinx-nano"
    check("RANDOM" not in run.stderr + run.stdout and str(model.name) in run.stdout,
          "sphinx run's default is the committed nano, named in its summary")
    # The tiler cuts views for the served model's layout, as a deployment configures it.
    vision = json.loads((model / "config.json").read_text())["vision"]
    grid = vision["layout"]["global_and_grid"]["grid"]
    layout = {"SPHINX_CANVAS_PX": str(grid * vision["convnext_size"]), "SPHINX_GRID": str(grid),
              # The render child's heap: below what the bomb needs.
              "SPHINX_RENDER_MEMORY_MB": "1024"}

    stack = Stack(TILER, LOGS, tiler_env=layout)
    try:
        print("== 1. upload 4 documents (one a decoder bomb), tile through the Lambda, serve", flush=True)
        response = stack.upload_and_tile([pdf, png, corrupt, bomb])
        print(f"  tiler: {response}")
        check(page_jobs_pending(stack) == 4, "4 page jobs queued (3 PDF pages + 1 image)")
        serve_until_idle(stack, model, "serve-1.log", SPHINX_OUTPUT_FORMATS="all")
        # Each micro-batch's EMF line (stdout, in the log) carries its pages and the mean
        # confidence of its answers.
        emf = [json.loads(line) for line in (LOGS / "serve-1.log").read_text().splitlines()
               if line.startswith("{") and '"CloudWatchMetrics"' in line]
        check(sum(e["Pages"] for e in emf) == 4, f"the metric lines count the 4 pages ({emf})")
        check(all(0 < e["AnswerConfidence"] <= 1 for e in emf if e["Pages"]),
              "every metric line with pages has the answers' mean confidence")
        everything = stack.keys("results/")
        results = [k for k in everything if k.endswith(".json")]
        archives = [k for k in everything if not k.endswith(".json")]
        merged = [k for k in results if k.count("/") == 1]
        pages = [k for k in results if k.count("/") == 2]
        check(len(pages) == 4, f"one result per good page ({len(pages)})")
        check(len(merged) == 2, f"one merged result per good document ({len(merged)})")
        for key in merged:
            doc = stack.get_json(key)
            check(doc["missing_pages"] == [] and len(doc["pages"]) == doc["page_count"],
                  f"{key} merges all {doc['page_count']} pages")
            made = sorted(o["key"] for o in doc["outputs"] if "key" in o)
            stem = key[: -len(".json")]
            check(made == sorted(stem + ext for ext in (".txt", ".hocr", ".alto.xml", ".pdf")),
                  f"{key} records its txt, hOCR, ALTO and PDF ({doc['outputs']})")
        check(len(archives) == 4 * len(merged), f"4 result files per document ({archives})")
        sources = sorted(str(stack.get_json(k).get("source")) for k in merged)
        check(sources == sorted([pdf.name, png.name]), f"each merged result names its upload ({sources})")
        errors = {stack.get_json(k)["source"]: stack.get_json(k) for k in stack.keys("errors/") if k.count("/") == 1}
        check(sorted(errors) == ["bomb.pdf", "corrupt.pdf"], f"an error record for each bad upload ({sorted(errors)})")
        check(errors["bomb.pdf"]["code"] == "render_memory",
              f"the bomb is a render_memory record ({errors['bomb.pdf']['code']}: {errors['bomb.pdf']['message']})")
        check(page_jobs_pending(stack) == 0, "infer queue empty")
        check(sum(stack.depth(stack.ingest)) == 0, "ingest queue empty")
        check(sum(stack.depth(stack.infer_dlq)) == 0, "nothing dead-lettered")

        print("== 2. sphinx run == the cloud path", flush=True)
        local_keys = sorted(
            str(p.relative_to(local)) for p in (local / "results").rglob("*.json")
        )
        check(local_keys == results, "same result keys")
        for key in merged:
            check(stack.get_json(key)["source"] == json.loads((local / key).read_text())["source"],
                  f"{key} names the same upload in both paths")
        for key in pages:
            cloud = stack.get_json(key)
            mine = json.loads((local / key).read_text())
            check(tokens_of(cloud) == tokens_of(mine), f"same tokens in {key}")
            check(cloud["model"] == mine["model"], "same model id")
        local_archives = sorted(
            str(p.relative_to(local)) for p in (local / "results").glob("*") if p.is_file() and p.suffix != ".json"
        )
        check(local_archives == archives, f"same result files ({local_archives} vs {archives})")
        for key in archives:
            cloud = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
            check(cloud == (local / key).read_bytes(), f"{key}: the same bytes from both paths")
        # Objects are served as what they are (a presigned link to the PDF opens as a PDF).
        media = {".txt": "text/plain; charset=utf-8", ".hocr": "application/xhtml+xml",
                 ".alto.xml": "application/xml", ".pdf": "application/pdf", ".json": "application/json",
                 ".bundle": "application/octet-stream"}
        bundles = [k for k in stack.keys("work/") if k.endswith(".bundle")]
        for key in archives + merged + pages[:1] + bundles[:1] + sorted(stack.keys("errors/"))[:1]:
            want = next(t for end, t in media.items() if key.endswith(end))
            got = stack.s3.head_object(Bucket=stack.bucket, Key=key)["ContentType"]
            check(got == want, f"{key} is stored as {want} ({got})")

        print("== 3. a poison job ends in the DLQ with an error record", flush=True)
        stack.sqs.send_message(QueueUrl=stack.infer, MessageBody='{"schema_version": 1, "doc_id": 7}')
        serve_until_idle(stack, model, "serve-poison.log")
        visible, hidden = stack.depth(stack.infer_dlq)
        check(visible + hidden == 1, "the poison message is in the infer DLQ")
        check(page_jobs_pending(stack) == 0, "and no longer in the infer queue")
        check(len(stack.keys("errors/jobs/")) == 1, "an error record for the poison job")

        print("== 4. kill -9 mid-batch, then a new worker", flush=True)
        tif = docs / "multipage.tif"
        shutil.copy(ROOT / "tests/data/formats/multipage.tif", tif)
        fax = docs / "fax.tif"
        shutil.copy(ROOT / "tests/data/formats/fax_g4.tif", fax)
        stack.upload_and_tile([tif, fax])
        check(page_jobs_pending(stack) == 5, "5 page jobs queued")
        before = set(stack.keys("results/"))
        # One page at a time (the worker streams pages, so with more slots all 5 can be
        # done before the first result is seen): the kill lands while jobs are held.
        victim = start_serve(stack, model, "serve-killed.log", SPHINX_MAX_BATCH_PAGES=1,
                             SPHINX_DECODE_SLOTS=1, SPHINX_VISIBILITY_S=4,
                             SPHINX_MAX_NEW_TOKENS=48)
        wait_for(lambda: len(set(stack.keys("results/")) - before) >= 1, "a first result", 300)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        done_at_kill = len(set(stack.keys("results/")) - before)
        print(f"  killed with {done_at_kill} new results written")
        check(page_jobs_pending(stack) > 0, "jobs were still held or queued when the worker died")
        # The dead worker's messages reappear after their visibility timeout (4 s).
        serve_until_idle(stack, model, "serve-after-kill.log", SPHINX_IDLE_EXIT_S=8,
                         SPHINX_MAX_NEW_TOKENS=48)
        new = sorted(set(stack.keys("results/")) - before)
        new_pages = [k for k in new if k.count("/") == 2]
        check(len(new_pages) == 5, f"every page has its result ({len(new_pages)} of 5)")
        check(len(new_pages) == len(set(new_pages)), "exactly one object per page")
        check(len([k for k in new if k.count("/") == 1]) == 2, "both documents merged")
        check(page_jobs_pending(stack) == 0, "nothing left in the queue")
        check(sum(stack.depth(stack.infer_dlq)) == 1, "nothing new dead-lettered")

        print("== 5. SIGTERM drains within the grace period", flush=True)
        for p in [tif, fax]:
            # New bytes -> new documents -> new jobs.
            p.write_bytes(p.read_bytes() + b"\0")
        stack.upload_and_tile([tif, fax])
        check(page_jobs_pending(stack) == 5, "5 new page jobs queued")
        before = set(stack.keys("results/"))
        grace = 60
        worker = start_serve(stack, model, "serve-term.log", SPHINX_MAX_BATCH_PAGES=2,
                             SPHINX_GRACE_S=grace, SPHINX_MAX_NEW_TOKENS=48)
        wait_for(lambda: len(set(stack.keys("results/")) - before) >= 1, "a first result", 300)
        worker.send_signal(signal.SIGTERM)
        t0 = time.time()
        code = worker.wait(timeout=grace + 30)
        took = time.time() - t0
        check(code == 0, f"the worker exits 0 on SIGTERM (got {code})")
        check(took <= grace, f"within the grace period ({took:.1f} s <= {grace} s)")
        visible, hidden = stack.depth(stack.infer)
        done = [k for k in set(stack.keys("results/")) - before if k.count("/") == 2]
        check(hidden == 0, "no job left invisible")
        check(len(done) + visible == 5, f"no job lost ({len(done)} done + {visible} queued)")
        serve_until_idle(stack, model, "serve-after-term.log", SPHINX_MAX_NEW_TOKENS=48)
        done = [k for k in set(stack.keys("results/")) - before if k.count("/") == 2]
        check(len(done) == 5 and page_jobs_pending(stack) == 0, "the next worker finished the rest")

        print("== 6. fine-tune from S3, SIGTERM, --resume, then serve the run through models/latest",
              flush=True)
        fine_tune_and_serve(stack, model, work, docs)
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    print("serve end to end: all checks passed")


if __name__ == "__main__":
    main()
