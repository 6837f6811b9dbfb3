"""Settings and dependencies of the API Lambda, built on the first invocation (never at import).

Environment (see docs/development.md): ``EASEL_TABLE_NAME``, ``EASEL_TASKS_TOPIC_ARN``,
``EASEL_OUTPUTS_BUCKET``, ``EASEL_CONFIG_FILE`` (the config as JSON), optional ``EASEL_PUBLIC_URL`` (base
URL used in ``urls.get``/``urls.cancel`` when the request does not tell it), and the key that signs
pagination cursors: ``EASEL_CURSOR_KEY_SECRET_ARN`` (a Secrets Manager secret, in AWS) or
``EASEL_CURSOR_KEY`` (the key itself, local mode and tests). Tests inject fakes with :func:`set_deps`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic_settings import BaseSettings, SettingsConfigDict

from easel.config import EaselConfig, parse_config
from easel.contract import QueueMessage
from easel.lifecycle import publish_task
from easel.store import TaskStore


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore")

    table_name: str
    tasks_topic_arn: str
    outputs_bucket: str
    config_file: Path
    public_url: str | None = None
    # Signs pagination cursors (easel.store): the same for every instance of the function, so a cursor
    # from one invocation opens in the next. The secret's value, or this string, is the key.
    cursor_key: str | None = None
    cursor_key_secret_arn: str | None = None
    # Local mode only (`easel local up --webhook-allow-origin`): comma-separated http loopback origins a
    # task's `webhook` may use; unset in AWS, where webhooks must be https.
    webhook_test_insecure_origins: str = ""

    @property
    def insecure_webhook_origins(self) -> frozenset[str]:
        return frozenset(o for o in self.webhook_test_insecure_origins.split(",") if o)


class DispatchError(Exception):
    """Publishing to the tasks topic failed (the task cannot reach a queue)."""


class Publisher(Protocol):
    def publish(self, message: QueueMessage) -> None: ...


class Presigner(Protocol):
    def presign_get(self, bucket: str, key: str, ttl_seconds: int) -> str: ...


class SnsPublisher:
    """Publishes queue messages to the tasks topic; the attributes drive the lanes' filter policies."""

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    def publish(self, message: QueueMessage) -> None:
        try:
            publish_task(self._sns, self._topic, message)
        except (ClientError, BotoCoreError) as exc:
            raise DispatchError(f"publish to {self._topic} failed: {exc}") from exc


class S3Presigner:
    def __init__(self, client: Any) -> None:
        self._s3 = client

    def presign_get(self, bucket: str, key: str, ttl_seconds: int) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        return url


class S3Inputs:
    """Input objects and presigned uploads in the outputs bucket (``tenants/<t>/inputs/``)."""

    def __init__(self, client: Any) -> None:
        self._s3 = client

    def size(self, bucket: str, key: str) -> int | None:
        try:
            return int(self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def head_bytes(self, bucket: str, key: str, count: int) -> bytes:
        body = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{count - 1}")["Body"]
        data: bytes = body.read()
        return data

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def presign_post(
        self, bucket: str, key: str, *, content_type: str, max_bytes: int, ttl_seconds: int
    ) -> dict[str, Any]:
        post: dict[str, Any] = self._s3.generate_presigned_post(
            Bucket=bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=ttl_seconds,
        )
        return post


@dataclass
class Deps:
    settings: ApiSettings
    config: EaselConfig
    store: TaskStore
    publisher: Publisher
    presigner: Presigner
    inputs: S3Inputs | None = None


_deps: Deps | None = None
_lock = threading.Lock()


def load_config_json(path: Path) -> EaselConfig:
    return parse_config(json.loads(path.read_text()), str(path))


def cursor_key(settings: ApiSettings, secrets_client: Any) -> bytes:
    if settings.cursor_key:
        return settings.cursor_key.encode()
    if settings.cursor_key_secret_arn:
        value: str = secrets_client.get_secret_value(SecretId=settings.cursor_key_secret_arn)["SecretString"]
        return value.encode()
    raise RuntimeError("set EASEL_CURSOR_KEY_SECRET_ARN (or EASEL_CURSOR_KEY in local mode)")


class ClientFactory(Protocol):
    def client(self, service: str) -> Any: ...


def build_deps(settings: ApiSettings | None = None, *, session: ClientFactory | None = None) -> Deps:
    """The handler's dependencies: from the environment in Lambda; from ``settings`` and a ``session``
    (e.g. one bound to the local emulator) when the local gateway hosts the handler."""
    import boto3  # boto3 import is slow; pay for it on the first invocation only

    settings = settings or ApiSettings()  # fields come from the environment
    config = load_config_json(settings.config_file)
    clients: Any = session or boto3.session.Session()
    return Deps(
        settings=settings,
        config=config,
        store=TaskStore(
            clients.client("dynamodb"),
            settings.table_name,
            retention_days=config.api.task_retention_days,
            cursor_key=cursor_key(settings, clients.client("secretsmanager")),
        ),
        publisher=SnsPublisher(clients.client("sns"), settings.tasks_topic_arn),
        presigner=S3Presigner(clients.client("s3")),
        inputs=S3Inputs(clients.client("s3")),
    )


def get_deps() -> Deps:
    global _deps
    if _deps is None:
        with _lock:  # the local gateway invokes the handler from several threads
            if _deps is None:
                _deps = build_deps()
    return _deps


def set_deps(deps: Deps | None) -> None:
    """Replace the dependencies (tests), or drop them so the next invocation rebuilds from the env."""
    global _deps
    _deps = deps
