"""Task progress as a tenant sees it: the agent records the phase, step n of N and the queue wait.

The executor says which phase the running job is in (:meth:`ProgressRecorder.phase`: loading the model,
generating, uploading) and the heartbeat's watch calls :meth:`ProgressRecorder.tick` on its fast cadence;
while generating, the runtime's progress fraction becomes ``step`` of the job's ``steps``. A write happens
only when the value changed and at most once per ``period`` seconds (phase changes are written at once),
and only once the task is ``processing`` (the store refuses progress on any other status), so it costs at
most about one conditional DynamoDB write a second per pod while a task runs. Progress is best effort:
a failed write is logged and never disturbs the job.

    {"phase": "generating", "step": 7, "steps": 20, "queue_seconds": 3.2, "updated_at": "..."}
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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
    job_id: str
    phase: ProgressPhase
    written: tuple[Any, ...] | None = None
    written_at: float = float("-inf")


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
        self._running: _Running | None = None

    def phase(self, job: _Job, phase: ProgressPhase, *, fraction: float | None = None) -> None:
        """The job entered ``phase``: recorded now (if the task is processing yet), then by :meth:`tick`."""
        with self._lock:
            if self._running is None or self._running.job_id != job.message.id:
                self._running = _Running(job.message.id, phase)
            self._running.phase = phase
        self._record(job, fraction, force=True)

    def tick(self, job: _Job | None, fraction: Callable[[], float | None]) -> None:
        """From the watch: record the running job's progress if it changed (at most once a period)."""
        if job is None:
            return
        with self._lock:
            running = self._running
        if running is None or running.job_id != job.message.id:
            return
        if self._clock() - running.written_at < self._period:
            return  # not due: do not even ask the runtime
        value = fraction() if running.phase is ProgressPhase.GENERATING else None
        self._record(job, value, force=False)

    def _record(self, job: _Job, fraction: float | None, *, force: bool) -> None:
        task = job.started_task
        with self._lock:
            running = self._running
            if task is None or running is None or running.job_id != job.message.id:
                return  # not processing yet: the store would refuse it; the next tick records it
            steps = nominal_steps(job.message)
            step = None
            if running.phase is ProgressPhase.GENERATING:
                step = round(min(max(fraction or 0.0, 0.0), 1.0) * steps)
            elif running.phase is ProgressPhase.UPLOADING:
                step = steps
            key = (running.phase, step)
            due = force or self._clock() - running.written_at >= self._period
            if key == running.written or not due:
                return
            running.written, running.written_at = key, self._clock()
        started = task.started_at or self._now()
        progress = {
            "phase": str(running.phase),
            "step": step,
            "steps": steps,
            "queue_seconds": round(max((started - job.message.created_at).total_seconds(), 0.0), 3),
            "updated_at": self._now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        try:
            self._write(job.message.tenant, job.message.id, progress)
        except Exception as exc:  # progress is best effort: the job goes on
            log.warning("progress write failed", extra={"task_id": job.message.id, "error": str(exc)})
