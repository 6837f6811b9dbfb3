"""The agent's writes to the tasks table, over :class:`easel.store.TaskStore` (conditional transitions).

Every write is conditional on the status machine, so a redelivered or concurrently processed message can
never move a terminal task. Throttling becomes :class:`AwsUnavailable` (retryable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from easel import lifecycle
from easel.contract import QueueMessage, Task, TaskRequest, request_fingerprint
from easel.errors import StoreUnavailable, TaskConflict, TaskNotFound
from easel.store import TaskStore
from queue_agent.errors import AwsUnavailable, aws_call

log = logging.getLogger(__name__)


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
        try:
            with _store_call("create task"):
                created, _ = self._store.create(lifecycle.queued_task(message), message_fingerprint(message))
        except TaskConflict as exc:
            # Created meanwhile with another body (the API won a race): the stored one is the truth.
            if exc.current is not None:
                return exc.current
            raise
        return created

    def start(
        self, message: QueueMessage, started_at: datetime, *, progress: dict[str, Any] | None = None
    ) -> Task:
        """queued|processing -> processing, counting the attempt. Raises TaskConflict if terminal."""
        with _store_call("start task"):
            return lifecycle.start(self._store, message, started_at, progress=progress)

    def succeed(
        self,
        task: Task,
        images: list[str],
        metrics: dict[str, float | None],
        *,
        lora: str | None = None,
        progress: dict[str, Any] | None = None,
    ) -> Task:
        """processing -> succeeded with outputs (images, or a trained LoRA's URI) and metrics. Raises
        TaskConflict (e.g. canceled)."""
        with _store_call("complete task"):
            return lifecycle.succeed(self._store, task, images, metrics, lora=lora, progress=progress)

    def fail(self, tenant: str, task_id: str, code: str, message: str) -> Task | None:
        """-> failed with {code, message}; the current task if already terminal; None if unknown.

        The tenant reads the error (API, notification, webhook): it is the code's sentence and the
        message without internals (easel.contract.failures); the message as given goes to the log."""
        log.info("failing task", extra={"task_id": task_id, "tenant": tenant, "code": code, "error": message})
        try:
            with _store_call("fail task"):
                return lifecycle.fail(self._store, tenant, task_id, code, message)
        except TaskConflict as exc:
            return exc.current
        except TaskNotFound:
            return None
