"""Task progress through the whole local pipeline, as a person at a terminal sees it: the real CLI (a
subprocess) against the local stack, with the real queue agent and the real diffusers runtime (tiny model).

`easel submit --wait --json` streams one JSON event per change on stderr: a multi-step task shows step n/N
with n increasing (the agent records the runtime's progress on the task, `GET /v1/tasks/{id}` returns it).
A wait cut short by `--timeout` leaves the task running and prints how to follow or cancel it;
`easel status ID --wait` then reattaches and sees it through.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Enough sampling steps at a size where each takes a sizeable fraction of a second on CPU, so the agent's
# progress writes (at most one per EASEL_AGENT_PROGRESS_SECONDS, 0.1 s in the e2e stack) land many times
# while the task generates: a machine several times faster than CI still shows several steps.
STEPS = "60"
SIZE = "256"


def easel(stack: LocalStack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cred = stack.tenant_credentials("acme")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EASEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        EASEL_ENDPOINT=stack.endpoint,
        AWS_ACCESS_KEY_ID=cred.access_key_id,
        AWS_SECRET_ACCESS_KEY=cred.secret_access_key,
        AWS_REGION=stack.region,
    )
    return subprocess.run(
        [sys.executable, "-m", "easel.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def events(stderr: str) -> list[dict[str, Any]]:
    """The JSON progress events (one per line on stderr; nothing else is allowed there under --json)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    found = [json.loads(line) for line in lines]
    assert all(e.get("event") == "progress" for e in found), stderr
    return found


def submit_args(prompt: str) -> list[str]:
    return ["submit", "--model", "sd15", "--prompt", prompt, "--steps", STEPS, "--width", SIZE,
            "--height", SIZE, "--seed", "3"]  # fmt: skip


def test_wait_shows_step_progress_of_a_multi_step_task(stack: LocalStack, tmp_path: Path) -> None:
    run = easel(stack, tmp_path, *submit_args("a lighthouse"), "--wait", "--json", "--poll", "0.1")
    assert run.returncode == 0, run.stdout + run.stderr
    task = json.loads(run.stdout)  # stdout: exactly the final task
    assert task["status"] == "succeeded"
    # The task keeps its last progress: uploading, every step done, and how long it waited for a worker.
    progress = task["progress"]
    assert (progress["phase"], progress["step"], progress["steps"]) == ("uploading", 60, 60)
    assert progress["queue_seconds"] >= 0
    seen = events(run.stderr)
    assert {e["id"] for e in seen} == {task["id"]}
    assert seen[-1]["status"] == "succeeded"
    generating = [e["step"] for e in seen if e["phase"] == "generating"]
    assert all(e["steps"] == 60 for e in seen if e["phase"] == "generating")
    # step n/60 with n increasing: several distinct values, never going back, some strictly inside.
    assert len(set(generating)) >= 2, seen
    assert generating == sorted(generating), seen
    assert any(0 < n < 60 for n in generating), seen
    phases = [e["phase"] for e in seen]
    # (waiting for a worker -> loading ->) generating ... (-> uploading, too brief to be polled) -> succeeded
    assert phases.index("generating") < phases.index("succeeded"), seen


def test_status_wait_reattaches_after_an_interrupted_wait(stack: LocalStack, tmp_path: Path) -> None:
    # --timeout 0: the wait looks once (the task was only just queued) and gives up, the task runs on.
    cut = easel(stack, tmp_path, *submit_args("a harbour"), "--wait", "--timeout", "0")
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert "Traceback" not in cut.stderr
    last = cut.stderr.strip().splitlines()[-1]
    assert last.startswith("error: still running after --timeout 0s"), cut.stderr
    follow = re.search(r"`easel status (\S+) --wait`", last)
    assert follow is not None, last
    task_id = follow.group(1)
    assert f"`easel cancel {task_id}`" in last
    # The commands printed work: status --wait follows the same task to its end.
    again = easel(stack, tmp_path, "status", task_id, "--wait", "--json", "--poll", "0.1")
    assert again.returncode == 0, again.stdout + again.stderr
    task = json.loads(again.stdout)
    assert (task["id"], task["status"]) == (task_id, "succeeded")
    assert len(task["output"]["images"]) == 1
    seen = events(again.stderr)
    assert {e["id"] for e in seen} == {task_id}
    assert seen[-1]["status"] == "succeeded"
