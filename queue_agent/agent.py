"""The agent: receive -> prepare -> run -> finish, as a three-stage pipeline around a one-at-a-time runtime.

    pollers (2)            main thread (run)                finisher thread
    -------------------    ---------------------------      ---------------------------------
    receive (high lane     take the next prepared job       upload outputs (deterministic keys)
    first), prepare:       (high before normal)             -> succeeded (conditional write)
    parse, record, skip    switch model if needed           -> result notification (claimed once)
    terminal, fetch        generate (runtime call)          -> delete (batched)
    inputs                 -> the job's Outcome             settle errors (fail/backoff/leave)
    (prefetch, prepare)    (execute)                        (finish, settle)

While the runtime generates task N, a poller already holds task N+1 with its inputs and the finisher
uploads and publishes task N-1; the processing transition of N runs beside its generation. The main thread
does nothing between two runtime calls but pick the next job, so the runtime stays busy. The heartbeat
thread keeps every held message invisible and calls the executor's watch (cancel, timeout, grace).

This module only wires the stages and owns the process-level states: runtime readiness, drain, probes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import boto3
import httpx
from opentelemetry.trace import Tracer

from easel.netsafe import Resolver, system_resolver
from easel.store import TaskStore
from queue_agent.batching import BatchPolicy
from queue_agent.execute import Executor
from queue_agent.finish import Finisher
from queue_agent.heartbeat import Heartbeat
from queue_agent.inputs import InputFetcher
from queue_agent.job import Job, Returned
from queue_agent.lanes import Acks, ExponentialBackoff, Lanes
from queue_agent.loras import PrivateLoras
from queue_agent.notify import Notifier
from queue_agent.outputs import OutputWriter
from queue_agent.prefetch import Prefetcher
from queue_agent.prepare import Preparer, input_policy
from queue_agent.progress import ProgressRecorder
from queue_agent.runtimes import Runtime, batch_runtime, make_runtime
from queue_agent.settings import AgentSettings
from queue_agent.settle import SettlePolicy, Settler
from queue_agent.shutdown import GracefulShutdown
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats, cold_start_record, default_tracer

log = logging.getLogger(__name__)


class Agent:
    """The queue agent of one runtime. AWS session, HTTP clients, resolver, tracer and runtime are injected
    (``runtime`` defaults to the adapter :func:`~queue_agent.runtimes.make_runtime` builds on
    ``runtime_http``)."""

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
        runtime: Runtime | None = None,
    ) -> None:
        self.settings = settings
        kw: dict[str, Any] = {"endpoint_url": settings.aws_endpoint_url, "config": client_config}
        sqs = session.client("sqs", **kw)
        s3 = session.client("s3", **kw)
        store = TaskStore(session.client("dynamodb", **kw), settings.table_name)
        self.lanes = Lanes(sqs, high_url=settings.high_queue_url, normal_url=settings.normal_queue_url)
        self.acks = Acks(self.lanes)
        self.state = TaskState(store)
        self.outputs = OutputWriter(s3, settings.outputs_bucket)
        self.notifier = Notifier(session.client("sns", **kw), settings.results_topic_arn, store, self.outputs)
        self.runtime = runtime or make_runtime(
            runtime_http,
            generate_timeout=settings.task_timeout_seconds + 30,
            kind=settings.runtime_kind,
            lora_style=settings.agent_lora_style,
        )
        # Cross-task batching only where the runtime takes mixed batches (else every task runs alone).
        batching = settings.agent_batch_max_images > 1 and batch_runtime(self.runtime) is not None
        if settings.agent_batch_max_images > 1 and not batching:
            log.warning("EASEL_AGENT_BATCH_MAX_IMAGES is set but the runtime takes no batches; batching off")
        self.batch_policy = BatchPolicy(
            settings.agent_batch_max_images if batching else 1, settings.agent_batch_max_wait_seconds
        )
        self.loras = PrivateLoras(s3, settings.outputs_bucket, self.runtime)
        self.inputs = InputFetcher(input_policy(settings), s3=s3, http=input_http, resolver=resolver)
        self.shutdown = GracefulShutdown(settings.agent_shutdown_grace_seconds)
        self.stats = AgentStats()
        self.tracer = tracer or default_tracer()
        self._runtime_ready = threading.Event()
        self._cold_start_logged = False
        self.heartbeat = Heartbeat(
            self.lanes,
            extend_to=settings.hold_visibility_seconds,
            period=settings.heartbeat_seconds,
            watch_period=min(0.25, settings.agent_cancel_poll_seconds),
            on_watch=lambda: self.executor.watch(),
        )
        backoff = ExponentialBackoff(settings.agent_backoff_base_seconds, settings.agent_backoff_cap_seconds)
        self.settler = Settler(
            SettlePolicy(settings.max_receive_count, backoff),
            lanes=self.lanes,
            acks=self.acks,
            heartbeat=self.heartbeat,
            state=self.state,
            notifier=self.notifier,
            stats=self.stats,
            runtime=settings.runtime,
            emf=settings.agent_emf,
        )
        self.preparer = Preparer(
            settings,
            state=self.state,
            inputs=self.inputs,
            loras=self.loras,
            runtime=self.runtime,
            tracer=self.tracer,
            settler=self.settler,
            batching=self.batch_policy.enabled,
        )
        self.prefetcher = Prefetcher(
            settings,
            lanes=self.lanes,
            heartbeat=self.heartbeat,
            stats=self.stats,
            shutdown=self.shutdown,
            runtime_ready=self._runtime_ready,
            prepare=self.preparer.prepare,
            give_back=self.settler.give_back,
        )
        self.progress = ProgressRecorder(self.state.record_progress, period=settings.agent_progress_seconds)
        self.executor = Executor(
            settings,
            runtime=self.runtime,
            state=self.state,
            notifier=self.notifier,
            stats=self.stats,
            shutdown=self.shutdown,
            give_back=lambda job: self.settler.give_back(job.received, job),
            on_runtime_lost=self._runtime_lost,
            progress=self.progress,
        )
        self.finisher = Finisher(
            settler=self.settler,
            state=self.state,
            outputs=self.outputs,
            acks=self.acks,
            heartbeat=self.heartbeat,
            stats=self.stats,
            progress=self.progress,
        )
        self._run_started = threading.Event()
        self._loop_failed = False

    # == public surface ==================================================================================
    def run(self) -> int:
        """Run until shutdown is requested and the agent is drained. Returns the exit code (0)."""
        self._run_started.set()
        self.heartbeat.start()
        self.finisher.start()
        try:
            if self._await_runtime():
                self.prefetcher.start()
                while not self.shutdown.requested.is_set():
                    jobs = self.prefetcher.next_batch(
                        0.2,
                        max_images=self.batch_policy.max_images,
                        max_wait=self.batch_policy.max_wait_seconds,
                    )
                    if jobs:
                        self._run(jobs)
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
        polling = self.prefetcher.polling.is_set()
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
            "finisher": not running or self.finisher.is_alive(),
            # The pollers start once the runtime is ready and end on shutdown.
            "pollers": not running or self.shutdown.requested.is_set() or self.prefetcher.alive(),
        }
        return {"ok": all(threads.values()) and not self._loop_failed, "threads": threads}

    def release_all(self) -> int:
        """Last resort before a hard exit: every held message back to its queue (visibility 0)."""
        held = self.heartbeat.held()
        for m in held:
            self.settler.give_back(m)
        return len(held)

    # == stages ==========================================================================================
    def _run(self, jobs: list[Job]) -> None:
        outcomes = self.executor.run_batch(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if not isinstance(outcome, Returned):
                self.finisher.put(job, outcome)

    def _runtime_lost(self) -> None:
        # Stop taking tasks until /health says ready again (the run loop waits for it). A restarted
        # runtime may have lost the private LoRAs it was sent.
        self._runtime_ready.clear()
        self.loras.forget()

    def _await_runtime(self) -> bool:
        """Bounded, logged wait for the runtime's ``ready``. Past the bound /ready stays 503, held
        messages go back to the queue and the wait goes on (logging), so a pod whose runtime never comes
        up fails its readiness visibly instead of spinning silently or sitting on messages."""
        self._runtime_ready.clear()
        bound = self.settings.agent_runtime_ready_timeout_seconds
        while not self.shutdown.requested.is_set():
            if self.runtime.wait_ready(bound, stop=self.shutdown.requested):
                if not self._cold_start_logged:
                    # Once per pod: agent start (the pod's containers start together) to a ready runtime.
                    self._cold_start_logged = True
                    log.info(
                        "runtime ready",
                        extra=cold_start_record(
                            runtime=self.settings.runtime,
                            seconds=time.monotonic() - self.stats.started,
                            emf=self.settings.agent_emf,
                        ),
                    )
                self._runtime_ready.set()
                return True
            if self.shutdown.requested.is_set():
                break
            log.error(
                "runtime did not become ready within the bound; readiness fails until it does",
                extra={"runtime_url": self.settings.runtime_url, "bound_seconds": bound},
            )
            self.prefetcher.return_buffered("runtime not ready")
        return False

    def _drain(self) -> None:
        self.shutdown.request("loop exit")
        self.prefetcher.stop()
        # Let the finisher upload/publish/delete what already ran (bounded by the grace left, at least 5 s).
        self.finisher.stop(timeout=max(5.0, self.shutdown.remaining()))
        for m in self.heartbeat.held():
            # Whatever is still held (a finisher that could not finish): back to the queue now.
            self.settler.give_back(m)
        self.heartbeat.stop()
        self.executor.close()
        self.shutdown.drained.set()
        log.info("agent drained", extra={"stats": self.stats.snapshot()})
