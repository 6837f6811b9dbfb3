"""The local AWS stack of a bench run: moto in a child process, resources provisioned from a bench config.

Tasks are written to the table and published through the tasks topic exactly as the API does
(``TaskStore.create`` with the request fingerprint, then an SNS publish of the queue message with the
routing attributes), so the lane queue's filter policy routes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from easel.config import EaselConfig, parse_config
from easel.contract import (
    QueueMessage,
    Task,
    parse_task_request,
    request_fingerprint,
)
from easel.lifecycle import publish_task, queued_task
from easel.naming import Names
from easel.store import TaskStore
from infra.local.provision import Resources, provision

REGION = "us-west-2"
RUNTIME = "bench"
MODEL = "bench-model"
MODEL_PATH = "bench-model"
TENANT = "acme"

# A config of its own, so an edited config.yaml never changes what the bench measures.
BENCH_CONFIG: dict[str, Any] = {
    "stack_name": "bench",
    "env": {"region": REGION},
    "tenants": [{"id": TENANT, "principals": ["arn:aws:iam::123456789012:role/acme-*"]}],
    "models": [{"name": MODEL, "runtime": RUNTIME, "path": MODEL_PATH}],
    "runtimes": [{"name": RUNTIME}],
}


def bench_config() -> EaselConfig:
    return parse_config(BENCH_CONFIG, "bench config")


def aws_env(endpoint: str) -> dict[str, str]:
    """Environment pointing boto3 (ours and the agents') at the local endpoint with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@dataclass
class LocalStack:
    endpoint: str
    config: EaselConfig
    names: Names
    resources: Resources
    session: Any
    moto_pid: int | None = None

    @property
    def normal_queue_url(self) -> str:
        return self.resources.lanes[RUNTIME]["normal"].queue_url

    @property
    def high_queue_url(self) -> str:
        return self.resources.lanes[RUNTIME]["high"].queue_url

    def reset(self) -> None:
        """Empty moto and provision again: every run starts from the same state."""
        httpx.post(f"{self.endpoint}/moto-api/reset", timeout=30).raise_for_status()
        self.resources = provision(self.config, self.names, self.session)

    def enqueue(
        self, count: int, *, batch_id: str, width: int = 64, height: int = 64, steps: int = 1
    ) -> list[Task]:
        """Write ``count`` text-to-image tasks and publish them like the API's submit does."""
        store = TaskStore(self.session.client("dynamodb"), self.resources.table)
        sns = self.session.client("sns")
        tasks = []
        for i in range(count):
            request = parse_task_request(
                {
                    "id": f"{batch_id}-{i:04d}",
                    "task_type": "text-to-image",
                    "model": MODEL,
                    "input": {
                        "prompt": f"bench {i}",
                        "steps": steps,
                        "width": width,
                        "height": height,
                        "seed": i,
                    },
                }
            )
            assert request.id is not None
            task = queued_task(request, tenant=TENANT, runtime=RUNTIME)
            store.create(task, request_fingerprint(request))
            publish_task(sns, self.resources.tasks_topic_arn, QueueMessage.from_task(task))
            tasks.append(task)
        return tasks

    def queue_depth(self, url: str) -> int:
        attrs = self.session.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def statuses(self, tasks: list[Task]) -> dict[str, int]:
        store = TaskStore(self.session.client("dynamodb"), self.resources.table)
        counts: dict[str, int] = {}
        for task in tasks:
            status = str(store.get(task.tenant, task.id).status)
            counts[status] = counts.get(status, 0) + 1
        return counts


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; NaN elsewhere or when gone)."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # After the command name: state is field 3, utime and stime are fields 14 and 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Children run ``python -m bench.*`` (a top-level package of the repository, never installed in images):
# the repository root goes first on their path, whatever the working directory.
REPO_ROOT = str(Path(__file__).resolve().parents[1])


def importable(env: dict[str, str]) -> dict[str, str]:
    paths = [REPO_ROOT, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {**env, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def new_batch_id() -> str:
    return uuid.uuid4().hex[:8]


@contextmanager
def local_stack() -> Iterator[LocalStack]:
    """Start moto in a child process, provision the bench config, and stop moto on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.moto_child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=importable({**os.environ, "PYTHONUNBUFFERED": "1"}),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"moto child did not start (said {line!r})")
        endpoint = f"http://127.0.0.1:{int(line.split()[1])}"
        config = bench_config()
        names = Names.of(config, region=REGION)
        env = aws_env(endpoint)
        session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # so clients made from the session use the endpoint
        try:
            stack = LocalStack(endpoint, config, names, provision(config, names, session), session, proc.pid)
            yield stack
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
