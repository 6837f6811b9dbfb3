"""The webhooks Lambda: results topic (SNS) -> signed Standard Webhooks callbacks.

A delivery that may succeed later (timeout, 5xx, 429) raises, so Lambda's asynchronous retries run and,
after them, the event lands in the function's on-failure queue (alarmed). A refused URL or a 4xx answer is
logged and dropped: retrying would not change it.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from easel.contract import Task
from easel.tracing import carrier_of_attributes
from easel.webhook_signing import derive_tenant_secret
from lambdas.logformat import EaselLogFormatter
from lambdas.webhooks.delivery import DeliveryPolicy, WebhookSender
from lambdas.webhooks.errors import DeliveryFailed, DeliveryRefused, DeliveryRejected
from lambdas.webhooks.service import body_of, message_id, wanted
from lambdas.webhooks.spans import Attempt, delivery_span, target_attributes

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

logger = Logger(service="easel-webhooks", logger_formatter=EaselLogFormatter("easel-webhooks"))


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_WEBHOOK_", extra="ignore")

    # Base64 master secret (local mode, tests) or the ARN of a Secrets Manager secret holding it.
    secret: str | None = None
    secret_arn: str | None = None
    timeout_seconds: float = 5.0
    test_insecure_origins: str = ""


@dataclass
class Deps:
    master: bytes
    sender: WebhookSender
    # None: the global provider's (the ADOT layer's in AWS, EASEL_TRACES locally); tests pass their own.
    tracer: Tracer | None = None


_deps: Deps | None = None
_lock = threading.Lock()


def _load_master(settings: WebhookSettings) -> bytes:
    if settings.secret:
        return base64.b64decode(settings.secret)
    if settings.secret_arn:
        import boto3

        value = boto3.client("secretsmanager").get_secret_value(SecretId=settings.secret_arn)["SecretString"]
        return base64.b64decode(value)
    raise RuntimeError("set EASEL_WEBHOOK_SECRET or EASEL_WEBHOOK_SECRET_ARN")


def deps() -> Deps:
    global _deps
    with _lock:
        if _deps is None:
            settings = WebhookSettings()
            origins = frozenset(o for o in settings.test_insecure_origins.split(",") if o)
            policy = DeliveryPolicy(timeout_seconds=settings.timeout_seconds, test_insecure_origins=origins)
            _deps = Deps(master=_load_master(settings), sender=WebhookSender(policy, http=httpx.Client()))
        return _deps


def set_deps(value: Deps | None) -> None:
    global _deps
    _deps = value


def deliver(message: str, d: Deps, attempt: Attempt | None = None) -> str:
    """Handle one result notification; returns what happened (for logs and tests).

    Each attempt that sends (or refuses to send) a webhook is a span in the task's trace, continuing the
    publish span's context in ``attempt.trace`` (:mod:`lambdas.webhooks.spans`)."""
    attempt = attempt or Attempt()
    task = Task.model_validate_json(message)
    event = wanted(task)
    if event is None or task.webhook is None:
        return "skipped"
    secret = derive_tenant_secret(d.master, task.tenant)
    attributes = {
        "easel.task_id": task.id,
        "easel.tenant": task.tenant,
        "easel.event": event,
        **target_attributes(task.webhook),
    }
    with delivery_span(attempt, attributes, d.tracer) as span:
        try:
            status = d.sender.send(task.webhook, secret=secret, msg_id=message_id(task), body=body_of(task))
        except (DeliveryRefused, DeliveryRejected) as exc:
            span.finish("dropped", status=exc.status, reason=_safe(exc))
            logger.warning("webhook dropped", extra={"task_id": task.id, "reason": exc.reason})
            return "dropped"
        except DeliveryFailed as exc:
            span.finish("gave up" if attempt.final else "retry", status=exc.status, reason=_safe(exc))
            what = "webhook failed, giving up" if attempt.final else "webhook failed, will retry"
            logger.warning(what, extra={"task_id": task.id, "reason": exc.reason})
            raise
        span.finish("delivered", status=status)
    logger.info("webhook delivered", extra={"task_id": task.id, "event": event})
    return "delivered"


def _safe(exc: DeliveryRefused | DeliveryRejected | DeliveryFailed) -> str:
    # A reason may quote the URL it could not parse; a trace keeps host and path only (target_attributes).
    return exc.reason.replace(exc.url, "<webhook url>")


@event_source(data_class=SNSEvent)
@logger.inject_lambda_context
def handler(event: SNSEvent, context: LambdaContext) -> dict[str, Any]:  # noqa: ARG001
    return {
        "results": [
            deliver(
                record.sns.message,
                deps(),
                # Lambda's asynchronous retries do not tell the function which attempt this is.
                Attempt(trace=carrier_of_attributes(record.sns.get("MessageAttributes"))),
            )
            for record in event.records
        ]
    }
