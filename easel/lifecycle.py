"""A task's life, in one place for every layer (API, agent, benchmarks, tests):

    queued_task(...)           the one constructor of a new ``queued`` task (from a request or a message)
    publish_task(sns, ...)     the one publish to the tasks topic, with the routing attributes the lanes'
                               filter policies select on
    start / succeed / fail / cancel
                               the status transitions, as conditional writes through :class:`TaskStore`
                               (terminal states never change; a lost race raises ``TaskConflict``)

Timestamps come from :mod:`easel.clock`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from easel.clock import iso, utcnow
from easel.contract import (
    QueueMessage,
    Task,
    TaskRequest,
    TaskStatus,
    routing_attributes,
    sns_attributes,
)
from easel.contract.failures import task_error
from easel.store import TaskStore

CANCELABLE = frozenset({TaskStatus.QUEUED, TaskStatus.PROCESSING})
ERROR_MESSAGE_MAX = 1000


def new_task_id() -> str:
    return uuid.uuid4().hex


def queued_task(
    source: TaskRequest | QueueMessage,
    *,
    tenant: str | None = None,
    runtime: str | None = None,
    created_at: datetime | None = None,
) -> Task:
    """A new ``queued`` task from a client's request (tenant and runtime resolved by the caller) or from a
    queue message (a task published to the topic directly: everything comes from the message)."""
    if isinstance(source, QueueMessage):
        return Task(
            id=source.id,
            tenant=source.tenant,
            status=TaskStatus.QUEUED,
            task_type=source.task_type,
            model=source.model,
            runtime=source.runtime,
            priority=source.priority,
            input=source.input,
            output_prefix=source.output_prefix,
            compat=source.compat,
            created_at=created_at or source.created_at,
        )
    if tenant is None or runtime is None:
        raise ValueError("a task from a request needs its tenant and runtime")
    return Task(
        id=source.id or new_task_id(),
        tenant=tenant,
        status=TaskStatus.QUEUED,
        task_type=source.task_type,
        model=source.model,
        runtime=runtime,
        priority=source.priority,
        input=source.input,
        context=source.context,
        webhook=str(source.webhook) if source.webhook is not None else None,
        webhook_events_filter=source.webhook_events_filter,
        output_prefix=source.output_prefix,
        compat=source.compat,
        created_at=created_at or utcnow(),
    )


def publish_task(sns: Any, topic_arn: str, message: QueueMessage) -> None:
    """Publish ``message`` to the tasks topic; its attributes route it to its runtime's lane."""
    sns.publish(
        TopicArn=topic_arn,
        Message=message.body(),
        MessageAttributes=sns_attributes(routing_attributes(message)),
        # Fair share within a lane: SNS forwards the group id to the (standard) lane queues, and SQS fair
        # queues keep one tenant's backlog from delaying the other tenants' messages.
        MessageGroupId=message.tenant,
    )


# -- transitions ----------------------------------------------------------------------------------------
def start(
    store: TaskStore,
    message: QueueMessage,
    started_at: datetime,
    *,
    progress: Mapping[str, Any] | None = None,
) -> Task:
    """queued|processing -> processing, counting the attempt (a redelivery starts again), with the first
    ``progress`` in the same write."""
    queue_seconds = max(0.0, (started_at - message.created_at).total_seconds())
    updates: dict[str, Any] = {"started_at": iso(started_at), "metrics": {"queue_seconds": queue_seconds}}
    if progress is not None:
        updates["progress"] = dict(progress)
    return store.transition(
        message.tenant, message.id, TaskStatus.PROCESSING, updates=updates, count_attempt=True
    )


def succeed(
    store: TaskStore,
    task: Task,
    images: list[str],
    metrics: dict[str, float | None],
    *,
    lora: str | None = None,
    progress: Mapping[str, Any] | None = None,
) -> Task:
    """processing -> succeeded with outputs (images, or a trained LoRA's URI) and metrics, and the last
    ``progress`` in the same write."""
    output: dict[str, object] = {"images": images, "urls": []}
    if lora is not None:
        output["lora"] = lora
    updates: dict[str, Any] = {
        "output": output,
        "metrics": metrics,
        "completed_at": iso(utcnow()),
        "error": None,
    }
    if progress is not None:
        updates["progress"] = dict(progress)
    return store.transition(
        task.tenant, task.id, TaskStatus.SUCCEEDED, sources=[TaskStatus.PROCESSING], updates=updates
    )


def fail(
    store: TaskStore,
    tenant: str,
    task_id: str,
    code: str,
    detail: str = "",
    *,
    sources: Iterable[TaskStatus] | None = None,
) -> Task:
    """-> failed with ``{code, message}``. The tenant reads it (API, notification, webhook): the message is
    the code's sentence and the detail without internals (:func:`easel.contract.failures.task_error`)."""
    error = task_error(code, detail)
    return store.transition(
        tenant,
        task_id,
        TaskStatus.FAILED,
        updates={
            "error": {"code": error.code, "message": error.message[:ERROR_MESSAGE_MAX]},
            "completed_at": iso(utcnow()),
        },
        sources=sources,
    )


def cancel(store: TaskStore, tenant: str, task_id: str) -> Task:
    """queued|processing -> canceled."""
    return store.transition(
        tenant, task_id, TaskStatus.CANCELED, updates={"completed_at": iso(utcnow())}, sources=CANCELABLE
    )
