"""Invariants of infra/template.yaml that cfn-lint and checkov do not check.

Run: .venv-infra/bin/python -m unittest discover -s infra/tests -v
(scripts/checks.d/infra.sh does). The template is parsed with cfn-lint's own loader,
so !Ref / !GetAtt / !Sub become {"Ref": ...} / {"Fn::GetAtt": ...} / {"Fn::Sub": ...}.

Every invariant is a function returning a list of violations; each test asserts the
real template has none AND that a mutated copy (a deep copy of the parsed template, or
a text edit of the file re-parsed from a temp dir) has some, so no check passes vacuously.
"""

import contextlib
import copy
import io
import math
import os
import re
import tempfile
import unittest
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
TILER_README = ROOT / "functions" / "tiler" / "README.md"
WORKER_METRICS = ROOT / "engine" / "worker" / "src" / "worker" / "metrics.rs"

# The worker container contract (engine/worker `sphinx serve` / `sphinx train`).
SERVE_COMMAND = ["sphinx", "serve"]
SERVE_ENV = {
    "SPHINX_BUCKET",
    "SPHINX_INFER_QUEUE_URL",
    "SPHINX_MODEL",
    "SPHINX_MAX_BATCH_PAGES",
    "SPHINX_IDLE_EXIT_S",
    "SPHINX_GRACE_S",
    "SPHINX_OUTPUT_FORMATS",
    "SPHINX_INBOX_PREFIX",
    "AWS_REGION",
}
TRAIN_COMMAND = ["sphinx", "train", "--config", "Ref::config", "--resume"]
TILER_REQUIRED_ENV = {"SPHINX_BUCKET", "SPHINX_INGEST_QUEUE_URL", "SPHINX_INFER_QUEUE_URL"}


def load(path=TEMPLATE):
    template, matches = decode(str(path))
    if template is None:
        raise AssertionError(f"{path} does not parse: {matches}")
    return template


def resources(tpl, *types):
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] in types}


def props(resource):
    return resource.get("Properties", {})


def getatt_target(value):
    """Logical id of a {"Fn::GetAtt": [id, attr]} / "id.attr" value, else None."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        return att[0] if isinstance(att, list) else att.split(".")[0]
    return None


def as_list(value):
    return value if isinstance(value, list) else [value]


def param_default(tpl, value):
    """Resolves {"Ref": Param} to the parameter's default; literals pass through."""
    if isinstance(value, dict) and "Ref" in value:
        return tpl["Parameters"][value["Ref"]]["Default"]
    return value


# ------------------------------------------------------------------ invariants


def worker_metrics():
    """The namespace, service and metric names `sphinx serve` prints as EMF lines, read
    from the worker's source (engine/worker/src/worker/metrics.rs)."""
    src = WORKER_METRICS.read_text()
    namespace = re.search(r'pub const NAMESPACE: &str = "([^"]+)";', src).group(1)
    names = set(re.findall(r'\(\s*"([A-Za-z]+)",\s*"(?:Count|Count/Second|Milliseconds|None)"', src))
    return namespace, names


def worker_alarm_violations(tpl):
    """Alarms on the worker's own metrics must name a metric it emits, in its namespace,
    with the dimension it writes (Service=serve), or they would never fire."""
    namespace, names = worker_metrics()
    out = []
    alarms = resources(tpl, "AWS::CloudWatch::Alarm")
    on_worker = {k: a for k, a in alarms.items() if props(a).get("Namespace", "").startswith("Sphinx/")}
    if not on_worker:
        out.append("no alarm on the worker's metrics")
    for name, alarm in on_worker.items():
        p = props(alarm)
        if p.get("Namespace") != namespace:
            out.append(f"{name}: namespace {p.get('Namespace')}, the worker writes {namespace}")
        if p.get("MetricName") not in names:
            out.append(f"{name}: the worker emits no metric {p.get('MetricName')} ({sorted(names)})")
        if p.get("Dimensions") != [{"Name": "Service", "Value": "serve"}]:
            out.append(f"{name}: dimensions {p.get('Dimensions')}, the worker writes Service=serve")
    return out


