"""Task progress as a tenant sees it: the agent records the phase, step n of N and the queue wait.

Who calls what (each on a thread off the runtime's critical path, or without a store write of its own):

    executor, run thread    enter(job, LOADING | GENERATING)    state only, no write
    executor, start helper  opening(job, started_at)            rides on the -> processing write
    heartbeat's watch       tick(jobs, runtime.progress)        the running job(s), throttled
    finisher                uploading(job)                      state only; the watch writes it if it lasts
    finisher                closing(job)                        rides on the -> succeeded write, forgotten
    executor, finisher      end(job)                            any other outcome: forgotten, no write

The first and last values travel with the transitions they belong to, so a task costs no store write for
its progress unless it runs longer than ``period``: on a fast task the progress writes were half of the
agent's DynamoDB writes (docs/benchmarks.md, section 1). While generating, the runtime's progress fraction
(asked once per tick, for every member of a batch) becomes ``step`` of the job's ``steps``. A write happens
only when the value changed and at most once per ``period`` seconds per task (a phase change too: it is news
only to a tenant who polls, and one a second is what ``--wait`` renders), and only once the task is
``processing`` (the store refuses progress on any other status), so it costs at most about one conditional
DynamoDB write a second per running task. Progress is best effort: a
failed write or runtime question is logged and never disturbs the job.

    {"phase": "generating", "step": 7, "steps": 20, "queue_seconds": 3.2, "updated_at": "..."}
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from easel.contract import ProgressPhase, QueueMessage, Task, UpscaleInput

log = logging.getLogger(__name__)

Write = Callable[[str, str, dict[str, Any]], bool]


class _Job(Protocol):
    message: QueueMessage
    started_task: Task | None


def nominal_steps(message: QueueMessage) -> int:
    """The steps the tenant asked for (training steps for train-lora); an upscale is one pass; a pipeline
    counts percent."""
    if isinstance(message.input, UpscaleInput):
        return 1
    steps = getattr(message.input, "steps", None)
    return steps if isinstance(steps, int) else 100


@dataclass
class _Running:
    phase: ProgressPhase
    written: tuple[Any, ...] | None = None
    written_at: float = float("-inf")
    uploading: _Job | None = None  # set while the finisher uploads: the watch no longer lists the job


class ProgressRecorder:
    def __init__(
        self,
        write: Write,
        *,
        period: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._write = write
        self._period = period
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        # Held over deciding and writing, so two threads' writes of one task land in the order decided (a
        # tick's step never lands after the finisher's uploading). Never taken by enter (the run thread).
        self._write_lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def enter(self, job: _Job, phase: ProgressPhase) -> None:
        """The job entered ``phase`` (no write here: the run thread calls it between runtime calls)."""
        with self._lock:
            running = self._running.setdefault(job.message.id, _Running(phase))
            running.phase = phase

    def opening(self, job: _Job, started_at: datetime) -> dict[str, Any] | None:
        """The progress the -> processing transition writes with it (the queue wait, the phase the run is
        in), counted as written; None if the job is not running."""
        with self._write_lock, self._lock:
            running = self._running.get(job.message.id)
            if running is None:
                return None
            key, progress = self._value(job, running, None, started_at)
            running.written, running.written_at = key, self._clock()
        return progress

    def uploading(self, job: _Job) -> None:
        """The finisher uploads the job's outputs: a tick writes the phase if the upload is still going."""
        with self._lock:
            running = self._running.get(job.message.id)
            if running is not None:
                running.phase, running.uploading = ProgressPhase.UPLOADING, job

    def closing(self, job: _Job) -> dict[str, Any] | None:
        """The last progress (every step done), for the -> succeeded transition; the job is forgotten."""
        task = job.started_task
        with self._write_lock, self._lock:
            running = self._running.pop(job.message.id, None)
            if running is None or task is None:
                return None
            running.phase = ProgressPhase.UPLOADING
            return self._value(job, running, None, task.started_at or self._now())[1]

    def end(self, job: _Job) -> None:
        """Forget the job (its run is over): no more writes for it."""
        with self._lock:
            self._running.pop(job.message.id, None)

    def tick(self, jobs: Sequence[_Job], fraction: Callable[[], float | None]) -> None:
        """From the watch: record the running jobs' progress where it changed (at most once a period each).
        The runtime is asked only when a generating job is due, and once for all of them (one batch)."""
        now = self._clock()
        with self._lock:
            listed = {job.message.id for job in jobs}
            uploading = [r.uploading for r in self._running.values() if r.uploading is not None]
            jobs = [*jobs, *(job for job in uploading if job.message.id not in listed)]
            due = [
                (job, running)
                for job in jobs
                if job.started_task is not None
                and (running := self._running.get(job.message.id)) is not None
                and now - running.written_at >= self._period
            ]
        if not due:
            return
        value = None
        if any(running.phase is ProgressPhase.GENERATING for _, running in due):
            try:
                value = fraction()
            except Exception as exc:  # the runtime's answer is best effort too
                log.warning("runtime progress unavailable", extra={"error": str(exc)})
        for job, _ in due:
            self._record(job, value)

    def _record(self, job: _Job, fraction: float | None) -> None:
        with self._write_lock:
            self._record_locked(job, fraction)

    def _record_locked(self, job: _Job, fraction: float | None) -> None:
        task = job.started_task
        with self._lock:
            running = self._running.get(job.message.id)
            if task is None or running is None:
                return  # not processing yet (the store would refuse it; the next tick records it), or over
            due = self._clock() - running.written_at >= self._period
            key, progress = self._value(job, running, fraction, task.started_at or self._now())
            if key == running.written or not due:
                return
            running.written, running.written_at = key, self._clock()
        try:
            self._write(job.message.tenant, job.message.id, progress)
        except Exception as exc:  # progress is best effort: the job goes on
            log.warning("progress write failed", extra={"task_id": job.message.id, "error": str(exc)})

    def _value(
        self, job: _Job, running: _Running, fraction: float | None, started: datetime
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(what is compared with the last write, the progress as the store keeps it)."""
        steps = nominal_steps(job.message)
        step = None
        if running.phase is ProgressPhase.GENERATING:
            step = round(min(max(fraction or 0.0, 0.0), 1.0) * steps)
        elif running.phase is ProgressPhase.UPLOADING:
            step = steps
        return (running.phase, step), {
            "phase": str(running.phase),
            "step": step,
            "steps": steps,
            "queue_seconds": round(max((started - job.message.created_at).total_seconds(), 0.0), 3),
            "updated_at": self._now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
