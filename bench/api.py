"""``easel bench api``: cold import of the API handler vs a minimal Powertools handler, and the latency of
a signed submit through the local gateway.

Cold import: a fresh interpreter per sample imports the module and reports ``perf_counter`` around the
import (interpreter start-up excluded, the same for both); samples of the two modules alternate, the
median is reported. The environment is Lambda-like (``AWS_LAMBDA_FUNCTION_NAME`` set, tracing on) so the
Tracer does what it does in Lambda. One extra ``-X importtime`` run of the API module gives the profile
(the direct imports of ``lambdas.api.app`` by cumulative time).

Submit latency: ``easel local up --no-workers`` (the api engineer's gateway: SigV4-checked, REST proxy
events, the same handler) in a child process; :class:`easel.client.EaselClient` signs and sends
``POST /v1/tasks`` from this process. Measured beside it: a signed ``GET /v1/models`` (gateway + handler,
no AWS call) and the floor, the two AWS calls a submit makes (conditional ``PutItem`` + SNS ``Publish``)
issued directly with boto3 against the same moto.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.localstack import aws_env
from bench.stats import median, percentile, ratio

API_MODULE = "lambdas.api.app"
BASELINE_MODULE = "minimal_handler"
BASELINE_DIR = Path(__file__).resolve().parent
REPO_ROOT = Path(__file__).resolve().parents[2]
IMPORT_RATIO_TARGET = 1.3
IMPORT_ABS_TARGET_MS = 300.0

_IMPORT_SNIPPET = """
import sys, time
sys.path.insert(0, {dir!r})
t = time.perf_counter()
import {module}
print(repr((time.perf_counter() - t) * 1000.0))
"""


def lambda_like_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_", "EASEL_"))}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "easel-api",
            "AWS_REGION": "us-west-2",
            "AWS_DEFAULT_REGION": "us-west-2",
            "POWERTOOLS_SERVICE_NAME": "easel-api",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def import_ms(module: str, env: dict[str, str]) -> float:
    code = _IMPORT_SNIPPET.format(dir=str(BASELINE_DIR), module=module)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(out.stdout.strip().splitlines()[-1])


def import_profile(module: str, env: dict[str, str], top: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Where the import time of ``module`` goes (one ``-X importtime`` run).

    ``direct``: the modules ``module`` imports itself, by cumulative time (a module shared by several is
    charged to the first that imports it). ``by_package``: self time of the whole import summed per
    top-level package.
    """
    code = _IMPORT_SNIPPET.format(dir=str(BASELINE_DIR), module=module)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows: list[tuple[int, str, int, int]] = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        try:
            self_us, cum_us = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        name = parts[2]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, name.strip(), self_us, cum_us))
    # -X importtime prints a module after everything it imported, indented one level deeper.
    target = next((i for i, r in enumerate(rows) if r[1] == module), None)
    if target is None:
        return {"direct": [], "by_package": []}
    depth = rows[target][0]
    first = target
    while first > 0 and rows[first - 1][0] > depth:
        first -= 1
    subtree = rows[first : target + 1]
    children = sorted((r for r in subtree if r[0] == depth + 1), key=lambda r: -r[3])
    direct = [{"module": r[1], "cumulative_ms": round(r[3] / 1000, 1)} for r in children]
    head = {"module": module, "cumulative_ms": round(rows[target][3] / 1000, 1)}
    return {"direct": [head, *direct[:top]], "by_package": by_package(subtree, top)}


def by_package(rows: list[tuple[int, str, int, int]], top: int = 12) -> list[dict[str, Any]]:
    """Self import time summed per top-level package: where the milliseconds actually go."""
    totals: dict[str, int] = {}
    for _, name, self_us, _ in rows:
        root = name.split(".")[0]
        totals[root] = totals.get(root, 0) + self_us
    ordered = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [{"package": name, "self_ms": round(us / 1000, 1)} for name, us in ordered]


@dataclass
class ImportResult:
    runs: int
    api_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    profile: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def api_median_ms(self) -> float:
        return median(self.api_ms)

    @property
    def baseline_median_ms(self) -> float:
        return median(self.baseline_ms)

    @property
    def ratio(self) -> float:
        return ratio(self.api_median_ms, self.baseline_median_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "api_median_ms": self.api_median_ms,
            "baseline_median_ms": self.baseline_median_ms,
            "ratio": self.ratio,
            "targets": {"ratio_max": IMPORT_RATIO_TARGET, "api_ms_max": IMPORT_ABS_TARGET_MS},
        }


def bench_imports(runs: int = 7) -> ImportResult:
    env = lambda_like_env()
    result = ImportResult(runs=runs)
    import_ms(API_MODULE, env)  # warm the OS file cache and the bytecode caches once for both
    import_ms(BASELINE_MODULE, env)
    for _ in range(runs):
        result.api_ms.append(import_ms(API_MODULE, env))
        result.baseline_ms.append(import_ms(BASELINE_MODULE, env))
    result.profile = import_profile(API_MODULE, env)
    return result


@dataclass
class Latency:
    name: str
    samples_ms: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": len(self.samples_ms),
            "p50_ms": percentile(self.samples_ms, 50),
            "p99_ms": percentile(self.samples_ms, 99),
            "mean_ms": sum(self.samples_ms) / len(self.samples_ms) if self.samples_ms else None,
        }


BENCH_CONFIG: dict[str, Any] = {
    "stack_name": "benchapi",
    "env": {"region": "us-west-2"},
    # The local gateway applies api.throttle as API Gateway does; this bench measures latency, not that.
    "api": {"throttle": {"rate_limit": 100000, "burst_limit": 100000}},
    "tenants": [{"id": "acme", "principals": ["arn:aws:iam::123456789012:role/acme-*"]}],
    "models": [{"name": "bench-model", "runtime": "bench"}],
    "runtimes": [{"name": "bench"}],
}


