"""One trace per task through the local pipeline: the gateway's request span, the agent's spans and the
runtime's spans share one trace id and nest in order; a retried task (runtime killed mid-generation) shows
both attempts; a canceled running task shows the interrupt; each webhook delivery attempt (the local
webhooks worker running the Lambda's code) is a span under the agent's publish span, retries included;
``easel trace`` prints each of them."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from easel.cli import app
from easel.client import EaselClient
from easel.traceview import Stage, read_spans, task_trace
from infra.local.demo import tiny_png, upload_init_image
from infra.local.stack import LocalStack
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

AGENT_STAGES = ("queue wait", "fetch inputs", "model switch", "generate", "upload", "publish")


def t2i(**input_: Any) -> dict[str, Any]:
    return {
        "task_type": "text-to-image",
        "model": "sd15",
        "input": {"prompt": "a lighthouse", "steps": 3, "width": 64, "height": 64, "seed": 7, **input_},
    }


def spans_of(stack: LocalStack, task_id: str, *, attempts: int = 1, timeout: float = 60) -> list[Stage]:
    """The task's waterfall once ``attempts`` finished agent attempts are on disk (a span is written when it
    ends; the task span ends after the result is published, so this waits for that event, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        stages = task_trace(read_spans(stack.traces_dir), task_id)
        done = [s for s in stages if s.name == "easel.task" and "easel.outcome" in s.attributes]
        if len(done) >= attempts or time.monotonic() > deadline:
            return stages
        time.sleep(0.2)


