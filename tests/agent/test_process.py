"""``python -m queue_agent`` as its own process, configured only by the environment of docs/development.md:
SIGTERM mid-task loses nothing, /drain, exit codes, JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.serve import free_port
from tests.agent.conftest import ROOT_DIR, Stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class AgentProcess:
    def __init__(self, stack: Stack, log_path: Path, **extra: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
        env.update(
            {
                "EASEL_RUNTIME": "sd15",
                "EASEL_HIGH_QUEUE_URL": stack.high_url,
                "EASEL_NORMAL_QUEUE_URL": stack.normal_url,
                "EASEL_TABLE_NAME": stack.resources.table,
                "EASEL_OUTPUTS_BUCKET": stack.resources.outputs_bucket,
                "EASEL_RESULTS_TOPIC_ARN": stack.resources.results_topic_arn,
                "EASEL_MODELS": json.dumps({"sd15": "sd15"}),
                "EASEL_RUNTIME_URL": stack.runtime.url,
                "EASEL_VISIBILITY_TIMEOUT_SECONDS": "30",
                "EASEL_MAX_RECEIVE_COUNT": "3",
                "EASEL_AGENT_PORT": str(self.port),
                "EASEL_AGENT_HOST": "127.0.0.1",
                "EASEL_AGENT_HIGH_WAIT_SECONDS": "1",
                "EASEL_AGENT_NORMAL_WAIT_SECONDS": "1",
                "EASEL_AGENT_CANCEL_POLL_SECONDS": "0.2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "queue_agent"],
            cwd=ROOT_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=timeout)

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                return self.get("/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 20, "agent process ready")

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def lines(self) -> list[dict[str, object]]:
        self._log.flush()
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def spawn(stack: Stack, tmp_path: Path) -> Iterator[object]:
    procs: list[AgentProcess] = []

    def start(**extra: str) -> AgentProcess:
        p = AgentProcess(stack, tmp_path / f"agent{len(procs)}.log", **extra)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.close()


def test_sigterm_mid_task_finishes_within_grace(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    stack.runtime.control.hold_seconds = 1.5
    agent = spawn(EASEL_AGENT_SHUTDOWN_GRACE_SECONDS="20")
    agent.wait_ready()
    stack.submit("t1")
    stack.submit("t2")  # prefetched while t1 runs: must go back to the queue at once
    wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
    wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 2), 10, "t2 prefetched")
    assert agent.terminate() == 0
    assert stack.task("t1").status == "succeeded"
    assert [r["status"] for r in stack.results_for("t1")] == ["succeeded"]
    assert stack.task("t2").status == "queued"
    assert stack.queue_counts(stack.normal_url) == (1, 0)  # t2 visible again for another pod
    assert len(stack.runtime.generation_calls()) == 1
    lines = agent.lines()
    done = [ln for ln in lines if ln.get("event") == "task_done"]
    assert [(d["task_id"], d["status"]) for d in done] == [("t1", "succeeded")]
    assert done[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Easel"  # type: ignore[index]
    assert any(ln["msg"] == "agent drained" for ln in lines)


def test_sigterm_past_grace_returns_the_message(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    stack.runtime.control.hold_seconds = 30
    agent = spawn(EASEL_AGENT_SHUTDOWN_GRACE_SECONDS="0.5")
    agent.wait_ready()
    stack.submit("long")
    wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
    started = time.monotonic()
    assert agent.terminate() == 0
    assert time.monotonic() - started < 15
    assert stack.runtime.interrupts == 1
    assert stack.queue_counts(stack.normal_url) == (1, 0)  # returned: visible again now
    task = stack.task("long")
    assert task.status == "processing"  # not failed: the next agent picks it up
    assert stack.results_for("long") == []
    assert stack.objects("tenants/acme/tasks/long/") == []


def test_drain_endpoint_then_sigterm(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    agent = spawn()
    agent.wait_ready()
    assert agent.get("/live").status_code == 200
    stats = agent.get("/stats").json()
    assert stats["tasks_done"] == 0 and "runtime_busy_seconds" in stats
    drained = agent.get("/drain", timeout=30)
    assert drained.status_code == 200 and drained.json() == {"drained": True}
    assert agent.get("/ready").status_code == 503
    stack.submit("after-drain")
    # Drained means the pollers were joined before /drain answered: no receive can start any more, so the
    # message stays in the queue, visible, with nothing to wait for.
    assert stack.queue_counts(stack.normal_url) == (1, 0)
    assert stack.runtime.generation_calls() == []
    assert agent.get("/stats").json()["received"] == 0
    assert agent.proc.poll() is None  # stays up until the kubelet's SIGTERM
    assert agent.terminate() == 0


def test_invalid_environment_exits_2(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    agent = spawn(EASEL_MODELS="not json")
    assert agent.proc.wait(timeout=20) == 2
    assert any("invalid agent settings" in str(ln.get("msg")) for ln in agent.lines())


def test_sigterm_with_a_runtime_that_ignores_interrupt(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    """A wedged runtime cannot keep the pod: the message goes back, the process still exits 0."""
    stack.runtime.control.hold_seconds = 60
    stack.runtime.control.ignore_interrupt = True
    agent = spawn(EASEL_AGENT_SHUTDOWN_GRACE_SECONDS="0.3", EASEL_AGENT_INTERRUPT_WAIT_SECONDS="0.5")
    agent.wait_ready()
    stack.submit("wedged")
    stack.submit("waiting")  # prefetched: returned at once on SIGTERM
    wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
    wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 2), 10, "second prefetched")
    started = time.monotonic()
    assert agent.terminate() == 0
    assert time.monotonic() - started < 10
    assert stack.runtime.interrupts >= 1
    assert stack.queue_counts(stack.normal_url) == (2, 0)
    assert stack.task("wedged").status == "processing"
    assert stack.task("waiting").status == "queued"
    assert any(ln["msg"] == "loop stuck past the grace period; exiting" for ln in agent.lines())


# -- recovery without waiting out timeouts (chaos) ------------------------------------------------------------
def test_sigkill_holding_a_running_and_two_prefetched_tasks(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    """A killed agent (no drain at all) held one running and two prefetched messages, received with a 3 s
    visibility its heartbeat renewed. The queue's own visibility is 300 s: the tasks can only come back in
    time because the renewals stopped with the process. Another agent completes each exactly once."""
    stack.set_lane(visibility=300, max_receive=5)
    stack.runtime.control.hold_seconds = 600
    dead = spawn(EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS="3", EASEL_AGENT_PREFETCH="2")
    dead.wait_ready()
    for task_id in ("k1", "k2", "k3"):
        stack.submit(task_id)
    wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
    wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 3), 10, "one running, two prefetched")
    dead.proc.kill()
    assert dead.proc.wait(timeout=10) == -signal.SIGKILL
    killed = time.monotonic()
    stack.runtime.control.hold_seconds = 0
    stack.runtime.release()  # the dead agent's generation ends; nobody reads its answer
    with stack.running(agent_receive_visibility_seconds=3):
        for task_id in ("k1", "k2", "k3"):
            stack.wait_result(task_id, "succeeded", timeout=60)
        recovered = time.monotonic() - killed
    print(f"all three succeeded {recovered:.1f} s after SIGKILL (queue visibility 300 s)")
    for task_id in ("k1", "k2", "k3"):
        assert [r["status"] for r in stack.results_for(task_id)] == ["succeeded"]
        assert stack.task(task_id).error is None
    assert len(stack.runtime.generation_calls()) == 4  # the orphaned one, then each task once
    assert stack.queue_counts(stack.normal_url) == (0, 0)


def test_sigterm_lets_a_task_finish_that_will_end_before_the_deadline(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    stack.runtime.control.hold_seconds = 3
    stack.runtime.control.progress = 0.9
    agent = spawn(EASEL_AGENT_SHUTDOWN_GRACE_SECONDS="30")
    agent.wait_ready()
    stack.submit("soon")
    wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
    assert agent.terminate() == 0
    assert stack.runtime.interrupts == 0
    assert stack.task("soon").status == "succeeded"
    assert [r["status"] for r in stack.results_for("soon")] == ["succeeded"]
    assert stack.queue_counts(stack.normal_url) == (0, 0)


def test_sigterm_returns_at_once_a_task_that_would_miss_the_deadline(stack: Stack, spawn) -> None:  # type: ignore[no-untyped-def]
    """1 % done: the rest would take far longer than the 60 s deadline, so the agent does not wait it out:
    it interrupts the runtime and returns the message at once (queue visibility 300 s: a visible message
    was returned, not expired). Nothing fails; another agent completes the task."""
    stack.set_lane(visibility=300, max_receive=5)
    stack.runtime.control.hold_seconds = 600
    stack.runtime.control.progress = 0.01
    agent = spawn(EASEL_AGENT_SHUTDOWN_GRACE_SECONDS="60")
    agent.wait_ready()
    stack.submit("long")
    wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
    wait_for(lambda: stack.task("long").status == "processing", 10, "processing")
    started = time.monotonic()
    assert agent.terminate(timeout=60) == 0
    returned = time.monotonic() - started
    print(f"SIGTERM to message visible again (process exited): {returned:.2f} s; deadline 60 s")
    assert stack.runtime.interrupts == 1
    assert stack.queue_counts(stack.normal_url) == (1, 0)
    assert stack.task("long").status == "processing" and stack.task("long").error is None
    assert stack.results_for("long") == []
    assert any("would not finish before the deadline" in str(ln.get("why")) for ln in agent.lines())
    stack.runtime.control.hold_seconds = 0
    with stack.running():
        stack.wait_result("long", "succeeded", timeout=30)
    assert [r["status"] for r in stack.results_for("long")] == ["succeeded"]
    assert stack.task("long").error is None
