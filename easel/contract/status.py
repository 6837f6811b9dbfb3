"""The task status machine.

    queued ──> processing ──> succeeded
       │           │    └───> failed
       │           └────────> canceled
       ├──────────────────--> canceled
       └──────────────────--> failed      (dispatch failed, or rejected before processing)

``processing -> processing`` is allowed: a redelivered message (after a crash or an unknown error) is
picked up again by an agent. Terminal states never change.
"""

from __future__ import annotations

from enum import StrEnum

from easel.errors import TransitionError


class TaskStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED})

_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.PROCESSING, TaskStatus.CANCELED, TaskStatus.FAILED}),
    TaskStatus.PROCESSING: frozenset(
        {TaskStatus.PROCESSING, TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED}
    ),
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELED: frozenset(),
}


def can_transition(current: TaskStatus | str, target: TaskStatus | str) -> bool:
    return TaskStatus(target) in _ALLOWED[TaskStatus(current)]


def check_transition(current: TaskStatus | str, target: TaskStatus | str) -> None:
    if not can_transition(current, target):
        raise TransitionError(str(current), str(target))


def sources_of(target: TaskStatus | str) -> frozenset[TaskStatus]:
    """Every status from which ``target`` may be reached (used as the condition of table writes)."""
    t = TaskStatus(target)
    return frozenset(s for s, allowed in _ALLOWED.items() if t in allowed)
