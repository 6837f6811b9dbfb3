"""Webhooks: Standard Webhooks signatures, event filtering, SSRF-safe delivery, retry semantics.

Live deliveries go only to a receiver on 127.0.0.1 (allowed through the test-only insecure origin); refusals
of other addresses are shown with a stubbed resolver that never connects.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from easel.contract import Task, TaskStatus, parse_task_request
from easel.webhook_signing import derive_tenant_secret, sign, verify
from lambdas.webhooks.app import Deps, deliver, handler, set_deps
from lambdas.webhooks.delivery import DeliveryPolicy, WebhookSender
from lambdas.webhooks.errors import DeliveryFailed, DeliveryRefused, DeliveryRejected
from tests.webhook_receiver import WebhookReceiver

MASTER = b"0123456789abcdef0123456789abcdef"


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, f"v1,other {signature}")
    assert not verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, signature)


def test_tenant_secrets_differ_and_are_stable() -> None:
    a = derive_tenant_secret(MASTER, "acme")
    assert a == derive_tenant_secret(MASTER, "acme")
    assert a != derive_tenant_secret(MASTER, "globex")
    assert a.startswith("whsec_")
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(status=200) as r:
        yield r


def _sender(receiver: WebhookReceiver | None = None, resolver: Any = None) -> WebhookSender:
    origins = frozenset({f"http://127.0.0.1:{receiver.port}"}) if receiver else frozenset()

    def never(host: str, port: int) -> list[str]:
        raise AssertionError("resolver must not be called")

    return WebhookSender(
        DeliveryPolicy(timeout_seconds=2, test_insecure_origins=origins),
        http=httpx.Client(),
        resolver=resolver or never,
    )


def _task(status: TaskStatus, webhook: str | None, events: list[str] | None = None) -> Task:
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
        webhook_events_filter=events or ["completed"],  # type: ignore[arg-type]
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_delivery_is_signed_with_the_tenants_secret(receiver: WebhookReceiver) -> None:
    d = Deps(master=MASTER, sender=_sender(receiver))
    task = _task(TaskStatus.SUCCEEDED, receiver.url)
    assert deliver(task.model_dump_json(), d) == "delivered"
    [(headers, body)] = receiver.requests
    assert json.loads(body)["status"] == "succeeded"
    assert headers["webhook-id"] == "msg_t1_succeeded"
    secret = derive_tenant_secret(MASTER, "acme")
    assert verify(
        secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body, headers["webhook-signature"]
    )
    assert not verify(
        derive_tenant_secret(MASTER, "globex"),
        headers["webhook-id"],
        int(headers["webhook-timestamp"]),
        body,
        headers["webhook-signature"],
    )


def test_events_filter(receiver: WebhookReceiver) -> None:
    d = Deps(master=MASTER, sender=_sender(receiver))
    assert deliver(_task(TaskStatus.PROCESSING, receiver.url).model_dump_json(), d) == "skipped"
    assert deliver(_task(TaskStatus.SUCCEEDED, None).model_dump_json(), d) == "skipped"
    started = _task(TaskStatus.PROCESSING, receiver.url, ["start", "completed"])
    assert deliver(started.model_dump_json(), d) == "delivered"
    assert receiver.requests[0][0]["webhook-id"] == "msg_t1_processing"


def test_handler_reads_sns_records(receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    set_deps(Deps(master=MASTER, sender=_sender(receiver)))
    try:
        task = _task(TaskStatus.FAILED, receiver.url)
        event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": task.model_dump_json()}}]}

        class Ctx:
            function_name = "webhooks"
            memory_limit_in_mb = 128
            invoked_function_arn = "arn:aws:lambda:us-west-2:123456789012:function:webhooks"
            aws_request_id = "req-1"

        assert handler(event, Ctx()) == {"results": ["delivered"]}
    finally:
        set_deps(None)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, DeliveryFailed), (429, DeliveryFailed), (400, DeliveryRejected), (302, DeliveryRejected)],
)
def test_receiver_answers(receiver: WebhookReceiver, status: int, error: type[Exception]) -> None:
    receiver.status = status
    with pytest.raises(error):
        _sender(receiver).send(receiver.url, secret="whsec_AAAA", msg_id="m", body=b"{}")
    assert len(receiver.requests) == 1  # a redirect is not followed


def test_retryable_failure_is_raised_and_rejection_is_dropped(receiver: WebhookReceiver) -> None:
    d = Deps(master=MASTER, sender=_sender(receiver))
    receiver.status = 503
    with pytest.raises(DeliveryFailed):
        deliver(_task(TaskStatus.SUCCEEDED, receiver.url).model_dump_json(), d)
    receiver.status = 404
    assert deliver(_task(TaskStatus.SUCCEEDED, receiver.url).model_dump_json(), d) == "dropped"


def test_loopback_without_the_test_origin_is_refused_before_any_request(receiver: WebhookReceiver) -> None:
    sender = _sender(None)
    for url in (receiver.url, f"https://127.0.0.1:{receiver.port}/hook", "https://[::1]/hook"):
        with pytest.raises(DeliveryRefused):
            sender.send(url, secret="whsec_AAAA", msg_id="m", body=b"{}")
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("url", "answer", "why"),
    [
        ("https://metadata.example/hook", ["169.254.169.254"], "link-local"),
        ("https://intranet.example/hook", ["10.0.0.7"], "private"),
        ("https://rebind.example/hook", ["93.184.216.34", "192.168.1.1"], "private"),
        ("https://mapped.example/hook", ["::ffff:127.0.0.1"], "loopback"),
        ("https://v6.example/hook", ["fd00::1"], "private"),
    ],
)
def test_private_answers_are_refused_with_a_stub_resolver(url: str, answer: list[str], why: str) -> None:
    calls: list[str] = []

    def stub(host: str, port: int) -> list[str]:
        calls.append(host)
        return answer

    with pytest.raises(DeliveryRefused, match=why):
        _sender(None, resolver=stub).send(url, secret="whsec_AAAA", msg_id="m", body=b"{}")
    assert calls  # resolved once, refused before connecting


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/x",
        "ftp://hooks.example/x",
        "https://user:pw@hooks.example/x",
        "https://hooks.example:8443/x",
    ],
)
def test_scheme_userinfo_and_port_rules(url: str) -> None:
    with pytest.raises(DeliveryRefused):
        _sender(None).send(url, secret="whsec_AAAA", msg_id="m", body=b"{}")
