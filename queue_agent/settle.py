"""What an error does to a task and its message: a pure policy, and the settler that carries it out.

:meth:`SettlePolicy.decide` maps (error class, receive count) to a :class:`Decision`, with no I/O:

    TaskCanceled                       -> CANCELED  the task's canceled notification once, delete
    PermanentError (any receive)       -> FAIL      task failed {code, message}, notification, delete
    RetryableError, not last receive   -> RETRY     visibility backoff from the receive count, keep
    RetryableError or unknown, last    -> GIVE_UP   task failed ``retries_exhausted``, message left (-> DLQ)
    anything else, not last            -> LEAVE     message left: redelivered after its visibility timeout

"Last" is ``receive_count >= max_receive_count`` (the queue's maxReceiveCount). :class:`Settler` performs
the decision against the table, the results topic and the queue, and also owns the other ways a held
message leaves the agent: a terminal task acknowledged, a malformed message, a message given back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.trace import Status, StatusCode

from easel import metrics
from easel.contract import Task
from easel.errors import FieldError
from queue_agent.errors import PermanentError, RetryableError, TaskCanceled
from queue_agent.heartbeat import Heartbeat
from queue_agent.job import Job, loose_ids
from queue_agent.lanes import Acks, ExponentialBackoff, Lanes, Received
from queue_agent.notify import Notifier
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats, task_done_record

log = logging.getLogger(__name__)


class Action(StrEnum):
    CANCELED = "canceled"
    FAIL = "fail"
    RETRY = "retry"
    GIVE_UP = "give_up"
    LEAVE = "leave"


@dataclass(frozen=True)
class Decision:
    action: Action
    code: str | None = None  # the task's error code (FAIL, GIVE_UP)
    reason: str = ""  # the task's error message, or what is logged
    delay_seconds: int = 0  # RETRY: the message's new visibility


@dataclass(frozen=True)
class SettlePolicy:
    max_receive_count: int
    backoff: ExponentialBackoff

    def decide(self, error: BaseException, receive_count: int) -> Decision:
        last = receive_count >= self.max_receive_count
        if isinstance(error, TaskCanceled):
            return Decision(Action.CANCELED)
        if isinstance(error, PermanentError):
            return Decision(Action.FAIL, code=error.code, reason=str(error))
        if isinstance(error, RetryableError) and not last:
            return Decision(Action.RETRY, reason=str(error), delay_seconds=self.backoff.delay(receive_count))
        if last:
            reason = f"gave up after {receive_count} receives; last error: {error}"
            return Decision(Action.GIVE_UP, code="retries_exhausted", reason=reason)
        return Decision(Action.LEAVE, reason=str(error))


class Settler:
    """Carries out decisions and acknowledgments; called from the finisher and the prepare stage."""

    def __init__(
        self,
        policy: SettlePolicy,
        *,
        lanes: Lanes,
        acks: Acks,
        heartbeat: Heartbeat,
        state: TaskState,
        notifier: Notifier,
        stats: AgentStats,
        runtime: str,
        emf: bool,
    ) -> None:
        self.policy = policy
        self._lanes = lanes
        self._acks = acks
        self._heartbeat = heartbeat
        self._state = state
        self._notifier = notifier
        self._stats = stats
        self._runtime = runtime
        self._emf = emf

    def settle(self, job: Job, exc: BaseException) -> None:
        """The one place an error's decision is carried out."""
        received = job.received
        decision = self.policy.decide(exc, received.receive_count)
        code = decision.code or ""
        try:
            if decision.action is Action.CANCELED:
                self.complete_canceled(job)
            elif decision.action is Action.FAIL:
                log.warning("task failed permanently", extra={**job.ids, "code": code, "error": str(exc)})
                self.fail_and_ack(job, code, decision.reason)
            elif decision.action is Action.RETRY:
                log.warning(
                    "retryable error; message back after backoff",
                    extra={**job.ids, "error": str(exc), "delay_seconds": decision.delay_seconds},
                )
                self._heartbeat.release(received)
                self._lanes.change_visibility([received], decision.delay_seconds)
                self._stats.count("retried")
                self.end_span(job, "retry", str(exc))
            else:
                if isinstance(exc, RetryableError):
                    log.warning("retryable error on the last receive", extra={**job.ids, "error": str(exc)})
                else:
                    log.error("unknown error; message left for redelivery", extra=job.ids, exc_info=exc)
                if decision.action is Action.GIVE_UP:
                    task = self._state.fail(job.message.tenant, job.message.id, code, decision.reason)
                    if task is not None:
                        self._notifier.publish_once(task)
                        self.log_done(task, job)
                    # The message itself still goes to the DLQ (next receive), where the alarm sees it.
                self._heartbeat.release(received)
                self._stats.count("left")
                self.end_span(job, "left", str(exc))
        except Exception as inner:
            # Settling itself failed (e.g. the table is throttled): keep the message, it comes back.
            log.exception("settling failed; message left for redelivery", extra=job.ids)
            self._heartbeat.release(received)
            self._stats.count("left")
            self.end_span(job, "left", str(inner))

    def complete_canceled(self, job: Job) -> None:
        try:
            current = self._state.find(job.message.tenant, job.message.id)
            if current is None or not current.status.terminal:
                # Should not happen (cancel is read from the table); let the queue redeliver.
                raise RuntimeError(
                    f"task '{job.message.id}' flagged canceled but is {current and current.status}"
                )
            self.notify_and_ack(job, current)
        except Exception as exc:
            self.settle(job, exc)

    def notify_and_ack(self, job: Job, task: Task, *, skipped: bool = False) -> None:
        """Terminal task: its notification (claimed once across agents), then delete the message."""
        with job.stage("publish", **{"easel.status": str(task.status)}):
            self._notifier.publish_once(task)
        self._acks.add(job.received)
        self.done(job, task, skipped=skipped)

    def fail_and_ack(self, job: Job, code: str, message: str) -> None:
        task = self._state.fail(job.message.tenant, job.message.id, code, message)
        if task is not None:
            self._notifier.publish_once(task)
        self._acks.add(job.received)
        if task is not None:
            self.done(job, task)
        else:
            self.end_span(job, "failed", message)

    def poison(self, received: Received, exc: FieldError) -> None:
        """A message that is not a valid QueueMessage.

        If it still names a task (id and tenant) whose record exists, that task fails with
        ``invalid_message`` (the client learns why) and the message is deleted. Otherwise nobody can be
        told: the message is left alone, returns after the visibility timeout and lands in the DLQ after
        maxReceiveCount receives, where its alarm brings it to an operator with the body intact.
        """
        tenant, task_id = loose_ids(received.body)
        reason = f"queue message is malformed: {exc}"
        try:
            task = self._state.find(tenant, task_id) if tenant and task_id else None
            if task is not None and tenant and task_id:
                if not task.status.terminal:
                    task = self._state.fail(tenant, task_id, "invalid_message", reason) or task
                self._notifier.publish_once(task)
                self._acks.add(received)
                self._stats.outcome(str(task.status))
                log.warning("malformed message failed its task", extra={"task_id": task_id, "error": reason})
                return
        except Exception:
            log.exception("could not fail the task of a malformed message", extra={"task_id": task_id})
        log.error(
            "poison message left for the DLQ",
            extra={
                "message_id": received.message_id,
                "receive_count": received.receive_count,
                "error": reason,
            },
        )
        self._heartbeat.release(received)
        self._stats.count("left")

    def give_back(self, received: Received, job: Job | None = None) -> None:
        """Back to the queue now (visibility 0): shutdown or a runtime that does not come up."""
        if job is not None:
            if job.returned:
                return
            job.returned = True
        self._heartbeat.release(received)
        try:
            self._lanes.change_visibility([received], 0)
        except Exception:
            log.exception("could not return message; it returns after its visibility timeout")
        self._stats.count("returned")
        if job is not None:
            self.end_span(job, "returned", None)

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def done(self, job: Job, task: Task, *, skipped: bool = False) -> None:
        if not skipped:
            self.log_done(task, job)
        self._stats.outcome("skipped" if skipped else str(task.status))
        self.end_span(job, str(task.status), task.error.message if task.error else None)

    def log_done(self, task: Task, job: Job | None = None) -> None:
        values: dict[str, float | None] = dict(task.metrics.model_dump())
        values[metrics.IMAGES] = len(task.output.images) if task.output else 0
        if job is not None and job.predict_seconds is not None:
            # The runtime ran this task: did it have to switch models first (a model cache miss)?
            switched = job.switch_seconds > 0
            values[metrics.MODEL_SWITCHES] = 1 if switched else 0
            values[metrics.MODEL_SWITCH_SECONDS] = round(job.switch_seconds, 6) if switched else None
        record = task_done_record(
            task_id=task.id,
            tenant=task.tenant,
            runtime=self._runtime,
            status=str(task.status),
            metrics=values,
            code=task.error.code if task.error else None,
            emf=self._emf,
        )
        if job is not None and "trace_id" in job.ids:
            record["trace_id"] = job.ids["trace_id"]
        log.info("task done", extra=record)

    @staticmethod
    def end_span(job: Job, outcome: str, error: str | None) -> None:
        span = job.span
        if not span.is_recording():
            return
        span.set_attribute("easel.outcome", outcome)
        if error and outcome not in ("succeeded", "canceled"):
            span.set_status(Status(StatusCode.ERROR, error[:200]))
        span.end()
