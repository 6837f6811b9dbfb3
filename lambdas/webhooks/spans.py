"""One span per webhook delivery attempt, in the task's trace.

The agent publishes each result with its publish span's W3C context as SNS message attributes
(:func:`easel.tracing.inject_context`); the delivery span continues that context, so ``easel trace <id>``
(and X-Ray in a deployment) shows each attempt under ``publish``. Its attributes are what an operator asks
("did it arrive, which try, what did the receiver answer?") and nothing a tenant would not want in a trace:
the receiver's scheme, host, port and path, never its query, user info or the signature.

The OpenTelemetry API is optional: the deployed function gets it, with an exporter to X-Ray, from the ADOT
Lambda layer (:mod:`infra.constructs.webhooks`); where it is missing the span is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

NAME = "webhook delivery"
Outcome = Literal["delivered", "retry", "gave up", "dropped"]


@dataclass(frozen=True)
class Attempt:
    """What the transport knows about one delivery attempt of a result message."""

    # W3C trace context of the publishing span (``traceparent``, ``tracestate``).
    trace: Mapping[str, str] = field(default_factory=dict)
    # 1 for the first attempt; None where the transport does not say (Lambda's asynchronous retries).
    number: int | None = None
    # No retry follows if this attempt fails (the next stop is the DLQ / failure queue).
    final: bool = False


def target_attributes(url: str) -> dict[str, str | int]:
    """Where the webhook goes, without the parts that may hold credentials (user info, query)."""
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL:
        return {}
    attributes: dict[str, str | int] = {"url.scheme": u.scheme, "server.address": u.host, "url.path": u.path}
    if u.port is not None:
        attributes["server.port"] = u.port
    return attributes


class DeliverySpan:
    """The attempt's span (``None`` without the OpenTelemetry API); :meth:`finish` records the outcome."""

    def __init__(self, span: Any | None) -> None:
        self._span = span

    def finish(self, outcome: Outcome, *, status: int | None = None, reason: str | None = None) -> None:
        if self._span is None:
            return
        self._span.set_attribute("easel.outcome", outcome)
        if status is not None:
            self._span.set_attribute("http.response.status_code", status)
        if outcome != "delivered" and reason:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, reason))


@contextmanager
def delivery_span(
    attempt: Attempt, attributes: Mapping[str, Any], tracer: Tracer | None = None
) -> Iterator[DeliverySpan]:
    """A client span whose parent is the publish span of ``attempt.trace`` (a new trace without one);
    ``tracer`` defaults to the global provider's."""
    try:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind
    except ImportError:
        yield DeliverySpan(None)
        return
    attrs = {**attributes, "http.request.method": "POST"}
    if attempt.number is not None:
        attrs["easel.attempt"] = attempt.number
    tracer = tracer or trace.get_tracer("lambdas.webhooks")
    # In AWS the ADOT wrapper's invocation span is current (the Lambda's own X-Ray trace): linked, so each
    # trace leads to the other; the parent is the task's publish span.
    invocation = trace.get_current_span().get_span_context()
    links = [trace.Link(invocation)] if invocation.is_valid else []
    # Exceptions are not recorded as such: their text names the full URL (see WebhookError).
    with tracer.start_as_current_span(
        NAME,
        context=propagate.extract(dict(attempt.trace)),
        kind=SpanKind.CLIENT,
        attributes=attrs,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield DeliverySpan(span)
