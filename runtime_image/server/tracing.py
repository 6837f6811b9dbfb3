"""Traces of one Easel process, exported where ``EASEL_TRACES`` says.

- ``off`` (or unset): no SDK; the OpenTelemetry API's spans are no-ops.
- ``otlp``: batched OTLP/HTTP export to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (in a deployment, the ADOT collector
  on the pod's node, which sends to X-Ray).
- ``file:<dir>``: each ended span as one JSON line in ``<dir>/<service>-<pid>.jsonl`` (local mode: the local
  stack keeps them under ``.easel/traces`` and ``easel trace <task-id>`` reads them).

Sampling (``OTEL_TRACES_SAMPLER``/``_ARG``) and resource attributes (``OTEL_RESOURCE_ATTRIBUTES``) follow the
standard variables. W3C trace ids are what X-Ray accepts from OpenTelemetry, so no X-Ray id generator is
needed; :func:`xray_traceparent` turns a Lambda's X-Ray header into a W3C parent so the agent's spans join
the API's X-Ray trace.

Across SNS the context travels as message attributes (``traceparent``, ``tracestate``): the results topic's
body is the public task object, so the context cannot ride in it the way the task message's
``trace_context`` does. :func:`inject_context` writes the current span's context as such a dict,
:func:`carrier_of_attributes` reads it back from whichever shape the consumer sees (an SNS record, an SQS
message, the publish call's own), ready for ``opentelemetry.propagate.extract``.

The runtime imports nothing of this repository and keeps an identical copy in
``runtime_image/server/tracing.py`` (``tests/unit/layers/test_runtime_copies.py`` proves they agree). The
OpenTelemetry SDK is imported only when tracing is on.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

ENV = "EASEL_TRACES"
_XRAY_ROOT = re.compile(r"Root=1-([0-9a-f]{8})-([0-9a-f]{24})")
_XRAY_PARENT = re.compile(r"Parent=([0-9a-f]{16})")
_XRAY_SAMPLED = re.compile(r"Sampled=([01])")
# The W3C trace context fields (https://www.w3.org/TR/trace-context/) that cross a message hop.
CONTEXT_FIELDS = ("traceparent", "tracestate")


def trace_mode(env: Mapping[str, str] | None = None) -> str:
    """``off``, ``otlp`` or ``file:<dir>``; anything else is an error naming the variable."""
    value = (os.environ if env is None else env).get(ENV, "").strip() or "off"
    if value in ("off", "otlp") or (value.startswith("file:") and len(value) > len("file:")):
        return value
    raise ValueError(f"{ENV}={value!r}: expected off, otlp or file:<dir>")


def make_provider(service: str, env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A tracer provider for ``service`` exporting per ``EASEL_TRACES`` (``None`` when off)."""
    mode = trace_mode(env)
    if mode == "off":
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME wins over the default name.
    name = (os.environ if env is None else env).get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if mode == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        directory = Path(mode.removeprefix("file:"))
        # Synchronous: a span is on disk when it ends, so `easel trace` sees a finished task at once.
        exporter: Any = JsonlSpanExporter(directory / f"{name}-{os.getpid()}.jsonl")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def configure_tracing(service: str, env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install :func:`make_provider`'s provider as the process's global one (once per process)."""
    provider = make_provider(service, env)
    if provider is not None:
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
    return provider


def current_trace_id() -> str | None:
    """The active span's trace id (32 hex digits), for log lines; ``None`` outside a recorded span."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - the runtime without the SDK
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def inject_context() -> dict[str, str]:
    """The current span's W3C context (``traceparent``, ``tracestate``) as plain strings; empty outside a
    recorded span or without the OpenTelemetry API (a Lambda without the ADOT layer)."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in CONTEXT_FIELDS}


def carrier_of_attributes(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """The W3C context fields of message attributes in any of their shapes: an SNS record's
    (``{"Type", "Value"}``), an SQS message's or an SNS publish's (``{"DataType", "StringValue"}``), or plain
    strings. Other attributes and non-string values are ignored."""
    carrier: dict[str, str] = {}
    for name in CONTEXT_FIELDS:
        value = (attributes or {}).get(name)
        if isinstance(value, Mapping):
            value = value.get("Value", value.get("StringValue"))
        if isinstance(value, str) and value:
            carrier[name] = value
    return carrier


def xray_trace_id(header: str) -> str | None:
    """The W3C trace id (32 hex digits) of an X-Ray trace header's ``Root``."""
    root = _XRAY_ROOT.search(header)
    return root.group(1) + root.group(2) if root else None


def xray_traceparent(header: str) -> str | None:
    """The W3C ``traceparent`` of an X-Ray trace header (``Root=1-<8>-<24>;Parent=<16>;Sampled=1``)."""
    root, parent = _XRAY_ROOT.search(header), _XRAY_PARENT.search(header)
    if root is None or parent is None:
        return None
    sampled = _XRAY_SAMPLED.search(header)
    flags = "01" if sampled is None or sampled.group(1) == "1" else "00"
    return f"00-{root.group(1)}{root.group(2)}-{parent.group(1)}-{flags}"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as the JSON object ``easel trace`` reads (ids in hex, times in epoch nanoseconds)."""
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    status = span.status
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "name": span.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": status.status_code.name,
        "status_message": status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time": e.timestamp, "attributes": dict(e.attributes or {})} for e in span.events
        ],
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in span.links
        ],
    }


class JsonlSpanExporter:
    """Appends each span as one JSON line to ``path`` (one file per process: no interleaved writes).

    A ``SpanExporter`` by its methods, not by inheritance, so this module imports without the SDK."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Opened once and flushed per export: a span is on disk when it ends, without an open() per span
        # (a third of the exporter's cost on the task's thread).
        self._file: TextIO | None = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 (the SDK's signature)
        return True
