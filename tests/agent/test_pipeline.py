"""The agent end to end against moto (real HTTP) and a fake runtime over real HTTP."""

from __future__ import annotations

import base64

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.synthetic_runtime import png
from easel.naming import output_key
from tests.agent.conftest import Stack, wait_for

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_success_end_to_end(stack: Stack) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = stack.agent(tracer=provider.get_tracer("test"))
    stack.submit(
        "t1",
        seed=7,
        batch_size=2,
        negative_prompt="blurry",
        loras=[{"name": "style", "weight": 0.5}],
        trace_context={"traceparent": TRACEPARENT},
    )
    with stack.running(agent):
        result = stack.wait_result("t1", "succeeded")
        # Same model for the next task: no second switch.
        stack.submit("t2")
        stack.wait_result("t2", "succeeded")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "messages deleted")

    # The notification is the task object, with attributes subscribers can filter on and the trace context
    # of the agent's publish span (the webhooks Lambda continues it).
    attributes = dict(result["_attributes"])
    traceparent = attributes.pop("traceparent")
    assert attributes == {
        "status": "succeeded",
        "tenant": "acme",
        "runtime": "sd15",
        "task_type": "text-to-image",
    }
    bucket = stack.resources.outputs_bucket
    assert result["output"]["images"] == [
        f"s3://{bucket}/{output_key('acme', 't1', 0)}",
        f"s3://{bucket}/{output_key('acme', 't1', 1)}",
    ]
    assert stack.objects("tenants/acme/tasks/t1/") == [
        "tenants/acme/tasks/t1/0.png",
        "tenants/acme/tasks/t1/1.png",
    ]
    obj = stack.s3.get_object(Bucket=bucket, Key="tenants/acme/tasks/t1/0.png")
    assert obj["ContentType"] == "image/png"
    assert obj["Body"].read().startswith(b"\x89PNG")

    task = stack.task("t1")
    assert task.status == "succeeded"
    assert task.attempts == 1
    assert task.started_at is not None and task.completed_at is not None
    m = task.metrics
    assert m.queue_seconds is not None and m.queue_seconds >= 0
    assert m.predict_seconds is not None and m.predict_seconds > 0
    assert m.gpu_seconds is not None and m.gpu_seconds >= m.predict_seconds

    # The runtime got the SD WebUI body, the model switch happened once (the runtime started empty).
    calls = stack.runtime.generation_calls()
    assert [c.path for c in calls] == ["txt2img", "txt2img"]
    body = calls[0].body
    assert body == {
        "prompt": "prompt of t1",
        "negative_prompt": "blurry",
        "steps": 2,
        "width": 64,
        "height": 64,
        "cfg_scale": 7.0,
        "sampler_name": "Euler a",
        "seed": 7,
        "batch_size": 2,
        "loras": [{"name": "style", "weight": 0.5}],
    }
    assert stack.runtime.option_posts == ["sd15"]

    # One result per task, and the span continues the producer's trace.
    assert len(stack.results_for("t1")) == 1
    spans = [s for s in exporter.get_finished_spans() if s.attributes.get("easel.task_id") == "t1"]
    assert len(spans) == 1
    assert format(spans[0].context.trace_id, "032x") == TRACE_ID
    assert spans[0].parent is not None and format(spans[0].parent.span_id, "016x") == "00f067aa0ba902b7"
    assert spans[0].attributes["easel.outcome"] == "succeeded"
    [publish] = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "publish" and s.parent is not None and s.parent.span_id == spans[0].context.span_id
    ]
    assert traceparent == f"00-{TRACE_ID}-{publish.context.span_id:016x}-01"

    # Counters for the benchmark.
    snap = agent.stats.snapshot()
    assert snap["tasks_done"] == 2
    assert snap["outcomes"] == {"succeeded": 2}
    assert snap["runtime_busy_seconds"] > 0
    assert snap["deleted"] == 2


def test_message_without_record_creates_it(stack: Stack) -> None:
    """Published straight to the topic (no API call): the agent creates the record from the message."""
    stack.submit("direct", record=False, tenant="globex")
    with stack.running():
        result = stack.wait_result("direct", "succeeded")
    assert result["tenant"] == "globex"
    task = stack.task("direct", tenant="globex")
    assert task.status == "succeeded"
    assert task.attempts == 1
    assert stack.objects("tenants/globex/tasks/direct/") == ["tenants/globex/tasks/direct/0.png"]


def test_image_to_image_from_tenant_s3_input(stack: Stack) -> None:
    image = png(64, 64, (1, 2, 3))
    key = "tenants/acme/inputs/cat.png"
    stack.s3.put_object(Bucket=stack.resources.outputs_bucket, Key=key, Body=image)
    stack.submit(
        "i2i",
        task_type="image-to-image",
        init_images=[f"s3://{stack.resources.outputs_bucket}/{key}"],
        denoising_strength=0.4,
    )
    with stack.running():
        stack.wait_result("i2i", "succeeded")
    (call,) = stack.runtime.generation_calls()
    assert call.path == "img2img"
    assert base64.b64decode(call.body["init_images"][0]) == image
    assert call.body["denoising_strength"] == 0.4


def test_model_switch_only_when_runtime_model_differs(stack: Stack) -> None:
    stack.runtime.control.current_model = "sd15"
    stack.submit("a", model="sd15")
    with stack.running():
        stack.wait_result("a", "succeeded")
        assert stack.runtime.option_posts == []
        stack.submit("b", model="other")
        stack.wait_result("b", "succeeded")
        stack.submit("c", model="other")
        stack.wait_result("c", "succeeded")
    assert stack.runtime.option_posts == ["other"]
    assert stack.runtime.control.current_model == "other"


def test_webhook_asking_for_start_gets_a_processing_notification(stack: Stack) -> None:
    msg = stack.message("hooked", trace_context={"traceparent": TRACEPARENT})
    stack.create_record(msg, webhook="https://hooks.example.com/easel")
    stack.publish(msg)
    stack.submit("plain")
    with stack.running():
        stack.wait_result("hooked", "succeeded")
        stack.wait_result("plain", "succeeded")
    hooked = stack.results_for("hooked")
    assert [r["status"] for r in hooked] == ["processing", "succeeded"]
    assert [r["status"] for r in stack.results_for("plain")] == ["succeeded"]
    # Both notifications carry the task's trace: their webhook deliveries join it (not a trace of their own).
    assert [dict(r["_attributes"])["traceparent"].split("-")[1] for r in hooked] == [TRACE_ID, TRACE_ID]
