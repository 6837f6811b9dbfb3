"""Unit-test fixtures for the API: the real handler and store (moto server), fake publisher and presigner."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from easel.config import EaselConfig
from easel.contract import QueueMessage
from easel.naming import Names
from easel.store import TaskStore
from infra.local.provision import provision
from lambdas.api.deps import ApiSettings, Deps, DispatchError, S3Inputs, set_deps

ACME_ARN = "arn:aws:iam::123456789012:role/acme-app"
GLOBEX_ARN = "arn:aws:iam::123456789012:role/globex-app"


@dataclass
class FakePublisher:
    messages: list[QueueMessage] = field(default_factory=list)
    fail: bool = False

    def publish(self, message: QueueMessage) -> None:
        if self.fail:
            raise DispatchError("topic unavailable (fake)")
        self.messages.append(message)


class FakePresigner:
    def presign_get(self, bucket: str, key: str, ttl_seconds: int) -> str:
        return f"https://signed.example/{bucket}/{key}?ttl={ttl_seconds}"


@pytest.fixture
def deps(
    aws_session: boto3.Session,
    two_runtimes_config: EaselConfig,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Deps]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    names = Names.of(two_runtimes_config, region="us-west-2")
    resources = provision(two_runtimes_config, names, aws_session)
    settings = ApiSettings(
        table_name=resources.table,
        tasks_topic_arn=resources.tasks_topic_arn,
        outputs_bucket=resources.outputs_bucket,
        config_file=tmp_path / "unused.json",
    )
    built = Deps(
        settings=settings,
        config=two_runtimes_config,
        store=TaskStore(aws_session.client("dynamodb"), resources.table),
        publisher=FakePublisher(),
        presigner=FakePresigner(),
        inputs=S3Inputs(aws_session.client("s3")),
    )
    set_deps(built)
    yield built
    set_deps(None)


def event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    arn: str | None = ACME_ARN,
    b64: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as API Gateway (and the local gateway) sends it."""
    hdrs = {"Host": "abc.execute-api.us-west-2.amazonaws.com", "X-Forwarded-Proto": "https"}
    if body is not None or raw is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    if body is not None:
        raw = json.dumps(body)
    if isinstance(raw, bytes):
        raw = base64.b64encode(raw).decode() if b64 else raw.decode()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query,
        "pathParameters": {"proxy": path.lstrip("/")},
        "body": raw,
        "isBase64Encoded": b64,
        "requestContext": {
            "requestId": "req-1",
            "stage": "prod",
            "domainName": "abc.execute-api.us-west-2.amazonaws.com",
            "identity": {"userArn": arn} if arn else {},
        },
    }


class Ctx:
    function_name = "easel-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-west-2:123456789012:function:easel-api"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def invoke(ev: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from lambdas.api.app import handler

    result = handler(ev, Ctx())  # type: ignore[arg-type]
    return result["statusCode"], json.loads(result["body"])