def deliveries_of(stack: LocalStack, task_id: str, outcome: str, *, timeout: float = 90) -> list[Stage]:
    """The task's waterfall once a webhook delivery span with ``outcome`` is on disk (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        stages = task_trace(read_spans(stack.traces_dir), task_id)
        hooks = [s for s in stages if s.name == "webhook delivery"]
        if any(s.attributes.get("easel.outcome") == outcome for s in hooks) or time.monotonic() > deadline:
            return stages
        time.sleep(0.2)


def one(stages: list[Stage], name: str, service: str | None = None) -> Stage:
    found = [s for s in stages if s.name == name and (service is None or s.service == service)]
    assert len(found) == 1, (name, [(s.name, s.service) for s in stages])
    return found[0]


def children(stages: list[Stage], parent: Stage) -> list[Stage]:
    return [s for s in stages if s.parent_id == parent.span_id]


def ancestor(stages: list[Stage], stage: Stage, of: Stage) -> bool:
    by_id = {s.span_id: s for s in stages}
    parent = by_id.get(stage.parent_id or "")
    while parent is not None:
        if parent.span_id == of.span_id:
            return True
        parent = by_id.get(parent.parent_id or "")
    return False


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_one_trace_from_the_api_through_the_agent_to_the_runtime(
    stack: LocalStack, acme: EaselClient
) -> None:
    task = acme.wait(acme.submit(t2i())["id"], timeout=180, poll_seconds=0.3)
    assert task["status"] == "succeeded"
    stages = spans_of(stack, task["id"])
    assert len({s.trace_id for s in stages}) == 1
    assert {s.service for s in stages} == {"easel-api", "easel-agent", "easel-runtime"}

    api = one(stages, "POST /v1/tasks")
    assert api.depth == 0 and api.service == "easel-api" and api.attributes["easel.task_id"] == task["id"]
    agent = one(stages, "easel.task")
    assert agent.parent_id == api.span_id and agent.attributes["easel.outcome"] == "succeeded"
    assert agent.attributes["easel.queue_seconds"] >= 0
    # The agent's stages, children of its task span, in the order they ran.
    kids = {s.name: s for s in children(stages, agent)}
    assert set(AGENT_STAGES) <= set(kids), sorted(kids)
    offsets = [kids[name].offset for name in AGENT_STAGES]
    assert offsets == sorted(offsets), list(zip(AGENT_STAGES, offsets, strict=True))
    assert kids["queue wait"].offset <= agent.offset  # the wait ends when the agent receives the task
    assert not any(s.error for s in stages)

    # The runtime's request span (FastAPI's own server span) is a child of the agent's generate span
    # (traceparent over HTTP) ...
    generate = kids["generate"]
    request = one(stages, "POST /sdapi/v1/txt2img")
    assert request.parent_id == generate.span_id and request.service == "easel-runtime"
    # ... holding the generation (steps, size), its denoising and decode parts, and the encoding.
    runtime_generate = one(stages, "generate", "easel-runtime")
    assert ancestor(stages, runtime_generate, request)
    assert runtime_generate.attributes["easel.steps"] == 3
    assert (runtime_generate.attributes["easel.width"], runtime_generate.attributes["easel.height"]) == (
        64,
        64,
    )
    denoise = one(stages, "denoise")
    decode = one(stages, "vae decode")
    assert denoise.parent_id == decode.parent_id == runtime_generate.span_id
    assert denoise.attributes["easel.steps"] == 3
    assert denoise.offset <= decode.offset
    encode = one(stages, "encode")
    assert ancestor(stages, encode, request) and encode.offset >= decode.offset
    # Nested in time as well: every child starts inside its parent.
    by_id = {s.span_id: s for s in stages}
    for s in stages:
        parent = by_id.get(s.parent_id or "")
        if parent is not None and s.name != "queue wait":
            assert parent.offset <= s.offset + 1e-3, (s.name, parent.name)

    shown = cli("trace", task["id"], "--dir", str(stack.traces_dir))
    assert shown.exit_code == 0, shown.output
    for name in ("POST /v1/tasks", "easel.task", "queue wait", "generate", "denoise", "vae decode", "upload"):
        assert name in shown.output, name
    assert "outcome=succeeded" in shown.output
    as_json = cli("trace", task["id"], "--dir", str(stack.traces_dir), "--json")
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["task_id"] == task["id"]
    assert [s["name"] for s in doc["stages"]] == [s.name for s in stages]
    assert doc["stages"][0]["offset_seconds"] == 0.0


def test_logs_of_every_process_are_json_lines_with_the_task_and_trace_ids(
    stack: LocalStack, acme: EaselClient
) -> None:
    task = acme.wait(acme.submit(t2i(seed=8))["id"], timeout=180, poll_seconds=0.3)
    trace_id = spans_of(stack, task["id"])[0].trace_id
    log_dir = stack.options.work_dir / "logs"
    lines: dict[str, list[dict[str, Any]]] = {}
    for path in log_dir.glob("*.log"):
        for raw in path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and doc.get("task_id") == task["id"]:
                lines.setdefault(str(doc.get("service")), []).append(doc)
    assert {"easel-agent", "easel-runtime"} <= set(lines), sorted(lines)
    for docs in lines.values():
        assert all(d["trace_id"] == trace_id for d in docs), docs
    generated = [d for d in lines["easel-runtime"] if d["msg"] == "generated"]
    assert len(generated) == 1
    assert {k: generated[0][k] for k in ("model", "steps", "width", "height", "images")} == {
        "model": "stable-diffusion-v1-5",
        "steps": 3,
        "width": 64,
        "height": 64,
        "images": 1,
    }
    assert generated[0]["seconds"] > 0
    assert any(d["msg"] == "task done" for d in lines["easel-agent"])


def test_a_failed_task_shows_its_failing_stage_in_red(stack: LocalStack, acme: EaselClient) -> None:
    assert stack.resources is not None
    # A PNG whose header is whole (what the API checks) but whose pixels are cut off: the agent's input
    # fetch refuses it, so the task fails in that stage and never reaches the runtime.
    truncated = upload_init_image(
        stack.client("s3"), stack.resources.outputs_bucket, "acme", tiny_png(64, 64)[:60]
    )
    body = {
        "task_type": "image-to-image",
        "model": "sd15",
        "input": {"prompt": "x", "steps": 3, "width": 64, "height": 64, "init_images": [truncated]},
    }
    task = acme.wait(acme.submit(body)["id"], timeout=180, poll_seconds=0.3)
    assert task["status"] == "failed" and task["error"]["code"] == "input_invalid"
    stages = spans_of(stack, task["id"])
    agent = one(stages, "easel.task")
    assert agent.error and agent.attributes["easel.outcome"] == "failed"
    fetch = one(stages, "fetch inputs")
    assert fetch.error and fetch.parent_id == agent.span_id
    assert not [s for s in stages if s.service == "easel-runtime"]  # it never reached the runtime
    shown = cli("trace", task["id"], "--dir", str(stack.traces_dir))
    assert shown.exit_code == 0, shown.output
    assert "fetch inputs" in shown.output and "error=" in shown.output
    doc = json.loads(cli("trace", task["id"], "--dir", str(stack.traces_dir), "--json").output)
    assert [s["name"] for s in doc["stages"] if s["error"]] == ["easel.task", "fetch inputs"]


def test_a_canceled_running_task_shows_the_interrupt(stack: LocalStack, acme: EaselClient) -> None:
    task = acme.submit(t2i(steps=100, width=256, height=256, seed=9))
    deadline = time.monotonic() + 120
    while acme.get(task["id"])["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert acme.cancel(task["id"])["status"] == "canceled"
    stages = spans_of(stack, task["id"])
    agent = one(stages, "easel.task")
    assert agent.attributes["easel.outcome"] == "canceled"
    assert any(e["name"] == "interrupt" for e in agent.events)
    runtime_generate = one(stages, "generate", "easel-runtime")
    assert any(e["name"] == "interrupted" for e in runtime_generate.events)
    assert runtime_generate.attributes["easel.steps_completed"] < 100
    shown = cli("trace", task["id"], "--dir", str(stack.traces_dir))
    assert shown.exit_code == 0, shown.output
    assert "outcome=canceled" in shown.output and "interrupt" in shown.output


def test_a_retried_task_shows_both_attempts_in_one_trace(stack: LocalStack, acme: EaselClient) -> None:
    task = acme.submit(t2i(steps=60, width=192, height=192, seed=10))
    deadline = time.monotonic() + 120
    while acme.get(task["id"])["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime = {c.name: c for c in stack.children}["sd15/runtime"]
    assert runtime.pid is not None
    os.kill(runtime.pid, signal.SIGKILL)  # the runtime goes down once, mid-generation
    done = acme.wait(task["id"], timeout=300, poll_seconds=0.5)
    assert done["status"] == "succeeded"
    stages = spans_of(stack, task["id"], attempts=2)
    assert len({s.trace_id for s in stages}) == 1
    attempts = sorted((s for s in stages if s.name == "easel.task"), key=lambda s: s.offset)
    assert [a.attributes["easel.outcome"] for a in attempts] == ["retry", "succeeded"]
    assert [a.attributes["easel.receive_count"] for a in attempts] == [1, 2]
    assert attempts[0].error and not attempts[1].error
    failed_generate = [s for s in children(stages, attempts[0]) if s.name == "generate"]
    assert len(failed_generate) == 1 and failed_generate[0].error
    shown = cli("trace", task["id"], "--dir", str(stack.traces_dir))
    assert shown.exit_code == 0, shown.output
    assert "outcome=retry" in shown.output and "outcome=succeeded" in shown.output


def test_trace_of_an_unknown_task_says_so(stack: LocalStack) -> None:
    shown = cli("trace", "no-such-task", "--dir", str(stack.traces_dir))
    assert shown.exit_code == 1
    assert "no spans of task no-such-task" in shown.output


def with_webhook(url: str, seed: int) -> dict[str, Any]:
    return {**t2i(seed=seed), "webhook": url, "webhook_events_filter": ["completed"]}


def test_a_webhook_delivery_is_a_span_under_the_publish_span(
    stack: LocalStack, acme: EaselClient, webhook_receiver: WebhookReceiver
) -> None:
    url = webhook_receiver.script("/traced/ok")  # the receiver's default answer: 204
    task = acme.wait(acme.submit(with_webhook(url, 11))["id"], timeout=180, poll_seconds=0.3)
    assert task["status"] == "succeeded"
    stages = deliveries_of(stack, task["id"], "delivered")
    assert len({s.trace_id for s in stages}) == 1
    publish = one(stages, "publish", "easel-agent")
    delivery = one(stages, "webhook delivery", "easel-webhooks")
    assert delivery.parent_id == publish.span_id
    assert delivery.offset >= publish.offset
    attrs = delivery.attributes
    assert attrs["easel.outcome"] == "delivered" and attrs["easel.attempt"] == 1
    assert attrs["http.response.status_code"] == 204 and attrs["easel.event"] == "completed"
    assert (attrs["server.address"], attrs["url.path"]) == ("127.0.0.1", "/traced/ok")
    assert not delivery.error
    # The waterfall lists it right after the publish span it belongs to.
    names = [s.name for s in stages]
    assert names[names.index("publish") + 1] == "webhook delivery"
    shown = cli("trace", task["id"], "--dir", str(stack.traces_dir))
    assert shown.exit_code == 0, shown.output
    assert "webhook delivery" in shown.output and "outcome=delivered" in shown.output


def test_a_failing_receiver_shows_each_retry_with_its_status_then_delivered_or_gave_up(
    stack: LocalStack, acme: EaselClient, webhook_receiver: WebhookReceiver
) -> None:
    # One receiver path recovers on the third try, the other never does (the local queue allows 3).
    flaky = acme.submit(with_webhook(webhook_receiver.script("/traced/flaky", 503, 503), 12))
    down = acme.submit(with_webhook(webhook_receiver.script("/traced/down", 503, 503, 503, 503), 13))
    for task in (flaky, down):
        assert acme.wait(task["id"], timeout=180, poll_seconds=0.3)["status"] == "succeeded"

    def attempts(task_id: str, outcome: str) -> list[Stage]:
        stages = deliveries_of(stack, task_id, outcome)
        assert len({s.trace_id for s in stages}) == 1
        publish = one(stages, "publish", "easel-agent")
        hooks = sorted((s for s in stages if s.name == "webhook delivery"), key=lambda s: s.offset)
        assert all(h.parent_id == publish.span_id for h in hooks)
        return hooks

    hooks = attempts(flaky["id"], "delivered")
    assert [h.attributes["easel.attempt"] for h in hooks] == [1, 2, 3]
    assert [h.attributes["easel.outcome"] for h in hooks] == ["retry", "retry", "delivered"]
    assert [h.attributes["http.response.status_code"] for h in hooks] == [503, 503, 204]
    assert [h.error for h in hooks] == [True, True, False]
    assert hooks[0].status_message == "HTTP 503"

    hooks = attempts(down["id"], "gave up")
    assert [h.attributes["easel.attempt"] for h in hooks] == [1, 2, 3]
    assert [h.attributes["easel.outcome"] for h in hooks] == ["retry", "retry", "gave up"]
    assert all(h.attributes["http.response.status_code"] == 503 and h.error for h in hooks)
    shown = cli("trace", down["id"], "--dir", str(stack.traces_dir))
    assert shown.exit_code == 0, shown.output
    assert "outcome=retry" in shown.output and "outcome=gave up" in shown.output
    assert "status_code=503" in shown.output
