"""Webhook deliveries in the task's trace: the agent's publish span context crosses SNS as the message
attributes ``traceparent``/``tracestate``, the webhooks Lambda continues it with one span per attempt, and
the span says what happened (attempt, HTTP status, outcome) without credentials or the signature.

Deliveries go only to a receiver on 127.0.0.1 (the test-only insecure origin)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from easel import tracing
from easel.contract import Task, TaskStatus, parse_task_request
from infra.local.webhooks_worker import attempt_of
from lambdas.webhooks.app import Deps, deliver, handler, set_deps
from lambdas.webhooks.delivery import DeliveryPolicy, WebhookSender
from lambdas.webhooks.errors import DeliveryFailed
from lambdas.webhooks.spans import Attempt
from queue_agent.notify import Notifier
from tests.webhook_receiver import WebhookReceiver

MASTER = b"0123456789abcdef0123456789abcdef"


class Recorded:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def spans() -> Recorded:
    return Recorded()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(status=204, path="/hooks/easel") as r:
        yield r


def _deps(receiver: WebhookReceiver, spans: Recorded) -> Deps:
    sender = WebhookSender(
        DeliveryPolicy(timeout_seconds=2, test_insecure_origins=frozenset({receiver.origin})),
        http=httpx.Client(),
    )
    return Deps(master=MASTER, sender=sender, tracer=spans.tracer)


def _task(webhook: str, status: TaskStatus = TaskStatus.SUCCEEDED) -> Task:
    req = parse_task_request({"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "p"}})
    return Task(
        id="t1",
        tenant="acme",
        status=status,
        task_type=req.task_type,
        model="sd15",
        runtime="sd15",
        priority=req.priority,
        input=req.input,
        webhook=webhook,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class ClaimingStore:
    def claim_notification(self, tenant: str, task_id: str, status: TaskStatus) -> bool:
        return True

    def release_notification(self, tenant: str, task_id: str, status: TaskStatus) -> bool:
        return True


class RecordingSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.published.append(kwargs)
        return {"MessageId": "m1"}


def _lambda_event(published: dict[str, Any]) -> dict[str, Any]:
    """What SNS hands the webhooks Lambda for one publish call (attributes as ``Type``/``Value``)."""
    attributes = {
        k: {"Type": v["DataType"], "Value": v["StringValue"]}
        for k, v in published["MessageAttributes"].items()
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {"Message": published["Message"], "MessageAttributes": attributes},
            }
        ]
    }


class Ctx:
    function_name = "webhooks"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-west-2:123456789012:function:webhooks"
    aws_request_id = "req-1"


def test_the_publish_span_context_travels_in_the_result_attributes_to_the_delivery_span(
    receiver: WebhookReceiver, spans: Recorded
) -> None:
    sns = RecordingSns()
    notifier = Notifier(sns, "arn:aws:sns:us-west-2:123456789012:results", ClaimingStore())
    with spans.tracer.start_as_current_span("publish") as publish:
        assert notifier.publish_once(_task(receiver.url)) is True
    ctx = publish.get_span_context()
    attributes = sns.published[0]["MessageAttributes"]
    assert attributes["traceparent"] == {
        "DataType": "String",
        "StringValue": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}",
    }
    assert attributes["status"]["StringValue"] == "succeeded"  # the filterable attributes stay

    set_deps(_deps(receiver, spans))
    try:
        assert handler(_lambda_event(sns.published[0]), Ctx()) == {"results": ["delivered"]}
    finally:
        set_deps(None)
    [delivery] = spans.named("webhook delivery")
    assert delivery.context is not None and delivery.parent is not None
    assert delivery.context.trace_id == ctx.trace_id
    assert delivery.parent.span_id == ctx.span_id
    assert delivery.kind is SpanKind.CLIENT
    attrs = dict(delivery.attributes or {})
    assert attrs["easel.task_id"] == "t1" and attrs["easel.event"] == "completed"
    assert attrs["easel.outcome"] == "delivered" and attrs["http.response.status_code"] == 204
    assert (attrs["server.address"], attrs["server.port"], attrs["url.path"]) == (
        "127.0.0.1",
        receiver.port,
        "/hooks/easel",
    )
    assert "easel.attempt" not in attrs  # Lambda's asynchronous retries do not number themselves
    assert delivery.status.status_code is StatusCode.UNSET


def test_outside_a_span_nothing_is_added_and_the_delivery_starts_its_own_trace(
    receiver: WebhookReceiver, spans: Recorded
) -> None:
    sns = RecordingSns()
    Notifier(sns, "arn:t", ClaimingStore()).publish_once(_task(receiver.url))
    assert set(sns.published[0]["MessageAttributes"]) == {"status", "tenant", "runtime", "task_type"}
    assert deliver(sns.published[0]["Message"], _deps(receiver, spans)) == "delivered"
    [delivery] = spans.named("webhook delivery")
    assert delivery.parent is None
    assert dict(delivery.attributes or {})["easel.task_id"] == "t1"  # `easel trace` still finds it


@pytest.mark.parametrize(
    "attributes",
    [
        {
            "traceparent": {"Type": "String", "Value": "00-ab-cd-01"},
            "status": {"Type": "String", "Value": "x"},
        },
        {"traceparent": {"DataType": "String", "StringValue": "00-ab-cd-01"}},
        {"traceparent": "00-ab-cd-01", "tracestate": ""},
    ],
)
def test_the_context_is_read_from_an_sns_record_an_sqs_message_or_plain_strings(
    attributes: dict[str, Any],
) -> None:
    assert tracing.carrier_of_attributes(attributes) == {"traceparent": "00-ab-cd-01"}
    assert tracing.carrier_of_attributes(None) == {}
    assert tracing.carrier_of_attributes({"traceparent": {"DataType": "Binary", "BinaryValue": b"x"}}) == {}


def test_local_attempts_are_numbered_by_receive_count_and_the_last_one_is_final() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    message = {
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"traceparent": {"DataType": "String", "StringValue": parent}},
    }
    assert attempt_of(message, 3) == Attempt(trace={"traceparent": parent}, number=2, final=False)
    message["Attributes"] = {"ApproximateReceiveCount": "3"}
    assert attempt_of(message, 3).final
    assert not attempt_of({"Body": "{}"}, 3).final  # no count: never claims to be the last


def test_a_failing_receiver_shows_each_attempt_with_its_status_and_the_last_gives_up(
    receiver: WebhookReceiver, spans: Recorded
) -> None:
    receiver.status = 503
    d = _deps(receiver, spans)
    body = _task(receiver.url).model_dump_json()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for number in (1, 2, 3):
        with pytest.raises(DeliveryFailed):
            deliver(body, d, Attempt(trace={"traceparent": parent}, number=number, final=number == 3))
    attempts = spans.named("webhook delivery")
    assert [dict(s.attributes or {})["easel.attempt"] for s in attempts] == [1, 2, 3]
    assert [dict(s.attributes or {})["easel.outcome"] for s in attempts] == ["retry", "retry", "gave up"]
    assert all(dict(s.attributes or {})["http.response.status_code"] == 503 for s in attempts)
    assert all(
        s.status.status_code is StatusCode.ERROR and s.status.description == "HTTP 503" for s in attempts
    )
    assert {format(s.context.trace_id, "032x") for s in attempts if s.context} == {
        "0af7651916cd43dd8448eb211c80319c"
    }
    assert len(receiver.requests) == 3

    receiver.status = 410  # a 4xx is dropped at once: one span, no retry
    assert deliver(body, d, Attempt(number=4)) == "dropped"
    dropped = spans.named("webhook delivery")[-1]
    assert dict(dropped.attributes or {})["easel.outcome"] == "dropped"
    assert dict(dropped.attributes or {})["http.response.status_code"] == 410


def test_the_span_holds_host_and_path_never_credentials_query_or_signature(
    receiver: WebhookReceiver, spans: Recorded
) -> None:
    url = f"http://user:hunter2@127.0.0.1:{receiver.port}/hooks/easel?token=s3cr3t"
    assert deliver(_task(url).model_dump_json(), _deps(receiver, spans)) == "delivered"
    [(headers, _)] = receiver.requests
    [delivery] = spans.named("webhook delivery")
    dumped = json.dumps(tracing.span_record(delivery), default=str)
    for secret in ("hunter2", "user:", "s3cr3t", "token", headers["webhook-signature"].split(",", 1)[1]):
        assert secret not in dumped, secret
    assert "/hooks/easel" in dumped and "127.0.0.1" in dumped


def test_a_refused_url_is_one_dropped_span_whose_reason_does_not_quote_the_url(spans: Recorded) -> None:
    sender = WebhookSender(DeliveryPolicy(timeout_seconds=2), http=httpx.Client())
    d = Deps(master=MASTER, sender=sender, tracer=spans.tracer)
    url = "http://user:hunter2@hooks.example.com/cb"  # refused before any resolution: not https
    assert deliver(_task(url).model_dump_json(), d) == "dropped"
    [delivery] = spans.named("webhook delivery")
    assert dict(delivery.attributes or {})["easel.outcome"] == "dropped"
    assert delivery.status.status_code is StatusCode.ERROR
    assert "hunter2" not in json.dumps(tracing.span_record(delivery), default=str)


def test_the_invocation_span_is_linked_while_the_parent_stays_the_publish_span(
    receiver: WebhookReceiver, spans: Recorded
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    body = _task(receiver.url).model_dump_json()
    with spans.tracer.start_as_current_span("invocation") as invocation:  # the ADOT wrapper's, in AWS
        deliver(body, _deps(receiver, spans), Attempt(trace={"traceparent": parent}))
    [delivery] = spans.named("webhook delivery")
    assert delivery.parent is not None and format(delivery.parent.span_id, "016x") == "b7ad6b7169203331"
    assert [link.context.span_id for link in delivery.links] == [invocation.get_span_context().span_id]