def dead_letter_violations(tpl):
    queues = resources(tpl, "AWS::SQS::Queue")
    targets = {}
    for name, q in queues.items():
        redrive = props(q).get("RedrivePolicy")
        if redrive:
            targets[name] = getatt_target(redrive.get("deadLetterTargetArn"))
    dlqs = set(targets.values())
    out = []
    for name, q in queues.items():
        if name in dlqs:
            if name in targets:
                out.append(f"{name} is a DLQ with its own RedrivePolicy")
            continue
        target = targets.get(name)
        if target is None:
            out.append(f"{name} has no RedrivePolicy")
        elif target not in queues:
            out.append(f"{name} redrives to {target}, not a queue of this template")
        elif "maxReceiveCount" not in props(q)["RedrivePolicy"]:
            out.append(f"{name} RedrivePolicy lacks maxReceiveCount")
    if len(queues) - len(dlqs) < 2:
        out.append("expected an ingest and an infer queue, each with a DLQ")
    return out


def sqs_event_sources(tpl):
    """(function id, queue id, event properties) for every SQS trigger."""
    out = []
    for name, fn in resources(tpl, "AWS::Serverless::Function").items():
        for event in props(fn).get("Events", {}).values():
            if event.get("Type") == "SQS":
                out.append((name, getatt_target(event["Properties"]["Queue"]), event["Properties"]))
    for esm in resources(tpl, "AWS::Lambda::EventSourceMapping").values():
        p = props(esm)
        fn = p["FunctionName"].get("Ref") if isinstance(p["FunctionName"], dict) else None
        out.append((fn, getatt_target(p["EventSourceArn"]), p))
    return out


def visibility_violations(tpl):
    out = []
    sources = sqs_event_sources(tpl)
    if not sources:
        out.append("no SQS event source")
    for fn, queue, _ in sources:
        timeout = int(param_default(tpl, props(tpl["Resources"][fn]).get("Timeout", 3)))
        vis = props(tpl["Resources"][queue]).get("VisibilityTimeout", 30)
        vis = int(param_default(tpl, vis))
        if vis < 6 * timeout:
            out.append(f"{queue} visibility {vis} s < 6 x {fn} timeout {timeout} s")
    return out


def batch_failure_violations(tpl):
    out = []
    for fn, queue, p in sqs_event_sources(tpl):
        if "ReportBatchItemFailures" not in p.get("FunctionResponseTypes", []):
            out.append(f"{fn} <- {queue} does not report batch item failures")
        if "BatchSize" not in p:
            out.append(f"{fn} <- {queue} has no BatchSize")
        if "MaximumConcurrency" not in p.get("ScalingConfig", {}):
            out.append(f"{fn} <- {queue} has no ScalingConfig.MaximumConcurrency")
    return out or ([] if sqs_event_sources(tpl) else ["no SQS event source"])


def policy_documents(tpl):
    """(where, document) for every IAM / resource policy in the template."""
    for name, r in tpl["Resources"].items():
        p = props(r)
        if r["Type"] == "AWS::IAM::Role":
            for pol in p.get("Policies", []):
                yield f"{name}/{pol['PolicyName']}", pol["PolicyDocument"]
        elif r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, p["PolicyDocument"]
        elif r["Type"] in ("AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"):
            yield name, p["PolicyDocument"]
        elif r["Type"] == "AWS::Serverless::Function":
            for pol in as_list(p.get("Policies", [])):
                if isinstance(pol, dict) and "Statement" in pol:
                    yield name, pol


def iam_violations(tpl):
    out = []
    for where, doc in policy_documents(tpl):
        for st in as_list(doc["Statement"]):
            if st.get("Effect") != "Allow":
                continue  # Deny statements (TLS only) may be broad
            actions = [a for a in as_list(st.get("Action", [])) if isinstance(a, str)]
            res = as_list(st.get("Resource", []))
            if "NotAction" in st or "NotResource" in st:
                out.append(f"{where}: Allow with NotAction/NotResource")
            if "*" in actions:
                out.append(f"{where}: Action '*'")
            data = [a for a in actions if a.lower().startswith(("s3:", "sqs:"))]
            for a in data:
                if a.endswith(":*"):
                    out.append(f"{where}: wildcard data-plane action {a}")
            if data and any(r == "*" or r in ("arn:aws:s3:::*",) for r in res):
                out.append(f"{where}: {data} on Resource '*'")
            if st.get("Principal") == "*" or st.get("Principal") == {"AWS": "*"}:
                out.append(f"{where}: Allow to any principal")
    return out


