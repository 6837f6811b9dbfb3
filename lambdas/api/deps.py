"""Settings and dependencies of the API Lambda, built on the first invocation (never at import).

Environment (see docs/development.md): ``EASEL_TABLE_NAME``, ``EASEL_TASKS_TOPIC_ARN``,
``EASEL_OUTPUTS_BUCKET``, ``EASEL_CONFIG_FILE`` (the config as JSON), optional ``EASEL_PUBLIC_URL`` (base
URL used in ``urls.get``/``urls.cancel`` when the request does not tell it). Tests inject fakes with
:func:`set_deps`.
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
from easel.contract import QueueMessage, routing_attributes, sns_attributes
from easel.store import TaskStore


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore")

    table_name: str
    tasks_topic_arn: str
    outputs_bucket: str
    config_file: Path
    public_url: str | None = None
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
            self._sns.publish(
                TopicArn=self._topic,
                Message=message.model_dump_json(),
                MessageAttributes=sns_attributes(routing_attributes(message)),
            )
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


@dataclass
class Deps:
    settings: ApiSettings
    config: EaselConfig
    store: TaskStore
    publisher: Publisher
    presigner: Presigner


_deps: Deps | None = None
_lock = threading.Lock()


def load_config_json(path: Path) -> EaselConfig:
    return parse_config(json.loads(path.read_text()), str(path))


def build_deps(settings: ApiSettings | None = None) -> Deps:
    import boto3  # boto3 import is slow; pay for it on the first invocation only

    settings = settings or ApiSettings()  # fields come from the environment
    config = load_config_json(settings.config_file)
    session = boto3.session.Session()
    return Deps(
        settings=settings,
        config=config,
        store=TaskStore(
            session.client("dynamodb"),
            settings.table_name,
            retention_days=config.api.task_retention_days,
        ),
        publisher=SnsPublisher(session.client("sns"), settings.tasks_topic_arn),
        presigner=S3Presigner(session.client("s3")),
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
