"""The execute stage (the agent's main thread): one job at a time through the runtime, and its watch.

:meth:`Executor.run` switches the model if needed and generates (or trains), while the processing
transition runs beside it on a helper thread (off the runtime's critical path). It returns the job's
:data:`~queue_agent.job.Outcome`; the finisher carries it out.

:meth:`Executor.watch` is called by the heartbeat thread on its fast cadence. It interrupts the running
call when the task is canceled in the table, exceeds ``EASEL_TASK_TIMEOUT_SECONDS``, or the shutdown grace
period is over; it repeats an interrupt the runtime may have missed, and gives the message back when a
wedged runtime ignores it past ``EASEL_AGENT_INTERRUPT_WAIT_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from easel.clock import utcnow
from easel.contract import Task, TaskStatus
from easel.errors import TaskConflict
from queue_agent.errors import AlreadyDone, RuntimeUnavailable, TaskCanceled, TaskTimeout
from queue_agent.job import AlreadyTerminal, Canceled, Failed, Generated, Job, Outcome, Returned, Trained
from queue_agent.notify import Notifier
from queue_agent.runtimes import Runtime
from queue_agent.settings import AgentSettings
from queue_agent.shutdown import GracefulShutdown
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats

log = logging.getLogger(__name__)

REINTERRUPT_SECONDS = 1.0


class Executor:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        runtime: Runtime,
        state: TaskState,
        notifier: Notifier,
        stats: AgentStats,
        shutdown: GracefulShutdown,
        give_back: Callable[[Job], None],
        on_runtime_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._state = state
        self._notifier = notifier
        self._stats = stats
        self._shutdown = shutdown
        self._give_back = give_back
        self._on_runtime_lost = on_runtime_lost
        self._clock = clock
        self._running: Job | None = None
        self._running_lock = threading.Lock()
        self._aux = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agent-start")

    def close(self) -> None:
        self._aux.shutdown(wait=False)

    # -- run (main thread) ---------------------------------------------------------------------------------
    def run(self, job: Job) -> Outcome:
        with self._running_lock:
            self._running = job
            job.run_started = self._clock()
        # The processing transition runs beside the model check and the generation (off the critical path).
        started: Future[Task] = self._aux.submit(self.start, job)
        result: Outcome | None = None
        error: BaseException | None = None
        try:
            result = self._call_runtime(job)
        except Exception as exc:
            error = exc
        finally:
            with self._running_lock:
                self._running = None
        if isinstance(error, RuntimeUnavailable):
            self._on_runtime_lost()
        try:
            started.result()
        except (TaskCanceled, AlreadyDone):
            pass  # flags on the job say what happened
        except Exception as exc:
            error = error or exc
        return self._outcome(job, result, error)

    def _call_runtime(self, job: Job) -> Outcome | None:
        t0 = self._clock()
        if self._runtime.ensure_model(job.store_path):
            job.switch_seconds = self._clock() - t0
            self._stats.runtime_call(job.switch_seconds, generate=False, switched=True)
        if job.cancel_requested.is_set():
            return None
        t0 = self._clock()
        try:
            if job.request.training:
                return Trained(self._runtime.train(job.request))
            return Generated(self._runtime.generate(job.request))
        finally:
            job.predict_seconds = self._clock() - t0
            self._stats.runtime_call(job.predict_seconds, generate=True)

    def _outcome(self, job: Job, result: Outcome | None, error: BaseException | None) -> Outcome:
        """What the run means, most decisive first: shutdown, cancel, terminal elsewhere, timeout, error."""
        if job.shutdown_interrupted and not job.cancel_requested.is_set() and job.terminal is None:
            self._give_back(job)
            return Returned()
        if job.cancel_requested.is_set():
            return Canceled()
        if job.terminal is not None:
            return AlreadyTerminal(job.terminal)
        if job.timed_out:
            return Failed(
                TaskTimeout(
                    f"task exceeded EASEL_TASK_TIMEOUT_SECONDS={self._settings.task_timeout_seconds:g}; "
                    "the runtime was interrupted"
                )
            )
        if error is not None:
            return Failed(error)
        assert result is not None
        return result

    def start(self, job: Job) -> Task:
        """queued|processing -> processing, beside the generation (off the runtime's critical path)."""
        try:
            task = self._state.start(job.message, utcnow())
        except TaskConflict as exc:
            current = exc.current
            if current is not None and current.status is TaskStatus.CANCELED:
                job.cancel_requested.set()
                self.interrupt(job, "canceled before it started")
                raise TaskCanceled(job.message.id) from None
            if current is not None and current.status.terminal:
                job.terminal = current
                self.interrupt(job, "already terminal")
                raise AlreadyDone(job.message.id) from None
            raise
        job.started_task = task
        job.span.add_event("processing")
        if task.webhook and "start" in task.webhook_events_filter:
            # Only tasks whose webhook asked for "start" get a processing notification.
            try:
                self._notifier.publish_once(task)
            except Exception:
                log.exception("start notification failed", extra={"task_id": task.id})
        return task

    # -- watch (heartbeat thread) ---------------------------------------------------------------------------
    def watch(self) -> None:
        with self._running_lock:
            job = self._running
        if job is None or job.run_started is None:
            return
        now = self._clock()
        if self._shutdown.requested.is_set() and self._shutdown.past_grace():
            if not job.shutdown_interrupted:
                job.shutdown_interrupted = True
                self.interrupt(job, "shutdown grace period over")
            elif not job.returned and self._shutdown.past_grace(self._settings.agent_interrupt_wait_seconds):
                # A wedged runtime must not take the task down with it: the message goes back now.
                log.warning("runtime ignored the interrupt; returning the message", extra=job.ids)
                self._give_back(job)
        if not job.timed_out and now - job.run_started > self._settings.task_timeout_seconds:
            job.timed_out = True
            self.interrupt(job, "task timeout")
        stopping = job.cancel_requested.is_set() or job.timed_out or job.shutdown_interrupted
        stopping = stopping or job.terminal is not None
        if stopping and job.last_interrupt is not None and now - job.last_interrupt >= REINTERRUPT_SECONDS:
            # An interrupt that reached the runtime just before its generation began is lost (a new job
            # clears the flag): say it again while the job still runs.
            self.interrupt(job, "still running after interrupt")
        if now >= job.next_cancel_check:
            job.next_cancel_check = now + self._settings.agent_cancel_poll_seconds
            current = self._state.find(job.message.tenant, job.message.id)
            canceled = current is not None and current.status is TaskStatus.CANCELED
            if canceled and not job.cancel_requested.is_set():
                job.cancel_requested.set()
                self.interrupt(job, "canceled")

    def interrupt(self, job: Job, why: str) -> None:
        # Under the lock, and only while this very job runs: an interrupt must never reach the next task.
        with self._running_lock:
            if self._running is job:
                log.info("interrupting runtime", extra={**job.ids, "why": why})
                job.span.add_event("interrupt", {"why": why})
                job.last_interrupt = self._clock()
                self._runtime.interrupt()