def _submit_body(i: int) -> dict[str, Any]:
    return {
        "task_type": "text-to-image",
        "model": "bench-model",
        "input": {"prompt": f"a bench dog {i}", "steps": 20, "width": 512, "height": 512, "seed": i},
    }


def bench_submit(requests: int = 200, warmup: int = 10) -> list[Latency]:
    """p50/p99 of signed submits through ``easel local up --no-workers``, its GET and AWS floors."""
    from easel.client import EaselClient
    from infra.local import state as state_file

    with tempfile.TemporaryDirectory(prefix="easel-bench-api-") as tmp:
        work = Path(tmp)
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump(BENCH_CONFIG))
        state_path = work / "local.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EASEL_"))}
        log = (work / "local.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "easel.cli", "local", "up", "--no-workers", "--port", "0",
             "--config", str(config), "--state", str(state_path)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not state_path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"easel local up did not start: {(work / 'local.log').read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            state = state_file.load(state_path)
            tenant = next(iter(state.tenants.values()))
            client = EaselClient(
                state.endpoint,
                region=state.region,
                access_key_id=tenant.access_key_id,
                secret_access_key=tenant.secret_access_key,
            )
            with client:
                for i in range(warmup):
                    client.submit(_submit_body(1_000_000 + i))
                    client.models()
                submit, models = [], []
                for i in range(requests):
                    t = time.perf_counter()
                    client.submit(_submit_body(i))
                    submit.append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    client.models()
                    models.append((time.perf_counter() - t) * 1000)
            floor = _aws_floor(state, requests, warmup)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    return [
        Latency("submit (signed POST /v1/tasks via gateway)", submit),
        Latency("models (signed GET /v1/models via gateway)", models),
        Latency("floor: PutItem + Publish direct to moto", floor),
    ]


def _aws_floor(state: Any, requests: int, warmup: int) -> list[float]:
    """The AWS calls of one submit (conditional put of the task item, publish to the tasks topic)."""
    import boto3

    from easel.contract import (
        QueueMessage,
        parse_task_request,
        request_fingerprint,
    )
    from easel.lifecycle import publish_task, queued_task
    from easel.store import TaskStore

    dummy = aws_env(state.moto_endpoint)
    session = boto3.Session(
        aws_access_key_id=dummy["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=dummy["AWS_SECRET_ACCESS_KEY"],
        region_name=state.region,
    )
    store = TaskStore(session.client("dynamodb", endpoint_url=state.moto_endpoint), state.resources.table)
    sns: Any = session.client("sns", endpoint_url=state.moto_endpoint)
    samples = []
    for i in range(warmup + requests):
        request = parse_task_request(_submit_body(10_000 + i))
        task = queued_task(request, tenant="acme", runtime="bench")
        t = time.perf_counter()
        store.create(task, request_fingerprint(request))
        publish_task(sns, state.resources.tasks_topic_arn, QueueMessage.from_task(task))
        if i >= warmup:
            samples.append((time.perf_counter() - t) * 1000)
    return samples


def summary(imports: ImportResult | None, latencies: list[Latency]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if imports is not None:
        doc["cold_import"] = imports.to_json()
    if latencies:
        doc["latency"] = [lat.to_json() for lat in latencies]
        doc["submit_over_floor_p50"] = ratio(
            percentile(latencies[0].samples_ms, 50), percentile(latencies[-1].samples_ms, 50)
        )
    return doc


def tables(imports: ImportResult | None, latencies: list[Latency]) -> list[Any]:
    from bench.report import fmt, make_table, verdict

    out = []
    if imports is not None:
        t = make_table(
            f"easel bench api: cold import (median of {imports.runs} fresh interpreters)",
            ["module", "median (ms)", "min (ms)", "max (ms)", "ratio", "target"],
        )
        t.add_row(
            API_MODULE,
            fmt(imports.api_median_ms, 1),
            fmt(min(imports.api_ms), 1),
            fmt(max(imports.api_ms), 1),
            fmt(imports.ratio, 2) + "x",
            f"<= {IMPORT_RATIO_TARGET}x {verdict(imports.ratio <= IMPORT_RATIO_TARGET)}, "
            f"<= {IMPORT_ABS_TARGET_MS:.0f} ms {verdict(imports.api_median_ms <= IMPORT_ABS_TARGET_MS)}",
        )
        t.add_row(
            f"{BASELINE_MODULE} (baseline)",
            fmt(imports.baseline_median_ms, 1),
            fmt(min(imports.baseline_ms), 1),
            fmt(max(imports.baseline_ms), 1),
            "1.00x",
            "",
        )
        out.append(t)
        p = make_table(
            "import profile of lambdas.api.app (-X importtime)", ["module (direct import)", "cumulative (ms)"]
        )
        for row in imports.profile.get("direct", [])[:8]:
            p.add_row(str(row["module"]), fmt(float(str(row["cumulative_ms"])), 1))
        for row in imports.profile.get("by_package", [])[:8]:
            p.add_row(f"package {row['package']} (self, summed)", fmt(float(str(row["self_ms"])), 1))
        out.append(p)
    if latencies:
        t = make_table(
            "easel bench api: local latency (client side)", ["call", "n", "p50 (ms)", "p99 (ms)", "mean (ms)"]
        )
        for lat in latencies:
            doc = lat.to_json()
            t.add_row(
                lat.name,
                str(doc["count"]),
                fmt(doc["p50_ms"], 1),
                fmt(doc["p99_ms"], 1),
                fmt(doc["mean_ms"], 1),
            )
        out.append(t)
    return out
