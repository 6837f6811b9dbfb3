"""The local webhooks worker: the webhooks Lambda's ``deliver`` over an SQS queue (delete vs keep for retry)."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from easel.cli import app
from easel.config import EaselConfig
from easel.naming import Names
from easel.webhook_signing import derive_tenant_secret
from infra.local import state as state_file
from infra.local.provision import WEBHOOKS_MAX_RECEIVE_COUNT, WEBHOOKS_VISIBILITY_TIMEOUT_SECONDS, Resources
from infra.local.state import LocalState, TenantCredentials
from infra.local.webhooks_worker import handle, poll_once, run
from infra.local.workers import loopback_origin, webhooks_worker_spec
from lambdas.webhooks.errors import DeliveryFailed, DeliveryRefused
from lambdas.webhooks.spans import Attempt

URL = "http://q/webhooks-local"


class FakeSqs:
    def __init__(self, bodies: list[str]) -> None:
        self.pending = [{"Body": b, "ReceiptHandle": f"rh-{i}"} for i, b in enumerate(bodies)]
        self.deleted: list[str] = []
        self.receives = 0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["QueueUrl"] == URL
        self.receives += 1
        batch, self.pending = self.pending[: kwargs["MaxNumberOfMessages"]], []
        return {"Messages": batch} if batch else {}

    def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> None:
        assert QueueUrl == URL
        self.deleted.append(ReceiptHandle)


def fake_deliver(body: str, attempt: Attempt) -> str:
    """Stands in for lambdas.webhooks.app.deliver: the body says what happens."""
    if body == "fail":
        raise DeliveryFailed("https://x", "HTTP 503")
    if body == "refuse":
        # deliver() itself turns refusals/4xx into "dropped"; a raise here would be a bug, kept for the DLQ.
        raise DeliveryRefused("https://x", "private address")
    return body


def test_delivered_skipped_and_dropped_are_deleted_failed_stays_for_retry() -> None:
    sqs = FakeSqs(["delivered", "skipped", "dropped", "fail"])
    outcomes = poll_once(sqs, URL, fake_deliver, wait_seconds=0)
    assert outcomes == ["delivered", "skipped", "dropped", "retry"]
    assert sqs.deleted == ["rh-0", "rh-1", "rh-2"]  # rh-3 becomes visible again after the timeout


def test_a_failure_on_the_last_receive_gives_up_and_leaves_the_message_for_the_dlq() -> None:
    sqs = FakeSqs(["fail", "fail"])
    sqs.pending[0]["Attributes"] = {"ApproximateReceiveCount": "2"}
    sqs.pending[1]["Attributes"] = {"ApproximateReceiveCount": "3"}
    assert poll_once(sqs, URL, fake_deliver, wait_seconds=0, max_receives=3) == ["retry", "gave up"]
    assert sqs.deleted == []  # the redrive policy moves it on its next receive


def test_an_unexpected_error_leaves_the_message_for_the_dlq() -> None:
    sqs = FakeSqs(["refuse"])
    assert handle(sqs, URL, sqs.pending[0], fake_deliver) == "error"
    assert sqs.deleted == []


def test_run_polls_until_stopped_and_survives_receive_errors() -> None:
    stop = threading.Event()
    sqs = FakeSqs(["delivered"])
    calls: list[str] = []

    class Flaky(FakeSqs):
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            if self.receives == 0:
                self.receives += 1
                raise RuntimeError("moto went away")
            if self.receives >= 3:
                stop.set()
            return super().receive_message(**kwargs)

    flaky = Flaky(["delivered"])

    def deliver(body: str, attempt: Attempt) -> str:
        calls.append(body)
        return body

    t = threading.Thread(target=run, args=(flaky, URL, deliver, stop), kwargs={"wait_seconds": 0})
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert calls == ["delivered"]
    assert flaky.deleted == ["rh-0"]
    assert sqs.pending  # untouched


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
        ("http://localhost", "http://localhost:80"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
        ("http://[::1]:8080", "http://::1:8080"),  # the form DeliveryPolicy compares
    ],
)
def test_loopback_origins_are_normalized(given: str, origin: str) -> None:
    assert loopback_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    [
        "http://10.0.0.5:80",
        "http://example.com:80",
        "ftp://127.0.0.1:21",
        "http://127.0.0.1:9000/hook",
        "http://u:p@127.0.0.1:9000",
        "not a url",
    ],
)
def test_non_loopback_or_non_origin_values_are_refused(given: str) -> None:
    with pytest.raises(ValueError):
        loopback_origin(given)


def test_worker_spec_runs_the_lambda_code_with_the_local_settings() -> None:
    resources = Resources("us-west-2", "arn:t", "arn:r", "http://q/u", "tbl", "m", "o", {}, URL, URL + "-dlq")
    spec = webhooks_worker_spec(
        resources,
        moto_endpoint="http://127.0.0.1:5000",
        master_b64="a2V5",
        allow_origins=("http://127.0.0.1:1",),
    )
    assert spec.argv[1:] == ["-m", "infra.local.webhooks_worker"]
    assert spec.env["EASEL_WEBHOOKS_QUEUE_URL"] == URL
    assert spec.env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert spec.env["EASEL_WEBHOOK_SECRET"] == "a2V5"
    assert spec.env["EASEL_WEBHOOK_TEST_INSECURE_ORIGINS"] == "http://127.0.0.1:1"
    closed = webhooks_worker_spec(resources, moto_endpoint="x", master_b64="a2V5")
    assert closed.env["EASEL_WEBHOOK_TEST_INSECURE_ORIGINS"] == ""  # never default-open


def test_provisioned_webhooks_queue_gets_every_result_raw_with_a_dlq(
    provisioned: tuple[EaselConfig, Names, Resources], aws_session: boto3.Session
) -> None:
    _, names, resources = provisioned
    sqs, sns = aws_session.client("sqs"), aws_session.client("sns")
    assert resources.webhooks_queue_url.endswith(names.webhooks_local_queue)
    assert names.webhooks_local_queue == f"{names.prefix}-webhooks-local"
    attrs = sqs.get_queue_attributes(QueueUrl=resources.webhooks_queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["VisibilityTimeout"] == str(WEBHOOKS_VISIBILITY_TIMEOUT_SECONDS)
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == WEBHOOKS_MAX_RECEIVE_COUNT
    assert redrive["deadLetterTargetArn"].endswith(names.webhooks_local_dlq)
    sns.publish(TopicArn=resources.results_topic_arn, Message='{"id": "t1"}')
    got = sqs.receive_message(QueueUrl=resources.webhooks_queue_url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ['{"id": "t1"}']  # raw: the task JSON, as the Lambda's record


def test_webhooks_secret_local_reads_the_state_file(tmp_path: Path) -> None:
    master = bytes(range(32))
    resources = Resources("us-west-2", "arn:t", "arn:r", "http://q/u", "tbl", "m", "o", {})
    local = LocalState(
        pid=1,
        endpoint="http://127.0.0.1:8787",
        region="us-west-2",
        moto_endpoint="http://127.0.0.1:5000",
        config_file="c",
        models_dir="m",
        started_at="now",
        tenants={"acme": TenantCredentials("AKIA1", "s1", "arn:p")},
        resources=resources,
        webhook_secret=base64.b64encode(master).decode(),
    )
    path = tmp_path / "local.json"
    state_file.save(local, path)
    assert state_file.load(path).webhook_secret == local.webhook_secret

    def run_cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["webhooks", "secret", *args])
        return result.exit_code, result.stdout

    assert run_cli("acme", "--local", "--state", str(path)) == (
        0,
        derive_tenant_secret(master, "acme") + "\n",
    )
    assert run_cli("globex", "--local", "--state", str(path))[0] == 2  # not a local tenant
    assert run_cli("acme", "--local", "--master-b64", "a2V5", "--state", str(path))[0] == 2
    assert run_cli("acme", "--local", "--state", str(tmp_path / "missing.json"))[0] == 1


def test_the_api_accepts_http_webhooks_only_to_explicitly_allowed_origins() -> None:
    from easel.contract import parse_task_request
    from easel.errors import FieldError

    body = {
        "task_type": "text-to-image",
        "model": "sd15",
        "webhook": "http://127.0.0.1:9000/hook",
        "input": {"prompt": "a dog"},
    }
    with pytest.raises(FieldError, match="https"):
        parse_task_request(body)  # the deployed API: https only
    allowed = frozenset({"http://127.0.0.1:9000"})
    assert str(parse_task_request(body, insecure_webhook_origins=allowed).webhook) == body["webhook"]
    with pytest.raises(FieldError, match="https"):
        parse_task_request(
            {**body, "webhook": "http://127.0.0.1:9001/hook"}, insecure_webhook_origins=allowed
        )
