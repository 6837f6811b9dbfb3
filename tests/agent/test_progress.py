"""The agent's progress recorder: phase changes at once, steps at most once a period, only once processing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from easel.contract import ProgressPhase, QueueMessage, Task, TaskStatus
from queue_agent.progress import ProgressRecorder

CREATED = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def message() -> QueueMessage:
    return QueueMessage.model_validate(
        {"id": "t1", "tenant": "acme", "task_type": "text-to-image", "model": "sd15", "runtime": "sd15",
         "priority": "normal", "input": {"prompt": "p", "steps": 20}, "created_at": CREATED.isoformat()}
    )  # fmt: skip


@dataclass
class FakeJob:
    message: QueueMessage
    started_task: Task | None = None


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_steps_phases_and_the_queue_wait() -> None:
    writes: list[dict[str, Any]] = []
    clock = Clock()
    recorder = ProgressRecorder(
        lambda tenant, task_id, p: writes.append({"who": (tenant, task_id), **p}) is None,
        period=1.0,
        clock=clock,
        now=lambda: CREATED + timedelta(seconds=9),
    )
    job = FakeJob(message())
    fraction = 0.0
    recorder.phase(job, ProgressPhase.LOADING)
    recorder.tick(job, lambda: fraction)
    assert writes == []  # not processing yet: the store would refuse it
    started = Task.model_validate(
        {
            **message().model_dump(),
            "status": TaskStatus.PROCESSING,
            "started_at": CREATED + timedelta(seconds=3),
        }
    )
    job.started_task = started
    recorder.tick(job, lambda: fraction)
    assert [(w["phase"], w["step"], w["queue_seconds"]) for w in writes] == [("loading", None, 3.0)]
    recorder.phase(job, ProgressPhase.GENERATING)  # a phase change is written at once
    fraction = 0.25
    recorder.tick(job, lambda: fraction)  # same period: not yet
    clock.t = 1.0
    recorder.tick(job, lambda: fraction)
    recorder.tick(job, lambda: fraction)  # unchanged: no write
    clock.t = 2.5
    fraction = 0.5
    recorder.tick(job, lambda: fraction)
    recorder.phase(job, ProgressPhase.UPLOADING)
    assert [(w["phase"], w["step"], w["steps"]) for w in writes] == [
        ("loading", None, 20),
        ("generating", 0, 20),
        ("generating", 5, 20),
        ("generating", 10, 20),
        ("uploading", 20, 20),
    ]
    assert {w["who"] for w in writes} == {("acme", "t1")}
    # Another job's ticks are ignored; a failing write never raises.
    recorder.tick(FakeJob(message().model_copy(update={"id": "t2"})), lambda: 1.0)
    assert len(writes) == 5
    broken = ProgressRecorder(lambda *_: (_ for _ in ()).throw(RuntimeError("table down")), clock=clock)
    broken.phase(job, ProgressPhase.GENERATING)
