"""The execute stage (the agent's main thread): one job, or a batch of compatible jobs
(:mod:`queue_agent.batching`), through the runtime, and its watch.

:meth:`Executor.run_batch` switches the model if needed and generates (or trains) while the processing
transition runs on a helper thread, and returns one :data:`~queue_agent.job.Outcome` per job: a member's own
error fails that member only, a whole call's error goes to every member, runtime time is shared by images.
:meth:`Executor.watch` (the heartbeat thread's fast cadence) interrupts the call on a cancel (in a batch:
once every member is canceled), on ``EASEL_TASK_TIMEOUT_SECONDS``, or in a shutdown when progress says the
drain deadline will be missed; it repeats a missed interrupt, returns the message of a runtime ignoring a
shutdown interrupt, and records progress (:mod:`queue_agent.progress`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from easel.clock import utcnow
from easel.contract import ProgressPhase, Task, TaskStatus
from easel.errors import TaskConflict
from queue_agent.errors import AlreadyDone, RuntimeUnavailable, TaskCanceled, TaskTimeout
from queue_agent.job import AlreadyTerminal, Canceled, Failed, Generated, Job, Outcome, Returned, Trained
from queue_agent.notify import Notifier
from queue_agent.progress import ProgressRecorder
from queue_agent.runtimes import Runtime, batch_runtime
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
        progress: ProgressRecorder | None = None,
    ) -> None:
        self._settings = settings
        self._progress = progress
        self._runtime = runtime
        self._state = state
        self._notifier = notifier
        self._stats = stats
        self._shutdown = shutdown
        self._give_back = give_back
        self._on_runtime_lost = on_runtime_lost
        self._clock = clock
        self._running: list[Job] = []
        self._running_lock = threading.Lock()
        # Processing transitions of a whole batch run at once (each is one conditional write).
        workers = max(2, settings.agent_batch_max_images)
        self._aux = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent-start")

    def close(self) -> None:
        self._aux.shutdown(wait=False)

    # -- run (main thread) ---------------------------------------------------------------------------------
    def run(self, job: Job) -> Outcome:
        return self.run_batch([job])[0]

    def run_batch(self, jobs: list[Job]) -> list[Outcome]:
        """Run one job, or several compatible ones as one generation (:mod:`queue_agent.batching`); one
        outcome per job, in order. Each task keeps its own transition, cancel, errors and outcome."""
        with self._running_lock:
            self._running = list(jobs)
            now = self._clock()
            for job in jobs:
                job.run_started = now
                # The processing transition refuses a canceled task: the first cancel read is a poll later.
                job.next_cancel_check = now + self._settings.agent_cancel_poll_seconds
                if self._progress is not None:
                    first = ProgressPhase.LOADING if job.request.needs_model else ProgressPhase.GENERATING
                    self._progress.enter(job, first)
        # The processing transitions run beside the model check and the generation (off the critical path).
        started: list[Future[Task]] = [self._aux.submit(self.start, job) for job in jobs]
        results: list[Outcome | Exception] | None = None
        error: BaseException | None = None
        try:
            results = self._call_runtime(jobs)
        except Exception as exc:
            error = exc
        finally:
            with self._running_lock:
                self._running = []
        if isinstance(error, RuntimeUnavailable):
            self._on_runtime_lost()
        outcomes = []
        for i, job in enumerate(jobs):
            mine: Outcome | None = None
            own = error
            if results is not None:
                got = results[i]
                if isinstance(got, Exception):
                    own = got
                else:
                    mine = got
            try:
                started[i].result()
            except (TaskCanceled, AlreadyDone):
                pass  # flags on the job say what happened
            except Exception as exc:
                own = own or exc
            outcome = self._outcome(job, mine, own)
            if self._progress is not None and not isinstance(outcome, Generated | Trained):
                self._progress.end(job)  # nothing to upload: the task keeps its last progress
            outcomes.append(outcome)
        return outcomes

    def _call_runtime(self, jobs: list[Job]) -> list[Outcome | Exception] | None:
        lead = jobs[0]
        t0 = self._clock()
        switched = False
        if lead.request.needs_model:
            with lead.stage("model switch", **{"easel.model": lead.message.model}) as span:
                switched = self._runtime.ensure_model(lead.store_path)
                span.set_attribute("easel.switched", switched)
        switch = 0.0
        if switched:
            switch = self._clock() - t0
            self._stats.runtime_call(switch, generate=False, switched=True)
        if all(job.cancel_requested.is_set() for job in jobs):
            return None
        if self._progress is not None:
            for job in jobs:
                self._progress.enter(job, ProgressPhase.GENERATING)
        total = sum(job.images for job in jobs)
        for job in jobs:
            # Runtime time is shared in proportion to images (cost accounting per task).
            job.gpu_share = job.images / total if len(jobs) > 1 else 1.0
            job.switch_seconds = switch * job.gpu_share
        t0 = self._clock()
        try:
            name = "train" if lead.request.training else "generate"
            with lead.stage(name, **{"easel.batch_tasks": len(jobs)}) as span:
                begin = time.time_ns()
                try:
                    if lead.request.training:
                        return [Trained(self._runtime.train(lead.request))]
                    if len(jobs) == 1:
                        return [Generated(self._runtime.generate(lead.request))]
                    batcher = batch_runtime(self._runtime)
                    assert batcher is not None, "a batch reached a runtime that takes no batches"
                    answers = batcher.generate_batch([job.request for job in jobs])
                    return [a if isinstance(a, Exception) else Generated(a) for a in answers]
                finally:
                    # The batch's other tasks: a generate span of their own, linked to the lead's call.
                    for job in jobs[1:]:
                        job.linked_stage(
                            name, begin, time.time_ns(), span, **{"easel.batch_lead": lead.message.id}
                        )
        finally:
            elapsed = self._clock() - t0
            for job in jobs:
                job.predict_seconds = elapsed
            self._stats.runtime_call(elapsed, generate=True)

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
        now = utcnow()
        # The queue wait and the phase the run is in ride on the transition (no write of their own).
        opening = self._progress.opening(job, now) if self._progress is not None else None
        try:
            task = self._state.start(job.message, now, progress=opening)
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
            # Only a webhook that asked for "start" gets one; in the task's trace, like the last one.
            try:
                with job.stage("publish", **{"easel.status": str(task.status)}):
                    self._notifier.publish_once(task)
            except Exception:
                log.exception("start notification failed", extra={"task_id": task.id})
        return task

    # -- watch (heartbeat thread) ---------------------------------------------------------------------------
    def watch(self) -> None:
        with self._running_lock:
            jobs = list(self._running)
        if not jobs or jobs[0].run_started is None:
            if self._progress is not None:
                self._progress.tick([], self._runtime.progress)  # an upload that lasts (uploading)
            return
        now = self._clock()
        started = jobs[0].run_started
        if self._shutdown.requested.is_set() and not jobs[0].shutdown_interrupted:
            why = None
            if self._shutdown.past_grace():
                why = "drain deadline reached"
            elif (
                self._shutdown.lets_finish(
                    elapsed=now - started,
                    fraction=self._runtime.progress(),  # the seam's progress() never raises
                    timeout_left=self._settings.task_timeout_seconds - (now - started),
                    margin=self._settings.agent_drain_margin_seconds,
                )
                is False
            ):  # None: cannot tell yet
                why = "drain: the task would not finish before the deadline"
            if why is not None:
                for job in jobs:
                    job.shutdown_interrupted = True
                    job.shutdown_interrupted_at = now
                self.interrupt(jobs[0], why)
        elif self._shutdown.requested.is_set():
            at = jobs[0].shutdown_interrupted_at
            if at is not None and now - at >= self._settings.agent_interrupt_wait_seconds:
                for job in jobs:
                    if not job.returned:
                        # A wedged runtime must not take the task down with it: the message goes back now.
                        log.warning("runtime ignored the interrupt; returning the message", extra=job.ids)
                        self._give_back(job)
        if not jobs[0].timed_out and now - started > self._settings.task_timeout_seconds:
            for job in jobs:
                job.timed_out = True
            self.interrupt(jobs[0], "task timeout")
        last = max((j.last_interrupt for j in jobs if j.last_interrupt is not None), default=None)
        if all(_stopping(j) for j in jobs) and last is not None and now - last >= REINTERRUPT_SECONDS:
            # An interrupt just before a generation began is lost (a new job clears it): say it again.
            self.interrupt(jobs[0], "still running after interrupt")
        for job in jobs:
            if now >= job.next_cancel_check:
                job.next_cancel_check = now + self._settings.agent_cancel_poll_seconds
                current = self._state.find(job.message.tenant, job.message.id)
                if current and current.status is TaskStatus.CANCELED and not job.cancel_requested.is_set():
                    job.cancel_requested.set()
                    self.interrupt(job, "canceled")
        if self._progress is not None:
            # Step n of N for every member still wanted (one runtime question for a whole batch).
            self._progress.tick([j for j in jobs if not _stopping(j)], self._runtime.progress)

    def interrupt(self, job: Job, why: str) -> None:
        """Interrupt the runtime for ``job``, only while it runs (an interrupt must never reach the next
        task), and in a batch only once every member stops: a canceled member only loses its outputs."""
        with self._running_lock:
            if not any(j is job for j in self._running):
                return
            if not all(_stopping(j) for j in self._running):
                log.info("batch member stops; the batch runs on", extra={**job.ids, "why": why})
                job.span.add_event("dropped from batch", {"why": why})
                return
            log.info("interrupting runtime", extra={**job.ids, "why": why})
            job.span.add_event("interrupt", {"why": why})
            now = self._clock()
            for j in self._running:
                j.last_interrupt = now
            self._runtime.interrupt()


def _stopping(job: Job) -> bool:
    """The job's outputs are no longer wanted (canceled, finished elsewhere, timed out, shutting down)."""
    return (
        job.cancel_requested.is_set() or job.terminal is not None or job.timed_out or job.shutdown_interrupted
    )
