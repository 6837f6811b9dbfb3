"""Reliability rules (DESIGN section 6) against moto and the fake runtime, all over real HTTP."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from easel.contract import TaskStatus
from queue_agent.health import HealthServer, Probes
from tests.agent.conftest import Stack, wait_for

pytestmark = pytest.mark.integration


def prompts(stack: Stack) -> list[str]:
    return [c.body["prompt"] for c in stack.runtime.generation_calls()]


# -- priority -------------------------------------------------------------------------------------------------
def test_high_lane_before_queued_normal_ones(stack: Stack) -> None:
    for i in range(3):
        stack.submit(f"n{i}", prompt=f"normal {i}")
    for i in range(2):
        stack.submit(f"h{i}", prompt=f"high {i}", priority="high")
    with stack.running():
        for tid in ("n0", "n1", "n2", "h0", "h1"):
            stack.wait_status(tid, "succeeded")
    order = prompts(stack)
    assert sorted(order[:2]) == ["high 0", "high 1"]
    assert sorted(order[2:]) == ["normal 0", "normal 1", "normal 2"]


def test_normal_lane_untouched_while_high_lane_has_messages(stack: Stack) -> None:
    """Normal messages are not even received (held invisible) while high ones are queued."""
    stack.runtime.control.hold_seconds = 0.3
    for i in range(2):
        stack.submit(f"n{i}", prompt=f"normal {i}")
    for i in range(4):
        stack.submit(f"h{i}", prompt=f"high {i}", priority="high")
    samples = []
    with stack.running():
        while len(stack.runtime.generation_calls()) < 4:
            # Only while high messages still wait: once the last one is received the normal lane may be
            # prefetched (before the last high generation starts), which is the intended overlap.
            high_waiting = stack.queue_counts(stack.high_url)[0] > 0
            normal = stack.queue_counts(stack.normal_url)
            if high_waiting and stack.queue_counts(stack.high_url)[0] > 0:
                samples.append(normal)
            time.sleep(0.05)
        for tid in ("n0", "n1"):
            stack.wait_status(tid, "succeeded")
    # At least one observation while high work waited (how many depends on machine load, not on the agent).
    assert samples
    assert set(samples) == {(2, 0)}
    assert prompts(stack)[4:] in (["normal 0", "normal 1"], ["normal 1", "normal 0"])


def test_high_task_arriving_mid_run_goes_next(stack: Stack) -> None:
    """A normal task runs and another is prefetched; a high one submitted now still runs next."""
    stack.runtime.control.hold_seconds = 0.6
    for i in range(3):
        stack.submit(f"n{i}", prompt=f"normal {i}")
    with stack.running():
        wait_for(lambda: len(stack.runtime.generation_calls()) == 1, 10, "first normal running")
        stack.submit("h", prompt="high", priority="high")
        for tid in ("n0", "n1", "n2", "h"):
            stack.wait_status(tid, "succeeded")
    assert prompts(stack)[1] == "high"


# -- cancel ---------------------------------------------------------------------------------------------------
def test_canceled_while_queued_is_skipped_and_notified_once(stack: Stack) -> None:
    stack.submit("c1")
    stack.store.transition("acme", "c1", TaskStatus.CANCELED)
    stack.submit("c2")
    stack.store.transition("acme", "c2", TaskStatus.CANCELED)
    # For c2 the API already published the canceled notification (claimed it): nobody publishes again.
    assert stack.store.claim_notification("acme", "c2", TaskStatus.CANCELED)
    stack.submit("after")
    with stack.running():
        stack.wait_result("after", "succeeded")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "messages deleted")
    assert prompts(stack) == ["prompt of after"]
    assert [r["status"] for r in stack.results_for("c1")] == ["canceled"]
    assert stack.results_for("c2") == []
    assert stack.task("c1").status == "canceled"


def test_cancel_of_running_task_interrupts_and_discards(stack: Stack) -> None:
    stack.runtime.control.hold_seconds = 10
    stack.submit("run", batch_size=2)
    with stack.running():
        wait_for(lambda: stack.runtime.generation_calls(), 10, "generation started")
        stack.wait_status("run", "processing")
        stack.store.transition("acme", "run", TaskStatus.CANCELED)  # what the API's cancel does
        result = stack.wait_result("run", "canceled", timeout=5)
        (call,) = stack.runtime.generation_calls()
        assert call.interrupted
        assert stack.runtime.interrupts == 1
        # The agent goes on: the interrupt did not leak into the next task.
        stack.runtime.control.hold_seconds = 0.2
        stack.submit("next")
        stack.wait_result("next", "succeeded")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "messages deleted")
    assert result["output"] is None
    assert stack.objects("tenants/acme/tasks/run/") == []
    assert stack.task("run").status == "canceled"
    assert len(stack.results_for("run")) == 1
    assert not stack.runtime.generation_calls()[1].interrupted


# -- duplicates -----------------------------------------------------------------------------------------------
def test_duplicate_delivery_yields_one_result(stack: Stack) -> None:
    """Two deliveries of one task (random seed, so two generations would differ): one set of outputs that
    never changes after the result was published, one terminal state, one notification."""
    stack.runtime.control.hold_seconds = 0.5
    msg = stack.message("dup", batch_size=2, seed=-1)
    stack.create_record(msg)
    for _ in range(2):
        stack.sqs.send_message(QueueUrl=stack.normal_url, MessageBody=msg.model_dump_json())

    def outputs() -> dict[str, bytes]:
        return {
            k: stack.s3.get_object(Bucket=stack.resources.outputs_bucket, Key=k)["Body"].read()
            for k in stack.objects("tenants/acme/tasks/dup/")
        }

    with stack.running():
        stack.wait_result("dup", "succeeded")
        first = outputs()  # what a client fetches as soon as it is notified
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 10, "both deliveries deleted")
        # Once more, long after it succeeded: skipped, nothing changes.
        stack.sqs.send_message(QueueUrl=stack.normal_url, MessageBody=msg.model_dump_json())
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 10, "third delivery deleted")
    assert sorted(first) == ["tenants/acme/tasks/dup/0.png", "tenants/acme/tasks/dup/1.png"]
    assert outputs() == first  # first writer wins: outputs never change under a client
    assert len(stack.results_for("dup")) == 1
    assert stack.task("dup").status == "succeeded"
    assert len(stack.runtime.generation_calls()) <= 2


# -- retryable ------------------------------------------------------------------------------------------------
def test_runtime_down_then_back_retries_and_succeeds(stack: Stack) -> None:
    with stack.running() as agent:
        stack.runtime.down()
        stack.submit("flaky")
        wait_for(lambda: not agent.ready_state()["runtime_ready"], 10, "agent notices the runtime is down")
        assert agent.ready_state()["ok"] is False
        time.sleep(0.5)
        stack.runtime.up()
        result = stack.wait_result("flaky", "succeeded", timeout=20)
        wait_for(lambda: agent.ready_state()["ok"], 10, "ready again")
    assert result["attempts"] == 2
    assert agent.stats.retried == 1
    assert len(stack.results_for("flaky")) == 1


def test_runtime_busy_503_is_retried_with_backoff(stack: Stack) -> None:
    stack.runtime.control.fail_next = [503]
    stack.submit("busy")
    with stack.running() as agent:
        stack.wait_result("busy", "succeeded", timeout=20)
    calls = stack.runtime.generation_calls()
    assert len(calls) == 2
    # Backoff from receive count 1 with base 1 s: the retry came at least ~1 s later.
    assert calls[1].started - calls[0].started >= 0.9
    assert agent.stats.retried == 1


# -- permanent --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "runtime_fail", "code", "needle"),
    [
        ("ghost", None, "model_missing", "ghost"),
        ("unknown-model", None, "unsupported", "not served by runtime 'sd15'"),
        ("sd15", 422, "runtime_rejected", "422"),
    ],
)
def test_permanent_failure_fails_task_with_reason(
    stack: Stack, model: str, runtime_fail: int | None, code: str, needle: str
) -> None:
    if runtime_fail:
        stack.runtime.control.fail_next = [runtime_fail]
    stack.submit("bad", model=model)
    with stack.running():
        result = stack.wait_result("bad", "failed")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "message deleted")
    assert result["error"]["code"] == code
    assert needle in result["error"]["message"]
    assert result["_attributes"]["status"] == "failed"
    assert stack.task("bad").error is not None
    assert len(stack.results_for("bad")) == 1


def test_task_timeout_interrupts_and_fails(stack: Stack) -> None:
    stack.runtime.control.hold_seconds = 10
    stack.submit("slow")
    with stack.running(task_timeout_seconds=0.5):
        result = stack.wait_result("slow", "failed", timeout=10)
    assert result["error"]["code"] == "timeout"
    assert stack.runtime.interrupts == 1
    assert stack.objects("tenants/acme/tasks/slow/") == []


# -- unknown errors, poison, DLQ ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_poison_message_goes_to_dlq_after_max_receives(stack: Stack) -> None:
    stack.set_lane(visibility=1, max_receive=2)
    stack.sqs.send_message(QueueUrl=stack.normal_url, MessageBody='{"not": "a task"}')
    with stack.running(visibility_timeout_seconds=1, max_receive_count=2) as agent:
        wait_for(lambda: stack.queue_counts(stack.normal_dlq)[0] == 1, 15, "poison message in the DLQ")
    assert stack.queue_counts(stack.normal_url) == (0, 0)
    assert agent.stats.left == 2
    dead = stack.sqs.receive_message(QueueUrl=stack.normal_dlq)["Messages"][0]
    assert dead["Body"] == '{"not": "a task"}'


def test_malformed_message_of_known_task_fails_it(stack: Stack) -> None:
    msg = stack.message("mangled")
    stack.create_record(msg)
    body = json.loads(msg.model_dump_json())
    body["input"]["steps"] = "many"
    stack.sqs.send_message(QueueUrl=stack.normal_url, MessageBody=json.dumps(body))
    with stack.running():
        result = stack.wait_result("mangled", "failed")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "message deleted")
    assert result["error"]["code"] == "invalid_message"
    assert "input.steps" in result["error"]["message"]


@pytest.mark.slow
def test_unknown_error_retries_then_dlq_and_task_failed_on_last_receive(stack: Stack) -> None:
    stack.set_lane(visibility=1, max_receive=2)
    stack.runtime.control.fail_always = 500
    stack.submit("boom")
    with stack.running(visibility_timeout_seconds=1, max_receive_count=2):
        result = stack.wait_result("boom", "failed", timeout=15)
        wait_for(lambda: stack.queue_counts(stack.normal_dlq)[0] == 1, 15, "message in the DLQ")
    assert result["error"]["code"] == "retries_exhausted"
    assert "HTTP 500" in result["error"]["message"]
    assert len(stack.runtime.generation_calls()) == 2
    assert stack.task("boom").attempts == 2


@pytest.mark.slow
def test_heartbeat_keeps_a_long_task_invisible(stack: Stack) -> None:
    """Queue visibility 4 s, task 8 s: without the heartbeat the message would be delivered again. (The
    margins leave a loaded machine's heartbeat a second or more of slack per extension.)"""
    stack.set_lane(visibility=4, max_receive=5)
    stack.runtime.control.hold_seconds = 8
    stack.submit("long")
    with stack.running(visibility_timeout_seconds=4) as agent:
        stack.wait_result("long", "succeeded", timeout=30)
        # A lapsed visibility would have redelivered the message while the task ran (4 s into 8 s), so a
        # second receive would already be counted by now: nothing to wait for.
        assert agent.stats.received == 1
    assert len(stack.runtime.generation_calls()) == 1
    assert stack.task("long").attempts == 1
    assert agent.heartbeat.extensions >= 3
    assert stack.queue_counts(stack.normal_url) == (0, 0)


@pytest.mark.slow
def test_heartbeat_renews_the_short_receive_visibility_of_prefetched_messages(stack: Stack) -> None:
    """Received with a 2 s visibility (the queue's is 300 s) and renewed by the heartbeat: the prefetched
    tasks wait behind 3 s generations, longer than their visibility, and still run once each."""
    stack.set_lane(visibility=300, max_receive=5)
    stack.runtime.control.hold_seconds = 3
    for task_id in ("p1", "p2", "p3"):
        stack.submit(task_id)
    with stack.running(agent_receive_visibility_seconds=2, agent_prefetch=2) as agent:
        for task_id in ("p1", "p2", "p3"):
            stack.wait_result(task_id, "succeeded", timeout=60)
    assert len(stack.runtime.generation_calls()) == 3
    assert [stack.task(t).attempts for t in ("p1", "p2", "p3")] == [1, 1, 1]
    assert agent.heartbeat.extensions >= 4
    assert stack.queue_counts(stack.normal_url) == (0, 0)


# -- readiness -------------------------------------------------------------------------------------------------
def test_readiness_waits_for_runtime_and_fails_visibly(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack.runtime.control.health = "starting"
    agent = stack.agent(stack.settings(agent_runtime_ready_timeout_seconds=0.5))
    probes = Probes(
        ready=agent.ready_state, live=agent.live_state, drain=agent.drain, stats=agent.stats.snapshot
    )
    server = HealthServer(probes, host="127.0.0.1", port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    import threading

    thread = threading.Thread(target=agent.run, daemon=True)
    stack.submit("waiting")
    try:
        with caplog.at_level("ERROR"):
            thread.start()
            wait_for(lambda: "runtime did not become ready" in caplog.text, 10, "error log")
        assert httpx.get(f"{base}/ready").status_code == 503
        assert httpx.get(f"{base}/live").status_code == 200
        assert stack.runtime.generation_calls() == []
        assert stack.queue_counts(stack.normal_url)[1] == 0  # nothing held while the runtime is not ready
        stack.runtime.control.health = "ready"
        wait_for(lambda: httpx.get(f"{base}/ready").status_code == 200, 10, "ready")
        stack.wait_result("waiting", "succeeded")
        stats = httpx.get(f"{base}/stats").json()
        assert stats["tasks_done"] == 1
        drained = httpx.get(f"{base}/drain", timeout=30)
        assert drained.status_code == 200 and drained.json() == {"drained": True}
        assert httpx.get(f"{base}/ready").status_code == 503
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        agent.request_stop()
        server.stop()