def bucket_violations(tpl):
    out = []
    buckets = resources(tpl, "AWS::S3::Bucket")
    if not buckets:
        out.append("no bucket")
    policies = resources(tpl, "AWS::S3::BucketPolicy")
    for name, b in buckets.items():
        p = props(b)
        block = p.get("PublicAccessBlockConfiguration", {})
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(key) is not True:
                out.append(f"{name}: {key} is not true")
        rules = p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algos = [r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
        if not any(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algos):
            out.append(f"{name}: default encryption off")
        if p.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            out.append(f"{name}: versioning off")
        lifecycle = p.get("LifecycleConfiguration", {}).get("Rules", [])
        work = [r for r in lifecycle if r.get("Prefix") == "work/" and r.get("Status") == "Enabled"]
        if not work or not all(
            k in work[0] for k in ("ExpirationInDays", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
        ):
            out.append(f"{name}: no complete lifecycle rule for work/")
        tls = False
        for pol in policies.values():
            if props(pol).get("Bucket") != {"Ref": name}:
                continue
            for st in as_list(props(pol)["PolicyDocument"]["Statement"]):
                cond = st.get("Condition", {}).get("Bool", {})
                if st.get("Effect") == "Deny" and str(cond.get("aws:SecureTransport")).lower() == "false":
                    tls = True
        if not tls:
            out.append(f"{name}: no TLS-only bucket policy")
        notes = p.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
        inbox = [
            n
            for n in notes
            if any(r.get("Value") == "inbox/" for r in n.get("Filter", {}).get("S3Key", {}).get("Rules", []))
        ]
        if not inbox:
            out.append(f"{name}: no inbox/ notification to a queue")
    return out


def queue_encryption_violations(tpl):
    out = []
    for name, q in resources(tpl, "AWS::SQS::Queue").items():
        p = props(q)
        if p.get("SqsManagedSseEnabled") is not True and "KmsMasterKeyId" not in p:
            out.append(f"{name} is not encrypted")
    return out


def compute_violations(tpl):
    out = []
    envs = resources(tpl, "AWS::Batch::ComputeEnvironment")
    if not envs:
        out.append("no Batch compute environment")
    for name, ce in envs.items():
        cr = props(ce).get("ComputeResources", {})
        if cr.get("MinvCpus") != 0:
            out.append(f"{name}: MinvCpus {cr.get('MinvCpus')!r} is not 0 (does not scale to zero)")
    return out


def job_definition(tpl, command_head):
    for name, jd in resources(tpl, "AWS::Batch::JobDefinition").items():
        cmd = props(jd)["ContainerProperties"]["Command"]
        if cmd[: len(command_head)] == command_head:
            return name, props(jd)
    return None, None


def job_violations(tpl):
    out = []
    for head, command, env_required in (
        (["sphinx", "serve"], SERVE_COMMAND, SERVE_ENV),
        (["sphinx", "train"], TRAIN_COMMAND, {"SPHINX_BUCKET"}),
    ):
        name, p = job_definition(tpl, head)
        if name is None:
            out.append(f"no job definition running {' '.join(head)}")
            continue
        c = p["ContainerProperties"]
        if c["Command"] != command:
            out.append(f"{name}: command {c['Command']} != {command}")
        env = {e["Name"] for e in c.get("Environment", [])}
        if not env_required <= env:
            out.append(f"{name}: missing env {sorted(env_required - env)}")
        if head == ["sphinx", "serve"] and env != SERVE_ENV:
            out.append(f"{name}: env {sorted(env)} differs from the contract {sorted(SERVE_ENV)}")
        if not any(r["Type"] == "GPU" for r in c.get("ResourceRequirements", [])):
            out.append(f"{name}: no GPU requirement")
        for role in ("JobRoleArn", "ExecutionRoleArn"):
            if role not in c:
                out.append(f"{name}: no {role}")
        retry = p.get("RetryStrategy", {}).get("EvaluateOnExit", [])
        if not any(r.get("OnStatusReason", "").startswith("Host EC2") and r["Action"] == "RETRY" for r in retry):
            out.append(f"{name}: does not retry after a Spot reclaim")
    return out


def tiler_env_violations(tpl):
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", TILER_README.read_text(), re.M))
    out = []
    fn = tpl["Resources"].get("TilerFunction")
    if fn is None:
        return ["no TilerFunction"]
    p = props(fn)
    env = set(p.get("Environment", {}).get("Variables", {}))
    if env - documented:
        out.append(f"tiler env not in functions/tiler/README.md: {sorted(env - documented)}")
    if TILER_REQUIRED_ENV - env:
        out.append(f"tiler env lacks {sorted(TILER_REQUIRED_ENV - env)}")
    expected = {
        "Runtime": "provided.al2023",
        "Handler": "bootstrap",
        "Architectures": ["arm64"],
        "CodeUri": "../target/lambda/sphinx-tiler/",
    }
    for key, value in expected.items():
        if p.get(key) != value:
            out.append(f"tiler {key} {p.get(key)!r} != {value!r}")
    return out


def checkov_skip_violations(tpl):
    out = []
    for name, r in tpl["Resources"].items():
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
            if not str(skip.get("comment", "")).strip():
                out.append(f"{name}: checkov skip {skip.get('id')} has no reason")
    return out


# ------------------------------------------------------------------ tests


class TemplateInvariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tpl = load()

    def mutated(self, change):
        tpl = copy.deepcopy(self.tpl)
        change(tpl["Resources"])
        return tpl

    def check(self, invariant, *mutations):
        self.assertEqual(invariant(self.tpl), [], invariant.__name__)
        for change in mutations:
            self.assertNotEqual(invariant(self.mutated(change)), [], f"{invariant.__name__} missed a violation")

    def test_worker_metric_alarms_name_what_the_worker_emits(self):
        self.assertIn("AnswerConfidence", worker_metrics()[1])
        self.check(
            worker_alarm_violations,
            lambda r: r["AnswerConfidenceAlarm"]["Properties"].__setitem__("MetricName", "Confidence"),
            lambda r: r["AnswerConfidenceAlarm"]["Properties"].__setitem__("Namespace", "Sphinx/Workers"),
            lambda r: r["AnswerConfidenceAlarm"]["Properties"]["Dimensions"][0].__setitem__("Value", "worker"),
        )

    def test_every_queue_has_a_dead_letter_queue(self):
        self.check(
            dead_letter_violations,
            lambda r: r["InferQueue"]["Properties"].pop("RedrivePolicy"),
            lambda r: r["IngestQueue"]["Properties"]["RedrivePolicy"].pop("maxReceiveCount"),
            lambda r: r.__setitem__("Extra", {"Type": "AWS::SQS::Queue", "Properties": {}}),
        )

    def test_ingest_visibility_at_least_six_lambda_timeouts(self):
        self.check(
            visibility_violations,
            lambda r: r["IngestQueue"]["Properties"].__setitem__("VisibilityTimeout", 5399),
            lambda r: r["TilerFunction"]["Properties"].__setitem__("Timeout", 901),
        )

    def test_event_source_reports_batch_item_failures(self):
        self.check(
            batch_failure_violations,
            lambda r: r["TilerFunction"]["Properties"]["Events"]["Ingest"]["Properties"].pop("FunctionResponseTypes"),
            lambda r: r["TilerFunction"]["Properties"]["Events"]["Ingest"]["Properties"].pop("ScalingConfig"),
        )

    def test_no_wildcard_on_data_planes(self):
        def star_resource(r):
            st = r["WorkerJobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
            st["Resource"] = "*"

        def star_action(r):
            st = r["TilerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
            st["Action"] = "*"

        def sqs_wildcard(r):
            st = r["TilerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][4]
            st["Action"] = ["sqs:*"]

        self.check(iam_violations, star_resource, star_action, sqs_wildcard)

    def test_bucket_private_encrypted_versioned(self):
        self.check(
            bucket_violations,
            lambda r: r["Bucket"]["Properties"]["PublicAccessBlockConfiguration"].__setitem__(
                "RestrictPublicBuckets", False
            ),
            lambda r: r["Bucket"]["Properties"].pop("BucketEncryption"),
            lambda r: r["Bucket"]["Properties"]["VersioningConfiguration"].__setitem__("Status", "Suspended"),
            lambda r: r.pop("BucketPolicy"),
            lambda r: r["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"].pop(0),
        )

    def test_queues_encrypted(self):
        self.check(
            queue_encryption_violations,
            lambda r: r["InferDeadLetterQueue"]["Properties"].pop("SqsManagedSseEnabled"),
        )

    def test_compute_environment_scales_to_zero(self):
        self.check(
            compute_violations,
            lambda r: r["GpuComputeEnvironment"]["Properties"]["ComputeResources"].__setitem__("MinvCpus", 4),
        )

    def test_job_definitions_follow_the_worker_contract(self):
        def extra_env(r):
            env = r["ServeJobDefinition"]["Properties"]["ContainerProperties"]["Environment"]
            env.append({"Name": "SPHINX_SURPRISE", "Value": "1"})

        self.check(
            job_violations,
            lambda r: r["ServeJobDefinition"]["Properties"]["ContainerProperties"].__setitem__(
                "Command", ["serve"]
            ),
            extra_env,
            lambda r: r["TrainJobDefinition"]["Properties"]["RetryStrategy"].pop("EvaluateOnExit"),
        )

    def test_tiler_settings_match_its_readme(self):
        self.check(
            tiler_env_violations,
            lambda r: r["TilerFunction"]["Properties"]["Environment"]["Variables"].__setitem__("SPHINX_TYPO", "1"),
            lambda r: r["TilerFunction"]["Properties"]["Environment"]["Variables"].pop("SPHINX_BUCKET"),
            lambda r: r["TilerFunction"]["Properties"].__setitem__("Architectures", ["x86_64"]),
        )

    def test_every_checkov_skip_has_a_reason(self):
        self.check(
            checkov_skip_violations,
            lambda r: r["Bucket"]["Metadata"]["checkov"]["skip"][0].__setitem__("comment", ""),
        )

    def test_text_mutation_is_caught_after_reparsing(self):
        """Edits the YAML text itself (not the parsed dict) in a temp copy."""
        text = TEMPLATE.read_text()
        for old, new, invariant in (
            ("MinvCpus: 0", "MinvCpus: 2", compute_violations),
            ("VisibilityTimeout: 5400", "VisibilityTimeout: 900", visibility_violations),
            ("RestrictPublicBuckets: true", "RestrictPublicBuckets: false", bucket_violations),
        ):
            self.assertEqual(text.count(old), 1, old)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "template.yaml"
                path.write_text(text.replace(old, new))
                self.assertNotEqual(invariant(load(path)), [], f"{old} -> {new} not caught")


class Scaler(unittest.TestCase):
    """The scaler's inline code, run here against fake SQS and Batch clients."""

    @classmethod
    def setUpClass(cls):
        code = load()["Resources"]["ScalerFunction"]["Properties"]["InlineCode"]
        cls.ns = {}
        exec(compile(code, "scaler_inline.py", "exec"), cls.ns)  # noqa: S102 - our own template

    def test_to_submit(self):
        f = self.ns["to_submit"]
        self.assertEqual(f(0, 0, 2000, 4), 0)  # empty queue: nothing
        self.assertEqual(f(1, 0, 2000, 4), 1)  # any work starts one worker
        self.assertEqual(f(1, 1, 2000, 4), 0)  # already covered
        self.assertEqual(f(4001, 1, 2000, 4), 2)  # backlog: ceil(4001/2000)=3, one running
        self.assertEqual(f(10**6, 0, 2000, 4), 4)  # capped at MaxWorkers
        self.assertEqual(f(10, 9, 2000, 4), 0)  # never negative

    def test_handler_counts_only_active_serve_jobs(self):
        submitted = []

        class Sqs:
            def get_queue_attributes(self, QueueUrl, AttributeNames):
                assert QueueUrl == "q"
                return {"Attributes": {"ApproximateNumberOfMessages": "4500"}}

        class Paginator:
            def paginate(self, jobQueue, jobStatus):
                jobs = {"RUNNING": ["s-serve", "s-train"], "RUNNABLE": ["s-serve"]}.get(jobStatus, [])
                yield {"jobSummaryList": [{"jobName": n} for n in jobs]}

        class Batch:
            def get_paginator(self, name):
                assert name == "list_jobs"
                return Paginator()

            def submit_job(self, **kw):
                submitted.append(kw)

        env = {
            "QUEUE_URL": "q",
            "JOB_QUEUE": "jq",
            "JOB_DEFINITION": "jd:1",
            "JOB_NAME": "s-serve",
            "MAX_WORKERS": "4",
            "PAGES_PER_WORKER": "2000",
        }
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            with contextlib.redirect_stdout(io.StringIO()) as log:
                out = self.ns["handler"]({}, None, sqs=Sqs(), batch=Batch())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.assertEqual(out, {"visible": 4500, "active": 2, "submitted": math.ceil(4500 / 2000) - 2})
        self.assertIn('"submitted": 1', log.getvalue())
        self.assertEqual(submitted, [{"jobName": "s-serve", "jobQueue": "jq", "jobDefinition": "jd:1"}])


if __name__ == "__main__":
    unittest.main()
