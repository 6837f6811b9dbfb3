"""Which result notifications become webhooks, and their bodies (plain code; no Lambda in here)."""

from __future__ import annotations

from typing import Literal

from easel.contract import Task, TaskStatus

Event = Literal["start", "completed"]


def event_of(task: Task) -> Event | None:
    if task.status is TaskStatus.PROCESSING:
        return "start"
    if task.status.terminal:
        return "completed"
    return None


def wanted(task: Task) -> Event | None:
    """The webhook event to send for this notification, or None (no webhook, or filtered out)."""
    event = event_of(task)
    if task.webhook is None or event is None or event not in task.webhook_events_filter:
        return None
    return event


def message_id(task: Task) -> str:
    # Stable per (task, status): a receiver deduplicates redeliveries and Lambda retries by it.
    return f"msg_{task.id}_{task.status}"


def body_of(task: Task) -> bytes:
    return task.model_dump_json(exclude={"urls"}).encode()
