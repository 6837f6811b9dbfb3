"""Helpers for the API integration tests: raw signed requests, queue and table inspection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easel.client import ApiError, EaselClient
from infra.local.stack import LocalStack, StackOptions


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.body["error"])


def client_for(stack: LocalStack, tenant: str) -> EaselClient:
    cred = stack.tenant_credentials(tenant)
    return EaselClient(
        stack.endpoint,
        region=stack.region,
        access_key_id=cred.access_key_id,
        secret_access_key=cred.secret_access_key,
    )


def call(
    client: EaselClient,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Reply:
    """A signed request whose 4xx/5xx comes back as a Reply instead of an exception."""
    try:
        return Reply(
            200,
            client.request(method, path, json_body=json_body, raw_body=raw, headers=headers, params=params),
        )
    except ApiError as exc:
        return Reply(exc.status, exc.body)


def lane_queues(stack: LocalStack) -> dict[str, str]:
    """name -> URL of every queue a task could land in (lanes, DLQs, unroutable)."""
    assert stack.resources is not None
    out = {"unroutable": stack.resources.unroutable_queue_url}
    for runtime, lanes in stack.resources.lanes.items():
        for lane, res in lanes.items():
            out[f"{runtime}-{lane}"] = res.queue_url
            out[f"{runtime}-{lane}-dlq"] = res.dlq_url
    return out


def drain(stack: LocalStack) -> dict[str, list[dict[str, Any]]]:
    """Receive (and delete) everything waiting in every queue: {queue: [{"body", "attributes"}]}."""
    sqs = stack.client("sqs")
    found: dict[str, list[dict[str, Any]]] = {}
    for name, url in lane_queues(stack).items():
        found[name] = []
        while True:
            resp = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
            )
            messages = resp.get("Messages", [])
            if not messages:
                break
            for m in messages:
                attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                found[name].append({"body": json.loads(m["Body"]), "attributes": attrs})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def message_counts(stack: LocalStack) -> dict[str, int]:
    sqs = stack.client("sqs")
    counts = {}
    for name, url in lane_queues(stack).items():
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        counts[name] = int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )
    return counts


def table_items(stack: LocalStack) -> list[dict[str, Any]]:
    assert stack.resources is not None
    ddb = stack.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": stack.resources.table, "ConsistentRead": True}
    while True:
        resp = ddb.scan(**kwargs)
        items.extend(resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def t2i(model: str = "sd15", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_type": "text-to-image",
        "model": model,
        "input": {"prompt": "a dog", "steps": 4},
    }
    body.update(extra)
    return body


@contextmanager
def control_plane(config: Path, work: Path) -> Iterator[LocalStack]:
    """A local stack for ``config`` without workers (moto, provisioned resources, the signed gateway)."""
    options = StackOptions(
        config_path=config,
        port=0,
        state_path=work / "local.json",
        work_dir=work,
        models_dir=work / "models",
        workers=False,
    )
    with LocalStack(options) as running:
        yield running
