"""Logs, metrics, traces and counters of the agent.

- Logs are JSON lines on stdout in the format of every Easel process (:mod:`easel.logjson`); a line about a
  task carries ``task_id`` and ``trace_id``.
- Each finished task logs one ``task_done`` line with id, tenant, runtime, status and the seconds; with
  ``EASEL_AGENT_EMF`` it is also a CloudWatch Embedded Metric Format document, so the same line becomes
  metrics (namespace Easel, dimensions runtime and status) without an agent-side client.
- Traces: the W3C context of ``QueueMessage.trace_context`` is the parent of one span per task attempt, with
  child spans per stage (queue wait, input fetch, model switch, generate, upload, publish); ``EASEL_TRACES``
  picks the exporter (:mod:`easel.tracing`: OTLP to the node's collector, or a local JSONL file).
- :class:`AgentStats`: counters for benchmarks and ``GET /stats`` (runtime busy time, tasks done, ...).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Tracer

from easel import logjson, tracing
from easel import metrics as names
from easel.logjson import JsonFormatter

__all__ = ["JsonFormatter", "configure_logging", "configure_tracing"]

SERVICE = "easel-agent"


def configure_logging(level: str = "INFO") -> None:
    """The one JSON line format of every Easel process (:mod:`easel.logjson`), as ``easel-agent``."""
    logjson.configure_logging(SERVICE, level)


def configure_tracing() -> None:
    """Export spans per ``EASEL_TRACES`` (:mod:`easel.tracing`); log lines inside a span get its trace id."""
    tracing.configure_tracing(SERVICE)
    logjson.set_trace_id_hook(tracing.current_trace_id)


def task_done_record(
    *,
    task_id: str,
    tenant: str,
    runtime: str,
    status: str,
    metrics: dict[str, float | None],
    code: str | None = None,
    emf: bool = True,
    namespace: str = names.NAMESPACE,
) -> dict[str, Any]:
    """The ``extra`` of the per-task log line (EMF document when ``emf``).

    ``metrics``: the task's seconds (:data:`easel.metrics.TASK_SECONDS`) and counts
    (:data:`easel.metrics.TASK_COUNTS`); a ``None`` or missing value is logged but not a datapoint.
    """
    record: dict[str, Any] = {
        "event": "task_done",
        "task_id": task_id,
        "tenant": tenant,
        "runtime": runtime,
        "status": status,
        "error_code": code,
        names.TASKS: 1,
    }
    for name in (names.QUEUE_SECONDS, names.PREDICT_SECONDS, names.GPU_SECONDS):
        record[name] = metrics.get(name)
    for name in (names.MODEL_SWITCH_SECONDS, names.MODEL_SWITCHES, names.IMAGES):
        if name in metrics:
            record[name] = metrics[name]
    if emf:
        present = [n for n in names.TASK_SECONDS if isinstance(metrics.get(n), int | float)]
        counts = [n for n in (names.MODEL_SWITCHES, names.IMAGES) if isinstance(metrics.get(n), int | float)]
        record["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(d) for d in names.TASK_DIMENSIONS],
                    "Metrics": [{"Name": n, "Unit": "Count"} for n in (names.TASKS, *counts)]
                    + [{"Name": n, "Unit": "Seconds"} for n in present],
                }
            ],
        }
    return record


def cold_start_record(*, runtime: str, seconds: float, emf: bool = True) -> dict[str, Any]:
    """The ``extra`` of the agent's one ``runtime ready`` line per pod: process start to a ready runtime."""
    record: dict[str, Any] = {
        "event": "runtime_ready",
        "runtime": runtime,
        names.COLD_START_SECONDS: round(seconds, 3),
    }
    if emf:
        record["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": names.NAMESPACE,
                    "Dimensions": [["runtime"]],
                    "Metrics": [{"Name": names.COLD_START_SECONDS, "Unit": "Seconds"}],
                }
            ],
        }
    return record


def start_task_span(tracer: Tracer, carrier: dict[str, str], name: str, attributes: dict[str, Any]) -> Span:
    """A consumer span whose parent is the producer's W3C trace context (``traceparent``)."""
    ctx = propagate.extract(carrier)
    return tracer.start_span(name, context=ctx, kind=SpanKind.CONSUMER, attributes=attributes)


def record_queue_wait(task_span: Span, tracer: Tracer, created_at: datetime) -> None:
    """A ``queue wait`` child span from the task's creation to this receive (a retry's wait is the time since
    creation too: the span shows when this attempt began), and the seconds as a task-span attribute."""
    now = time.time_ns()
    created = int(created_at.timestamp() * 1e9)
    start = min(created, now)
    task_span.set_attribute("easel.queue_seconds", round((now - start) / 1e9, 6))
    parent = trace.set_span_in_context(task_span)
    tracer.start_span("queue wait", context=parent, start_time=start).end(end_time=now)


def default_tracer() -> Tracer:
    return trace.get_tracer("queue_agent")


class AgentStats:
    """Counters a benchmark reads (``Agent.stats.snapshot()`` or ``GET /stats``).

    ``runtime_busy_seconds`` is the time spent inside runtime calls (model switch + generation);
    dividing it by the wall time gives the runtime busy fraction.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.runtime_busy_seconds = 0.0
        self.generate_seconds = 0.0
        self.model_switches = 0
        self.first_runtime_call: float | None = None
        self.last_runtime_call_end: float | None = None
        self.received = 0
        self.deleted = 0
        self.retried = 0
        self.returned = 0
        self.left = 0
        self.outcomes: Counter[str] = Counter()

    def runtime_call(self, seconds: float, *, generate: bool, switched: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.runtime_busy_seconds += seconds
            if generate:
                self.generate_seconds += seconds
            if switched:
                self.model_switches += 1
            if self.first_runtime_call is None:
                self.first_runtime_call = now - seconds
            self.last_runtime_call_end = now

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def outcome(self, status: str) -> None:
        with self._lock:
            self.outcomes[status] += 1

    @property
    def tasks_done(self) -> int:
        with self._lock:
            return sum(self.outcomes.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            span = None
            if self.first_runtime_call is not None and self.last_runtime_call_end is not None:
                span = self.last_runtime_call_end - self.first_runtime_call
            return {
                "uptime_seconds": now - self.started,
                "runtime_busy_seconds": self.runtime_busy_seconds,
                "generate_seconds": self.generate_seconds,
                "runtime_active_span_seconds": span,
                "busy_fraction_of_active_span": (self.runtime_busy_seconds / span) if span else None,
                "model_switches": self.model_switches,
                "tasks_done": sum(self.outcomes.values()),
                "outcomes": dict(self.outcomes),
                "received": self.received,
                "deleted": self.deleted,
                "retried": self.retried,
                "returned": self.returned,
                "left": self.left,
            }
