"""The agent's writes to the tasks table, over :class:`easel.store.TaskStore` (conditional transitions).

Every write is conditional on the status machine, so a redelivered or concurrently processed message can
never move a terminal task. Throttling becomes :class:`AwsUnavailable` (retryable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from easel.contract import QueueMessage, Task, TaskRequest, TaskStatus, request_fingerprint
from easel.contract.failures import task_error
from easel.errors import StoreUnavailable, TaskConflict, TaskNotFound
from easel.store import TaskStore
from queue_agent.errors import AwsUnavailable, aws_call

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def message_fingerprint(message: QueueMessage) -> str:
    """The API's request fingerprint of the request this message stands for (no webhook, no context)."""
    request = TaskRequest(
        id=message.id,
        task_type=message.task_type,
        model=message.model,
        priority=message.priority,
        input=message.input,
    )
    return request_fingerprint(request)


@contextmanager
def _store_call(what: str) -> Iterator[None]:
    try:
        with aws_call(what):
            yield
    except StoreUnavailable as exc:
        raise AwsUnavailable(f"{what}: {exc}") from exc


class TaskState:
    def __init__(self, store: TaskStore) -> None:
        self._store = store

    def record_progress(self, tenant: str, task_id: str, progress: dict[str, Any]) -> bool:
        """The running task's progress (only while it is processing; see queue_agent.progress)."""
        with _store_call("record progress"):
            return self._store.record_progress(tenant, task_id, progress)

    def find(self, tenant: str, task_id: str) -> Task | None:
        with _store_call("read task"):
            return self._store.find(tenant, task_id)

    def ensure(self, message: QueueMessage) -> Task:
        """The task record of ``message``; created from the message if it was published to the topic
        directly (no API call made it)."""
        with _store_call("read task"):
            existing = self._store.find(message.tenant, message.id)
        if existing is not None:
            return existing
        task = Task(
            id=message.id,
            tenant=message.tenant,
            status=TaskStatus.QUEUED,
            task_type=message.task_type,
            model=message.model,
            runtime=message.runtime,
            priority=message.priority,
            input=message.input,
            created_at=message.created_at,
        )
        try:
            with _store_call("create task"):
                created, _ = self._store.create(task, message_fingerprint(message))
        except TaskConflict as exc:
            # Created meanwhile with another body (the API won a race): the stored one is the truth.
            if exc.current is not None:
                return exc.current
            raise
        return created

    def start(self, message: QueueMessage, started_at: datetime) -> Task:
        """queued|processing -> processing, counting the attempt. Raises TaskConflict if terminal."""
        queue_seconds = max(0.0, (started_at - message.created_at).total_seconds())
        with _store_call("start task"):
            return self._store.transition(
                message.tenant,
                message.id,
                TaskStatus.PROCESSING,
                updates={"started_at": iso(started_at), "metrics": {"queue_seconds": queue_seconds}},
                count_attempt=True,
            )

    def succeed(
        self, task: Task, images: list[str], metrics: dict[str, float | None], *, lora: str | None = None
    ) -> Task:
        """processing -> succeeded with outputs (images, or a trained LoRA's URI) and metrics. Raises
        TaskConflict (e.g. canceled)."""
        output: dict[str, object] = {"images": images, "urls": []}
        if lora is not None:
            output["lora"] = lora
        with _store_call("complete task"):
            return self._store.transition(
                task.tenant,
                task.id,
                TaskStatus.SUCCEEDED,
                sources=[TaskStatus.PROCESSING],
                updates={
                    "output": output,
                    "metrics": metrics,
                    "completed_at": iso(utcnow()),
                    "error": None,
                },
            )

    def fail(self, tenant: str, task_id: str, code: str, message: str) -> Task | None:
        """-> failed with {code, message}; the current task if already terminal; None if unknown.

        The tenant reads the error (API, notification, webhook): it is the code's sentence and the
        message without internals (easel.contract.failures); the message as given goes to the log."""
        log.info("failing task", extra={"task_id": task_id, "tenant": tenant, "code": code, "error": message})
        try:
            with _store_call("fail task"):
                return self._store.transition(
                    tenant,
                    task_id,
                    TaskStatus.FAILED,
                    updates={
                        "error": task_error(code, message).model_dump(),
                        "completed_at": iso(utcnow()),
                    },
                )
        except TaskConflict as exc:
            return exc.current
        except TaskNotFound:
            return None
