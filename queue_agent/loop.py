"""The agent: receive -> prepare -> run -> finish, as a three-stage pipeline around a one-at-a-time runtime.

    pollers (2)        main thread (run)             finisher thread
    ------------       -----------------------       ---------------------------------
    receive (high      take the next prepared job    upload outputs (deterministic keys)
    lane first)        (high before normal)          -> succeeded (conditional write)
    parse, record,     switch model if needed        -> result notification (claimed once)
    skip terminal,     generate (runtime call)       -> delete (batched)
    fetch inputs       hand over, take the next      settle errors (fail/backoff/leave)

While the runtime generates task N, a poller already holds task N+1 with its inputs and the
finisher uploads and publishes task N-1; the processing transition of N runs beside its generation. The
main thread does nothing between two runtime calls but pick the next job, so the runtime stays busy.
Prefetch is bounded (``EASEL_AGENT_PREFETCH``, + 1 slot only the high lane may use) because a held
message is invisible to other pods. (Two receives that return at the same instant may overshoot the bound
by their batch; it is a bound on what we ask for, not a hard cap.)

What happens to a message is decided in one place (:meth:`Agent._settle_error`), by error class:
permanent -> task failed + notification + delete; retryable -> visibility backoff; unknown -> left (the
queue redelivers it, then the DLQ takes it; on the last receive the task is also failed).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from easel.contract import (
    Lane,
    QueueMessage,
    Task,
    TaskStatus,
    TaskType,
    parse_queue_message,
)
from easel.contract.tasks import GenerationInput, TrainLoraInput
from easel.errors import FieldError, TaskConflict
from easel.netsafe import Resolver, system_resolver
from easel.store import TaskStore
from queue_agent.errors import (
    AlreadyDone,
    PermanentError,
    RetryableError,
    RuntimeFault,
    RuntimeUnavailable,
    TaskCanceled,
    TaskTimeout,
    Unsupported,
)
from queue_agent.heartbeat import Heartbeat
from queue_agent.inputs import InputFetcher, InputPolicy
from queue_agent.lanes import Acks, ExponentialBackoff, Lanes, Received
from queue_agent.loras import PrivateLoras, needs_field_style
from queue_agent.notify import Notifier
from queue_agent.outputs import OutputWriter
from queue_agent.runtime_client import RuntimeClient, runtime_body, train_body
from queue_agent.settings import AgentSettings
from queue_agent.shutdown import GracefulShutdown
from queue_agent.state import TaskState, utcnow
from queue_agent.telemetry import AgentStats, default_tracer, start_task_span, task_done_record

log = logging.getLogger(__name__)

_REINTERRUPT_SECONDS = 1.0
TRAIN = "train-lora"  # Job.kind of a training (the others are the WebUI's txt2img / img2img)


@dataclass(eq=False)
class Job:
    """One received message on its way through the pipeline."""

    received: Received
    message: QueueMessage
    span: Span
    task: Task | None = None
    store_path: str = ""
    kind: str = "txt2img"
    body: dict[str, Any] = field(default_factory=dict)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    shutdown_interrupted: bool = False
    returned: bool = False
    run_started: float | None = None
    last_interrupt: float | None = None
    next_cancel_check: float = 0.0
    started_task: Task | None = None
    terminal: Task | None = None
    predict_seconds: float | None = None
    switch_seconds: float = 0.0

    @property
    def rank(self) -> int:
        return 0 if self.received.lane is Lane.HIGH else 1


def input_policy(settings: AgentSettings) -> InputPolicy:
    origins = set()
    for o in settings.agent_test_insecure_origins:
        u = httpx.URL(o)
        port = u.port or (443 if u.scheme == "https" else 80)
        origins.add(f"{u.scheme.lower()}://{u.host.lower()}:{port}")
    return InputPolicy(
        allowed_buckets=settings.allowed_input_buckets,
        allowed_https_hosts=frozenset(settings.allowed_https_hosts),
        max_bytes=settings.max_input_bytes,
        max_pixels=settings.max_input_pixels,
        timeout_seconds=settings.agent_input_timeout_seconds,
        test_insecure_origins=frozenset(origins),
    )


class Agent:
    """The queue agent of one runtime. AWS session, HTTP clients, resolver and tracer are injected."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        session: boto3.Session,
        runtime_http: httpx.Client,
        input_http: httpx.Client,
        resolver: Resolver = system_resolver,
        tracer: Tracer | None = None,
        client_config: Any = None,
    ) -> None:
        self.settings = settings
        kw: dict[str, Any] = {"endpoint_url": settings.aws_endpoint_url, "config": client_config}
        sqs = session.client("sqs", **kw)
        s3 = session.client("s3", **kw)
        store = TaskStore(session.client("dynamodb", **kw), settings.table_name)
        self.lanes = Lanes(sqs, high_url=settings.high_queue_url, normal_url=settings.normal_queue_url)
        self.acks = Acks(self.lanes)
        self.state = TaskState(store)
        self.notifier = Notifier(session.client("sns", **kw), settings.results_topic_arn, store)
        self.outputs = OutputWriter(s3, settings.outputs_bucket)
        self.runtime = RuntimeClient(runtime_http, generate_timeout=settings.task_timeout_seconds + 30)
        self.loras = PrivateLoras(s3, settings.outputs_bucket, self.runtime)
        self.inputs = InputFetcher(input_policy(settings), s3=s3, http=input_http, resolver=resolver)
        self.backoff = ExponentialBackoff(
            settings.agent_backoff_base_seconds, settings.agent_backoff_cap_seconds
        )
        self.heartbeat = Heartbeat(
            self.lanes,
            extend_to=settings.visibility_timeout_seconds,
            period=settings.heartbeat_seconds,
            watch_period=min(0.25, settings.agent_cancel_poll_seconds),
            on_watch=self._watch,
        )
        self.shutdown = GracefulShutdown(settings.agent_shutdown_grace_seconds)
        self.stats = AgentStats()
        self.tracer = tracer or default_tracer()

        self._cond = threading.Condition()
        self._buffer: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()
        self._pending = 0  # received, not yet running (being prepared or buffered)
        self._running: Job | None = None
        self._running_lock = threading.Lock()
        self._runtime_ready = threading.Event()
        self._polling = threading.Event()
        self._finish_q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._aux = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agent-start")
        self._high_empty = False  # the high lane's last receive returned nothing
        self._high_waiting = 0  # high messages received and not yet running
        self._pollers = [
            threading.Thread(target=self._poll_loop, args=(lane,), name=f"poll-{lane}", daemon=True)
            for lane in (Lane.HIGH, Lane.NORMAL)
        ]
        self._finisher = threading.Thread(target=self._finish_loop, name="finisher", daemon=True)
        self._run_started = threading.Event()
        self._loop_failed = False

    # == public surface ==================================================================================
    def run(self) -> int:
        """Run until shutdown is requested and the agent is drained. Returns the exit code (0)."""
        self._run_started.set()
        self.heartbeat.start()
        self._finisher.start()
        try:
            if self._await_runtime():
                for poller in self._pollers:
                    poller.start()
                while not self.shutdown.requested.is_set():
                    job = self._next_job(timeout=0.2)
                    if job is not None:
                        self._run(job)
                    if not self._runtime_ready.is_set() and not self.shutdown.requested.is_set():
                        self._await_runtime()
        except BaseException:
            self._loop_failed = True
            log.exception("agent loop died")
            raise
        finally:
            self._drain()
        return 0

    def request_stop(self, reason: str = "stop") -> None:
        self.shutdown.request(reason)

    def drain(self, timeout: float) -> bool:
        """Stop receiving and wait until drained (``GET /drain``)."""
        self.shutdown.request("drain")
        return self.shutdown.drained.wait(timeout)

    def ready_state(self) -> dict[str, Any]:
        runtime_ready = self._runtime_ready.is_set()
        polling = self._polling.is_set()
        stopping = self.shutdown.requested.is_set()
        return {
            "ok": runtime_ready and polling and not stopping,
            "runtime_ready": runtime_ready,
            "polling": polling,
            "stopping": stopping,
        }

    def live_state(self) -> dict[str, Any]:
        """Dead if the loop crashed or a worker thread died while the agent is meant to run."""
        running = self._run_started.is_set() and not self.shutdown.drained.is_set()
        threads = {
            "heartbeat": not running or self.heartbeat.alive,
            "finisher": not running or self._finisher.is_alive(),
            # The pollers start once the runtime is ready and end on shutdown.
            "pollers": not running
            or self.shutdown.requested.is_set()
            or all(p.ident is None or p.is_alive() for p in self._pollers),
        }
        return {"ok": all(threads.values()) and not self._loop_failed, "threads": threads}

    # == runtime readiness ===============================================================================
    def _await_runtime(self) -> bool:
        """Bounded, logged wait for the runtime's ``ready``. Past the bound /ready stays 503, held
        messages go back to the queue and the wait goes on (logging), so a pod whose runtime never comes
        up fails its readiness visibly instead of spinning silently or sitting on messages."""
        self._runtime_ready.clear()
        bound = self.settings.agent_runtime_ready_timeout_seconds
        while not self.shutdown.requested.is_set():
            if self.runtime.wait_ready(bound, stop=self.shutdown.requested):
                self._runtime_ready.set()
                return True
            if self.shutdown.requested.is_set():
                break
            log.error(
                "runtime did not become ready within the bound; readiness fails until it does",
                extra={"runtime_url": self.settings.runtime_url, "bound_seconds": bound},
            )
            self._return_buffered("runtime not ready")
        return False

    # == prep stage ======================================================================================
    def _poll_loop(self, lane: Lane) -> None:
        """One poller per lane. The normal poller receives only while the high lane is empty (its last
        receive returned nothing and no high job waits), so a high task never waits behind queued normal
        ones. Two threads, because a long poll blocks: the high lane can be long-polled all the time
        without ever delaying the normal prefetch the runtime is about to need."""
        errors = 0
        quick = True  # high lane: a short poll first (at start, and right after it had messages)
        prefetch = self.settings.agent_prefetch
        while not self.shutdown.requested.is_set():
            if not self._runtime_ready.wait(0.2):
                continue
            with self._cond:
                if lane is Lane.HIGH:
                    slots = prefetch + 1 - self._pending
                elif self._high_empty and not self._high_waiting:
                    slots = prefetch - self._pending
                else:
                    slots = 0
                if slots <= 0:
                    self._cond.wait(0.2)
                    continue
            if lane is Lane.HIGH:
                wait = 0 if quick else self.settings.agent_high_wait_seconds
            else:
                wait = self.settings.agent_normal_wait_seconds
            self._polling.set()
            try:
                got = self.lanes.receive(lane, slots, wait)
                errors = 0
            except Exception:
                errors += 1
                log.exception("receive failed", extra={"lane": str(lane)})
                self.shutdown.requested.wait(min(20.0, 0.5 * 2**errors))
                continue
            with self._cond:
                self._pending += len(got)
                if lane is Lane.HIGH:
                    quick = bool(got)
                    self._high_empty = not got
                    self._high_waiting += len(got)
                self._cond.notify_all()
            if not got:
                continue
            self.stats.count("received", len(got))
            for m in got:
                self.heartbeat.hold(m)
            for m in got:
                job = None
                if self.shutdown.requested.is_set():
                    self._return(m)
                else:
                    job = self._prepare(m)
                with self._cond:
                    if job is None:
                        self._slot_freed(m.lane)
                    else:
                        heapq.heappush(self._buffer, (job.rank, next(self._seq), job))
                        self._cond.notify_all()
        # Shutdown: what waits unstarted goes back now, not after the running task (another pod can start it).
        self._return_buffered("shutdown")

    def _slot_freed(self, lane: Lane) -> None:
        """A received message stopped waiting (it runs now, or was settled). Call with the lock held."""
        self._pending -= 1
        if lane is Lane.HIGH:
            self._high_waiting -= 1
        self._cond.notify_all()

    def _prepare(self, received: Received) -> Job | None:
        """Parse, ensure the record, skip terminal tasks, fetch inputs. None if the message is settled."""
        try:
            message = parse_queue_message(received.body)
        except FieldError as exc:
            self._poison(received, exc)
            return None
        job = Job(
            received=received,
            message=message,
            span=start_task_span(
                self.tracer,
                message.trace_context,
                "easel.task",
                {
                    "easel.task_id": message.id,
                    "easel.tenant": message.tenant,
                    "easel.runtime": message.runtime,
                    "easel.model": message.model,
                    "easel.task_type": str(message.task_type),
                    "easel.lane": str(received.lane),
                    "messaging.message.id": received.message_id,
                    "easel.receive_count": received.receive_count,
                },
            ),
        )
        try:
            task = self.state.ensure(message)
            job.task = task
            if task.status.terminal:
                # Canceled while queued, or a duplicate of a finished task: its notification once, then ack.
                self._notify_and_ack(job, task, skipped=True)
                return None
            job.store_path = self._store_path(message)
            inp = message.input
            if message.task_type is TaskType.TRAIN_LORA and isinstance(inp, TrainLoraInput):
                # Training images go through the same safe fetch (tenant prefix, allow-list, limits).
                images = [self.inputs.fetch(u, message.tenant).data for u in inp.images]
                job.kind, job.body = TRAIN, train_body(inp, images=images, model=job.store_path)
            elif isinstance(inp, GenerationInput):
                fetched = [self.inputs.fetch(u, message.tenant).data for u in inp.init_images]
                # Only the task's own tenant prefix is looked at: another tenant's adapter is unreachable.
                names = self.loras.resolve(message.tenant, [lo.name for lo in inp.loras])
                needs_field_style(self.settings.agent_lora_style, names)
                job.kind, job.body = runtime_body(
                    inp, init_images=fetched, lora_style=self.settings.agent_lora_style, lora_names=names
                )
            else:
                raise Unsupported(f"task_type '{message.task_type}' does not match its input")
            job.span.add_event("prepared")
            return job
        except Exception as exc:
            self._settle_error(job, exc)
            return None

    def _store_path(self, message: QueueMessage) -> str:
        path = self.settings.models.get(message.model)
        if path is None:
            served = ", ".join(sorted(self.settings.models))
            raise Unsupported(
                f"model '{message.model}' is not served by runtime '{self.settings.runtime}' "
                f"(it serves: {served})"
            )
        return path

    def _next_job(self, timeout: float) -> Job | None:
        with self._cond:
            if not self._buffer:
                self._cond.wait(timeout)
            if not self._buffer:
                return None
            _, _, job = heapq.heappop(self._buffer)
            self._slot_freed(job.received.lane)
            return job

    # == run stage (main thread) =========================================================================
    def _run(self, job: Job) -> None:
        with self._running_lock:
            self._running = job
            job.run_started = time.monotonic()
        # The processing transition runs beside the model check and the generation (off the critical path).
        started: Future[Task] = self._aux.submit(self._start, job)
        images: list[bytes] | None = None
        trained: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            t0 = time.monotonic()
            if self.runtime.ensure_model(job.store_path):
                job.switch_seconds = time.monotonic() - t0
                self.stats.runtime_call(job.switch_seconds, generate=False, switched=True)
            if not job.cancel_requested.is_set():
                t0 = time.monotonic()
                try:
                    if job.kind == TRAIN:
                        trained = self.runtime.train(job.body)
                    else:
                        images = self.runtime.generate(job.kind, job.body)
                finally:
                    job.predict_seconds = time.monotonic() - t0
                    self.stats.runtime_call(job.predict_seconds, generate=True)
        except Exception as exc:
            error = exc
        finally:
            with self._running_lock:
                self._running = None
        if isinstance(error, RuntimeUnavailable):
            # Stop taking tasks until /health says ready again (the run loop waits for it). A restarted
            # runtime may have lost the private LoRAs it was sent.
            self._runtime_ready.clear()
            self.loras.forget()
        try:
            started.result()
        except (TaskCanceled, AlreadyDone):
            pass  # flags on the job say what happened
        except Exception as exc:
            error = error or exc

        if job.shutdown_interrupted and not job.cancel_requested.is_set() and job.terminal is None:
            self._return(job.received, job)
            return
        if job.cancel_requested.is_set():
            self._finish_q.put(lambda: self._complete_canceled(job))
        elif job.terminal is not None:
            terminal = job.terminal
            self._finish_q.put(lambda: self._notify_and_ack(job, terminal, skipped=True))
        elif job.timed_out:
            timeout = TaskTimeout(
                f"task exceeded EASEL_TASK_TIMEOUT_SECONDS={self.settings.task_timeout_seconds:g}; "
                "the runtime was interrupted"
            )
            self._finish_q.put(lambda: self._settle_error(job, timeout))
        elif error is not None:
            err = error
            self._finish_q.put(lambda: self._settle_error(job, err))
        elif job.kind == TRAIN:
            assert trained is not None
            result = trained
            self._finish_q.put(lambda: self._complete_lora(job, result))
        else:
            assert images is not None
            done = images
            self._finish_q.put(lambda: self._complete(job, done))

    def _start(self, job: Job) -> Task:
        """queued|processing -> processing, beside the generation (off the runtime's critical path)."""
        try:
            task = self.state.start(job.message, utcnow())
        except TaskConflict as exc:
            current = exc.current if isinstance(exc.current, Task) else None
            if current is not None and current.status is TaskStatus.CANCELED:
                job.cancel_requested.set()
                self._interrupt(job, "canceled before it started")
                raise TaskCanceled(job.message.id) from None
            if current is not None and current.status.terminal:
                job.terminal = current
                self._interrupt(job, "already terminal")
                raise AlreadyDone(job.message.id) from None
            raise
        job.started_task = task
        job.span.add_event("processing")
        if task.webhook and "start" in task.webhook_events_filter:
            # Only tasks whose webhook asked for "start" get a processing notification.
            try:
                self.notifier.publish_once(task)
            except Exception:
                log.exception("start notification failed", extra={"task_id": task.id})
        return task

    # == watch (heartbeat thread) ========================================================================
    def _watch(self) -> None:
        with self._running_lock:
            job = self._running
        if job is None or job.run_started is None:
            return
        now = time.monotonic()
        if self.shutdown.requested.is_set() and self.shutdown.past_grace():
            if not job.shutdown_interrupted:
                job.shutdown_interrupted = True
                self._interrupt(job, "shutdown grace period over")
            elif not job.returned and self.shutdown.past_grace(self.settings.agent_interrupt_wait_seconds):
                # A wedged runtime must not take the task down with it: the message goes back now.
                log.warning("runtime ignored the interrupt; returning the message", extra=_ids(job))
                self._return(job.received, job)
        if not job.timed_out and now - job.run_started > self.settings.task_timeout_seconds:
            job.timed_out = True
            self._interrupt(job, "task timeout")
        stopping = (
            job.cancel_requested.is_set()
            or job.timed_out
            or job.shutdown_interrupted
            or job.terminal is not None
        )
        if stopping and job.last_interrupt is not None and now - job.last_interrupt >= _REINTERRUPT_SECONDS:
            # An interrupt that reached the runtime just before its generation began is lost (a new job
            # clears the flag): say it again while the job still runs.
            self._interrupt(job, "still running after interrupt")
        if now >= job.next_cancel_check:
            job.next_cancel_check = now + self.settings.agent_cancel_poll_seconds
            current = self.state.find(job.message.tenant, job.message.id)
            canceled = current is not None and current.status is TaskStatus.CANCELED
            if canceled and not job.cancel_requested.is_set():
                job.cancel_requested.set()
                self._interrupt(job, "canceled")

    def _interrupt(self, job: Job, why: str) -> None:
        # Under the lock, and only while this very job runs: an interrupt must never reach the next task.
        with self._running_lock:
            if self._running is job:
                log.info("interrupting runtime", extra={**_ids(job), "why": why})
                job.span.add_event("interrupt", {"why": why})
                job.last_interrupt = time.monotonic()
                self.runtime.interrupt()

    # == finish stage (finisher thread) ==================================================================
    def _finish_loop(self) -> None:
        while True:
            try:
                item = self._finish_q.get(timeout=0.05)
            except queue.Empty:
                item = _IDLE
            if item is None:
                break
            if item is not _IDLE:
                try:
                    item()
                except Exception:
                    log.exception("finisher step failed")
            if len(self.acks) and (self._finish_q.empty() or len(self.acks) >= 10):
                self._flush_acks()
        self._flush_acks()

    def _flush_acks(self) -> None:
        try:
            deleted = self.acks.flush()
        except Exception:
            log.exception("batched delete failed; will retry")
            return
        for m in deleted:
            self.heartbeat.release(m)
        self.stats.count("deleted", len(deleted))

    def _complete(self, job: Job, images: list[bytes]) -> None:
        try:
            task = job.started_task
            assert task is not None
            uris = self.outputs.upload(task.tenant, task.id, images)
            predict = job.predict_seconds or 0.0
            metrics = {
                "queue_seconds": task.metrics.queue_seconds,
                "predict_seconds": round(predict, 6),
                # GPU held for this task: its model switch (if any) and its generation.
                "gpu_seconds": round(predict + job.switch_seconds, 6),
            }
            try:
                done = self.state.succeed(task, uris, metrics)
            except TaskConflict as exc:
                current = exc.current if isinstance(exc.current, Task) else None
                if current is None:
                    raise
                if current.status is TaskStatus.CANCELED:
                    # Canceled between the end of generation and this write: its outputs must not stay.
                    self.outputs.discard(task.tenant, task.id, len(images))
                self._notify_and_ack(job, current, skipped=True)
                return
            self._notify_and_ack(job, done)
        except Exception as exc:
            self._settle_error(job, exc)

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
            uri = self.outputs.upload_lora(task.tenant, name, weights)
            predict = job.predict_seconds or 0.0
            metrics = {
                "queue_seconds": task.metrics.queue_seconds,
                "predict_seconds": round(predict, 6),
                "gpu_seconds": round(predict + job.switch_seconds, 6),
            }
            log.info(
                "lora trained",
                extra={
                    **_ids(job),
                    "lora": uri,
                    "bytes": len(weights),
                    "steps_completed": trained.get("steps_completed"),
                    "eval_loss_before": trained.get("eval_loss_before"),
                    "eval_loss_after": trained.get("eval_loss_after"),
                },
            )
            try:
                done = self.state.succeed(task, [], metrics, lora=uri)
            except TaskConflict as exc:
                current = exc.current if isinstance(exc.current, Task) else None
                if current is None:
                    raise
                if current.status is TaskStatus.CANCELED:
                    self.outputs.discard_lora(task.tenant, name)
                self._notify_and_ack(job, current, skipped=True)
                return
            self._notify_and_ack(job, done)
        except Exception as exc:
            self._settle_error(job, exc)

    def _complete_canceled(self, job: Job) -> None:
        try:
            current = self.state.find(job.message.tenant, job.message.id)
            if current is None or not current.status.terminal:
                # Should not happen (cancel is read from the table); let the queue redeliver.
                raise RuntimeError(
                    f"task '{job.message.id}' flagged canceled but is {current and current.status}"
                )
            self._notify_and_ack(job, current)
        except Exception as exc:
            self._settle_error(job, exc)

    def _notify_and_ack(self, job: Job, task: Task, *, skipped: bool = False) -> None:
        """Terminal task: its notification (claimed once across agents), then delete the message."""
        self.notifier.publish_once(task)
        self.acks.add(job.received)
        self._done(job, task, skipped=skipped)

    # == settling ========================================================================================
    def _settle_error(self, job: Job, exc: BaseException) -> None:
        """The one place deciding what an error does to the task and its message."""
        received = job.received
        last = received.receive_count >= self.settings.max_receive_count
        try:
            if isinstance(exc, TaskCanceled):
                self._complete_canceled(job)
            elif isinstance(exc, PermanentError):
                log.warning(
                    "task failed permanently", extra={**_ids(job), "code": exc.code, "error": str(exc)}
                )
                self._fail_and_ack(job, exc.code, str(exc))
            elif isinstance(exc, RetryableError) and not last:
                delay = self.backoff.delay(received.receive_count)
                log.warning(
                    "retryable error; message back after backoff",
                    extra={**_ids(job), "error": str(exc), "delay_seconds": delay},
                )
                self.heartbeat.release(received)
                self.lanes.change_visibility([received], delay)
                self.stats.count("retried")
                self._end_span(job, "retry", str(exc))
            else:
                if isinstance(exc, RetryableError):
                    log.warning("retryable error on the last receive", extra={**_ids(job), "error": str(exc)})
                else:
                    log.error("unknown error; message left for redelivery", extra=_ids(job), exc_info=exc)
                if last:
                    reason = f"gave up after {received.receive_count} receives; last error: {exc}"
                    task = self.state.fail(job.message.tenant, job.message.id, "retries_exhausted", reason)
                    if task is not None:
                        self.notifier.publish_once(task)
                        self._log_done(task)
                    # The message itself still goes to the DLQ (next receive), where the alarm sees it.
                self.heartbeat.release(received)
                self.stats.count("left")
                self._end_span(job, "left", str(exc))
        except Exception as inner:
            # Settling itself failed (e.g. the table is throttled): keep the message, it comes back.
            log.exception("settling failed; message left for redelivery", extra=_ids(job))
            self.heartbeat.release(received)
            self.stats.count("left")
            self._end_span(job, "left", str(inner))

    def _fail_and_ack(self, job: Job, code: str, message: str) -> None:
        task = self.state.fail(job.message.tenant, job.message.id, code, message)
        if task is not None:
            self.notifier.publish_once(task)
        self.acks.add(job.received)
        if task is not None:
            self._done(job, task)
        else:
            self._end_span(job, "failed", message)

    def _poison(self, received: Received, exc: FieldError) -> None:
        """A message that is not a valid QueueMessage.

        If it still names a task (id and tenant) whose record exists, that task fails with
        ``invalid_message`` (the client learns why) and the message is deleted. Otherwise nobody can be
        told: the message is left alone, returns after the visibility timeout and lands in the DLQ after
        maxReceiveCount receives, where its alarm brings it to an operator with the body intact.
        """
        tenant, task_id = _loose_ids(received.body)
        reason = f"queue message is malformed: {exc}"
        try:
            task = self.state.find(tenant, task_id) if tenant and task_id else None
            if task is not None and tenant and task_id:
                if not task.status.terminal:
                    task = self.state.fail(tenant, task_id, "invalid_message", reason) or task
                self.notifier.publish_once(task)
                self.acks.add(received)
                self.stats.outcome(str(task.status))
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
        self.heartbeat.release(received)
        self.stats.count("left")

    def _return(self, received: Received, job: Job | None = None) -> None:
        """Back to the queue now (visibility 0): shutdown or a runtime that does not come up."""
        if job is not None:
            if job.returned:
                return
            job.returned = True
        self.heartbeat.release(received)
        try:
            self.lanes.change_visibility([received], 0)
        except Exception:
            log.exception("could not return message; it returns after its visibility timeout")
        self.stats.count("returned")
        if job is not None:
            self._end_span(job, "returned", None)

    def _return_buffered(self, why: str) -> None:
        with self._cond:
            jobs = [j for _, _, j in self._buffer]
            self._buffer.clear()
            for j in jobs:
                self._slot_freed(j.received.lane)
        for job in jobs:
            log.info("returning prefetched message", extra={**_ids(job), "why": why})
            self._return(job.received, job)

    # == bookkeeping =====================================================================================
    def _done(self, job: Job, task: Task, *, skipped: bool = False) -> None:
        if not skipped:
            self._log_done(task)
        self.stats.outcome("skipped" if skipped else str(task.status))
        self._end_span(job, str(task.status), task.error.message if task.error else None)

    def _log_done(self, task: Task) -> None:
        metrics = task.metrics.model_dump()
        log.info(
            "task done",
            extra=task_done_record(
                task_id=task.id,
                tenant=task.tenant,
                runtime=self.settings.runtime,
                status=str(task.status),
                metrics=metrics,
                code=task.error.code if task.error else None,
                emf=self.settings.agent_emf,
            ),
        )

    def _end_span(self, job: Job, outcome: str, error: str | None) -> None:
        span = job.span
        if not span.is_recording():
            return
        span.set_attribute("easel.outcome", outcome)
        if error and outcome not in ("succeeded", "canceled"):
            span.set_status(Status(StatusCode.ERROR, error[:200]))
        span.end()

    def release_all(self) -> int:
        """Last resort before a hard exit: every held message back to its queue (visibility 0)."""
        held = self.heartbeat.held()
        for m in held:
            self._return(m)
        return len(held)

    # == drain ===========================================================================================
    def _drain(self) -> None:
        self.shutdown.request("loop exit")
        for poller in self._pollers:
            if poller.ident is not None:
                # A long poll in flight returns within its wait; what it brings is returned below.
                poller.join(timeout=max(self.settings.agent_high_wait_seconds, 20) + 10)
        self._polling.clear()
        self._return_buffered("shutdown")
        # Let the finisher upload/publish/delete what already ran (bounded by the grace left, at least 5 s).
        self._finish_q.put(None)
        self._finisher.join(timeout=max(5.0, self.shutdown.remaining()))
        for m in self.heartbeat.held():
            # Whatever is still held (a finisher that could not finish): back to the queue now.
            self._return(m)
        self.heartbeat.stop()
        self._aux.shutdown(wait=False)
        self.shutdown.drained.set()
        log.info("agent drained", extra={"stats": self.stats.snapshot()})


_IDLE: Callable[[], None] = lambda: None  # noqa: E731 - a sentinel that is also a no-op step


def _ids(job: Job) -> dict[str, Any]:
    return {
        "task_id": job.message.id,
        "tenant": job.message.tenant,
        "message_id": job.received.message_id,
        "receive_count": job.received.receive_count,
    }


def _loose_ids(body: str) -> tuple[str | None, str | None]:
    """id and tenant of a body that failed validation, if it is a JSON object that has them as strings."""
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict):
            tenant, task_id = data.get("tenant"), data.get("id")
            if isinstance(tenant, str) and isinstance(task_id, str) and tenant and task_id:
                return tenant, task_id
    return None, None
