"""The finish stage: one thread that carries out each job's :data:`~queue_agent.job.Outcome`.

While the runtime generates task N, this thread uploads task N-1's outputs (deterministic keys), moves it
to succeeded (a conditional write), publishes its result (claimed once) and deletes its message. Deletes
are batched: flushed when the queue of outcomes runs empty or ten are collected.
"""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import threading
from typing import Any

from easel.contract import Task, TaskStatus
from easel.contract.tasks import TrainLoraInput
from easel.errors import TaskConflict
from queue_agent import compat
from queue_agent.errors import RuntimeFault
from queue_agent.heartbeat import Heartbeat
from queue_agent.job import AlreadyTerminal, Canceled, Failed, Generated, Job, Outcome, Returned, Trained
from queue_agent.lanes import Acks
from queue_agent.outputs import OutputWriter, suffix
from queue_agent.progress import ProgressRecorder
from queue_agent.settle import Settler
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats

log = logging.getLogger(__name__)

_BATCH = 10  # SQS batch API limit: flush deletes at least this often


class Finisher:
    def __init__(
        self,
        *,
        settler: Settler,
        state: TaskState,
        outputs: OutputWriter,
        acks: Acks,
        heartbeat: Heartbeat,
        stats: AgentStats,
        progress: ProgressRecorder | None = None,
    ) -> None:
        self._settler = settler
        self._progress = progress
        self._state = state
        self._outputs = outputs
        self._acks = acks
        self._heartbeat = heartbeat
        self._stats = stats
        self._queue: queue.Queue[tuple[Job, Outcome] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="finisher", daemon=True)

    # -- thread ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def put(self, job: Job, outcome: Outcome) -> None:
        self._queue.put((job, outcome))

    def stop(self, timeout: float) -> None:
        """Finish what is queued (bounded by ``timeout``), flush the deletes, end the thread."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                pass  # idle: a chance to flush the deletes collected by other threads
            else:
                if item is None:
                    break
                try:
                    self.finish(*item)
                except Exception:
                    log.exception("finisher step failed")
            if len(self._acks) and (self._queue.empty() or len(self._acks) >= _BATCH):
                self.flush_acks()
        self.flush_acks()

    def flush_acks(self) -> None:
        try:
            deleted = self._acks.flush()
        except Exception:
            log.exception("batched delete failed; will retry")
            return
        for m in deleted:
            self._heartbeat.release(m)
        self._stats.count("deleted", len(deleted))

    # -- outcomes ------------------------------------------------------------------------------------------
    def finish(self, job: Job, outcome: Outcome) -> None:
        """Carry out one outcome (on this thread; a test may call it directly)."""
        if self._progress is not None and isinstance(outcome, Generated | Trained):
            self._progress.uploading(job)  # written by the watch only if the upload lasts
        try:
            self._carry_out(job, outcome)
        finally:
            if self._progress is not None:
                self._progress.end(job)

    def _carry_out(self, job: Job, outcome: Outcome) -> None:
        match outcome:
            case Generated(images):
                self._complete(job, images)
            case Trained(answer):
                self._complete_lora(job, answer)
            case Canceled():
                self._settler.complete_canceled(job)
            case AlreadyTerminal(task):
                self._settler.notify_and_ack(job, task, skipped=True)
            case Failed(error):
                self._settler.settle(job, error)
            case Returned():
                pass  # given back on the run thread already

    def _closing(self, job: Job) -> dict[str, Any] | None:
        """Every step done: written with -> succeeded."""
        return self._progress.closing(job) if self._progress is not None else None

    def _complete(self, job: Job, images: list[bytes]) -> None:
        try:
            task = job.started_task
            assert task is not None
            fmt, quality = (
                getattr(task.input, "output_format", "png"),
                getattr(task.input, "jpeg_quality", 80),
            )
            prefix = task.output_prefix
            with job.stage("upload", **{"easel.images": len(images)}):
                uris = self._outputs.upload(
                    task.tenant, task.id, images, output_format=fmt, quality=quality, prefix=prefix
                )
                if task.compat is not None:  # its .out beside the images, before the task says succeeded
                    document = compat.encode(compat.succeeded_document(task, images))
                    self._outputs.put_result_document(task.tenant, task.id, document, prefix)
            try:
                done = self._state.succeed(task, uris, _metrics(job, task), progress=self._closing(job))
            except TaskConflict as exc:
                if exc.current is None:
                    raise
                if exc.current.status is TaskStatus.CANCELED:
                    # Canceled between the end of generation and this write: its outputs must not stay.
                    self._outputs.discard(task.tenant, task.id, len(images), suffix(fmt), prefix)
                self._settler.notify_and_ack(job, exc.current, skipped=True)
                return
            self._settler.notify_and_ack(job, done)
        except Exception as exc:
            self._settler.settle(job, exc)

    def _complete_lora(self, job: Job, trained: dict[str, Any]) -> None:
        """A finished training: the adapter to the tenant's LoRA key, then succeeded with output.lora."""
        try:
            task = job.started_task
            assert task is not None and isinstance(task.input, TrainLoraInput)
            encoded = trained.get("weights_b64")
            if trained.get("interrupted") or not isinstance(encoded, str):
                # Interrupted by nobody we know of (cancel, timeout and shutdown are settled before).
                raise RuntimeFault(
                    f"train-lora: no adapter in the answer (interrupted={trained.get('interrupted')!r})"
                )
            try:
                weights = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise RuntimeFault("train-lora: weights_b64 is not base64") from None
            name = task.input.output_name
            uri = self._outputs.upload_lora(task.tenant, name, weights)
            log.info(
                "lora trained",
                extra={
                    **job.ids,
                    "lora": uri,
                    "bytes": len(weights),
                    "steps_completed": trained.get("steps_completed"),
                    "eval_loss_before": trained.get("eval_loss_before"),
                    "eval_loss_after": trained.get("eval_loss_after"),
                },
            )
            try:
                done = self._state.succeed(
                    task, [], _metrics(job, task), lora=uri, progress=self._closing(job)
                )
            except TaskConflict as exc:
                if exc.current is None:
                    raise
                if exc.current.status is TaskStatus.CANCELED:
                    self._outputs.discard_lora(task.tenant, name)
                self._settler.notify_and_ack(job, exc.current, skipped=True)
                return
            self._settler.notify_and_ack(job, done)
        except Exception as exc:
            self._settler.settle(job, exc)


def _metrics(job: Job, task: Task) -> dict[str, float | None]:
    predict = job.predict_seconds or 0.0
    return {
        "queue_seconds": task.metrics.queue_seconds,
        "predict_seconds": round(predict, 6),
        # GPU held for this task: its model switch (if any) and its generation; in a batch, its share of
        # both in proportion to its images (predict_seconds stays the wall time the task waited).
        "gpu_seconds": round(predict * job.gpu_share + job.switch_seconds, 6),
    }
