"""A received message on its way through the agent, and the :data:`Outcome` its run hands to the finisher.

The execute stage ends every job with exactly one outcome value; the finisher (:mod:`queue_agent.finish`)
carries it out. Outcomes are plain values so the run stage does no I/O of the finish stage, and a test can
build any of them.

    Generated(images)        upload, succeeded, notify, delete
    Trained(answer)          adapter upload, succeeded with output.lora, notify, delete
    Canceled()               the task is canceled: its notification once, delete
    AlreadyTerminal(task)    finished elsewhere (duplicate delivery): its notification once, delete
    Failed(error)            the settle policy decides (fail / retry / leave / give up)
    Returned()               shutdown: the message went back to its queue (visibility 0); nothing left to do
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Tracer

from easel.contract import Lane, QueueMessage, Task
from queue_agent.lanes import Received
from queue_agent.runtimes import RuntimeRequest


@dataclass(eq=False)
class Job:
    """One received message on its way through the pipeline (prefetch -> prepare -> execute -> finish)."""

    received: Received
    message: QueueMessage
    span: Span
    task: Task | None = None
    store_path: str = ""
    request: RuntimeRequest = field(default_factory=lambda: RuntimeRequest("txt2img"))
    # Set by the watch (heartbeat thread), read by the run: why the running call was interrupted.
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    shutdown_interrupted: bool = False
    shutdown_interrupted_at: float | None = None
    returned: bool = False
    run_started: float | None = None
    last_interrupt: float | None = None
    next_cancel_check: float = 0.0
    started_task: Task | None = None
    terminal: Task | None = None
    predict_seconds: float | None = None
    switch_seconds: float = 0.0
    # Cross-task batching (queue_agent.batching): the key of the tasks it may share a generation with
    # (None: runs alone), the images it adds, and its share of a batch's runtime time (its images / all).
    batch_key: Hashable | None = None
    images: int = 1
    gpu_share: float = 1.0
    tracer: Tracer | None = None

    @property
    def rank(self) -> int:
        """Run order: high lane first."""
        return 0 if self.received.lane is Lane.HIGH else 1

    @property
    def ids(self) -> dict[str, Any]:
        """The ``extra`` of every log line about this job."""
        ids: dict[str, Any] = {
            "task_id": self.message.id,
            "tenant": self.message.tenant,
            "message_id": self.received.message_id,
            "receive_count": self.received.receive_count,
        }
        ctx = self.span.get_span_context()
        if ctx.is_valid:
            ids["trace_id"] = format(ctx.trace_id, "032x")
        return ids

    @contextmanager
    def stage(self, name: str, **attributes: Any) -> Iterator[Span]:
        """A child span of the task's span, current while the stage runs: the runtime adapter sends it as
        the request's ``traceparent`` (and the task id as ``baggage``); an exception marks it failed."""
        tracer = self.tracer or trace.get_tracer("queue_agent")
        # The task id travels as W3C baggage with the trace context: the runtime logs it on its lines.
        # Attached (not only passed as the parent): the current context is what the adapter injects.
        parent = baggage.set_baggage("easel.task_id", self.message.id, trace.set_span_in_context(self.span))
        token = otel_context.attach(parent)
        try:
            with tracer.start_as_current_span(name, attributes=attributes) as span:
                yield span
        finally:
            otel_context.detach(token)

    def linked_stage(self, name: str, start_ns: int, end_ns: int, shared: Span, **attributes: Any) -> None:
        """A stage this task shared with others (one batched runtime call): a child of this task's span over
        the same time, linked to the call's span in the batch lead's trace."""
        tracer = self.tracer or trace.get_tracer("queue_agent")
        span = tracer.start_span(
            name,
            context=trace.set_span_in_context(self.span),
            start_time=start_ns,
            attributes=attributes,
            links=[trace.Link(shared.get_span_context())],
        )
        span.end(end_time=end_ns)


@dataclass(frozen=True)
class Generated:
    images: list[bytes]


@dataclass(frozen=True)
class Trained:
    answer: dict[str, Any]


@dataclass(frozen=True)
class Canceled:
    pass


@dataclass(frozen=True)
class AlreadyTerminal:
    task: Task


@dataclass(frozen=True)
class Failed:
    error: BaseException


@dataclass(frozen=True)
class Returned:
    pass


Outcome = Generated | Trained | Canceled | AlreadyTerminal | Failed | Returned


def loose_ids(body: str) -> tuple[str | None, str | None]:
    """tenant and id of a body that failed validation, if it is a JSON object that has them as strings."""
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict):
            tenant, task_id = data.get("tenant"), data.get("id")
            if isinstance(tenant, str) and isinstance(task_id, str) and tenant and task_id:
                return tenant, task_id
    return None, None
