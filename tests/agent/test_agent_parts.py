"""The agent's parts with fake clocks and in-memory fakes (no moto, no sleeping): heartbeat, graceful
shutdown, task state, output writer, the executor's watch and outcomes through the runtime seam."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.trace import INVALID_SPAN
from PIL import Image

from easel.contract import TaskStatus
from easel.contract.failures import MAX_DETAIL, task_error
from easel.naming import output_key
from queue_agent.errors import AwsUnavailable, RuntimeUnavailable, TaskTimeout
from queue_agent.execute import REINTERRUPT_SECONDS, Executor
from queue_agent.heartbeat import Heartbeat
from queue_agent.job import Canceled, Failed, Generated, Job, Returned
from queue_agent.outputs import PNG_MAGIC, OutputWriter
from queue_agent.settings import AgentSettings
from queue_agent.shutdown import GracefulShutdown, finishes_in_time
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats
from tests.agent.unit_fakes import (
    FakeClock,
    FakeLanes,
    FakeS3,
    FakeStore,
    SeamRuntime,
    message,
    queued,
    received,
)


# -- heartbeat --------------------------------------------------------------------------------------------------
def _heartbeat(lanes: FakeLanes, clock: FakeClock, watched: list[float]) -> Heartbeat:
    return Heartbeat(
        lanes,  # type: ignore[arg-type]
        extend_to=60,
        period=15,
        watch_period=0.25,
        on_watch=lambda: watched.append(clock()),
        clock=clock,
    )


def test_heartbeat_extends_held_messages_once_per_period() -> None:
    lanes, clock, watched = FakeLanes(), FakeClock(), []
    hb = _heartbeat(lanes, clock, watched)
    a, b = received(1), received(2)
    hb.hold(a)
    clock.advance(10)
    hb.hold(b)
    hb.beat()
    assert lanes.visibility == []  # nothing held for a full period yet
    clock.advance(5)
    hb.beat()
    assert lanes.visibility == [(["m1"], 60)]
    clock.advance(10)
    hb.beat()
    assert lanes.visibility[-1] == (["m2"], 60)  # b's period ended; a was extended 10 s ago
    assert hb.extensions == 2


def test_heartbeat_forgets_released_and_refused_messages() -> None:
    lanes, clock, watched = FakeLanes(), FakeClock(), []
    hb = _heartbeat(lanes, clock, watched)
    a, b = received(1), received(2)
    hb.hold(a)
    hb.hold(b)
    assert hb.release(a) is True and hb.release(a) is False
    lanes.refuse = {"m2"}  # e.g. its receipt expired: retrying cannot help
    clock.advance(15)
    hb.beat()
    assert hb.held() == [] and hb.extensions == 0


def test_heartbeat_survives_a_failed_extension_and_retries_next_beat() -> None:
    lanes, clock, watched = FakeLanes(), FakeClock(), []
    hb = _heartbeat(lanes, clock, watched)
    hb.hold(received(1))
    clock.advance(15)
    lanes.fail_calls = 1
    hb.beat()  # logged, not raised
    assert hb.held() and lanes.visibility == []
    hb.beat()
    assert lanes.visibility == [(["m1"], 60)]


def test_heartbeat_watches_on_its_own_cadence() -> None:
    lanes, clock, watched = FakeLanes(), FakeClock(), []
    hb = _heartbeat(lanes, clock, watched)
    hb.beat()
    clock.advance(0.1)
    hb.beat()
    clock.advance(0.2)
    hb.beat()
    assert watched == [1000.0, pytest.approx(1000.3)]


# -- graceful shutdown --------------------------------------------------------------------------------------------
def test_shutdown_grace_runs_from_the_first_request() -> None:
    clock = FakeClock()
    sd = GracefulShutdown(25, clock=clock)
    assert not sd.past_grace() and sd.remaining() == 25
    sd.request("SIGTERM")
    clock.advance(10)
    sd.request("drain")  # idempotent: the first reason and deadline stay
    assert sd.reason == "SIGTERM" and sd.requested.is_set()
    assert sd.remaining() == 15 and not sd.past_grace()
    clock.advance(15)
    assert sd.past_grace() and not sd.past_grace(extra=5)
    clock.advance(5)
    assert sd.past_grace(extra=5) and sd.remaining() == 0


# -- task state ---------------------------------------------------------------------------------------------------
def test_task_state_creates_a_missing_record_and_keeps_an_existing_one() -> None:
    store = FakeStore()
    state = TaskState(store)  # type: ignore[arg-type]
    msg = message()
    created = state.ensure(msg)
    assert created.status is TaskStatus.QUEUED and store.fingerprints[("acme", "t1")]
    started = state.start(msg, msg.created_at + timedelta(seconds=2.5))
    assert state.ensure(msg) == started  # the stored record is the truth


def test_task_state_start_counts_attempts_and_queue_seconds() -> None:
    store = FakeStore()
    state = TaskState(store)  # type: ignore[arg-type]
    msg = message(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    store.create(queued(msg), "fp")
    task = state.start(msg, datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC))
    assert task.status is TaskStatus.PROCESSING and task.metrics.queue_seconds == 3.0
    state.start(msg, datetime(2026, 1, 1, 0, 1, tzinfo=UTC))  # redelivery: processing -> processing
    assert store.attempts[("acme", "t1")] == 2
    done = state.succeed(task, ["s3://b/k"], {"queue_seconds": 3.0, "predict_seconds": 1.0})
    assert done.status is TaskStatus.SUCCEEDED and done.output is not None
    assert done.output.images == ["s3://b/k"] and done.completed_at is not None


def test_task_state_fail_is_idempotent_and_never_moves_a_terminal_task() -> None:
    store = FakeStore()
    state = TaskState(store)  # type: ignore[arg-type]
    msg = message()
    store.create(queued(msg), "fp")
    failed = state.fail("acme", "t1", "timeout", "x" * 2000)
    assert failed is not None and failed.error is not None
    # The tenant reads the code's sentence, then the scrubbed detail, bounded (easel.contract.failures).
    assert failed.error.message == task_error("timeout", "x" * 2000).message
    assert failed.error.message.count("x") == MAX_DETAIL
    again = state.fail("acme", "t1", "other", "y")
    assert again is not None and again.error is not None and again.error.code == "timeout"
    assert state.fail("acme", "nope", "timeout", "x") is None


def test_task_state_turns_store_throttling_into_retryable() -> None:
    store = FakeStore()
    store.unavailable = 1
    with pytest.raises(AwsUnavailable, match="read task"):
        TaskState(store).find("acme", "t1")  # type: ignore[arg-type]


# -- output writer ------------------------------------------------------------------------------------------------
def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="JPEG")
    return out.getvalue()


def test_output_writer_uses_deterministic_keys_and_keeps_the_first_write() -> None:
    s3 = FakeS3()
    writer = OutputWriter(s3, "outs")
    first = PNG_MAGIC + b"first"
    uris = writer.upload("acme", "t1", [first, _jpeg()])
    assert uris == [f"s3://outs/{output_key('acme', 't1', n)}" for n in (0, 1)]
    assert s3.objects[output_key("acme", "t1", 1)].startswith(PNG_MAGIC)  # JPEG converted
    assert writer.upload("acme", "t1", [PNG_MAGIC + b"second"]) == uris[:1]  # redelivery
    assert s3.objects[output_key("acme", "t1", 0)] == first


def test_output_writer_raises_other_errors_and_discards_best_effort() -> None:
    s3 = FakeS3()
    writer = OutputWriter(s3, "outs")
    writer.upload("acme", "t1", [PNG_MAGIC])
    writer.discard("acme", "t1", 1)
    assert s3.deleted == [output_key("acme", "t1", 0)] and not s3.objects
    s3.error = "SlowDown"
    with pytest.raises(AwsUnavailable):
        writer.upload("acme", "t2", [PNG_MAGIC])


# -- executor: the watch and the outcomes, through the runtime seam -----------------------------------------------
SETTINGS = AgentSettings(
    runtime="sd15",
    high_queue_url="h",
    normal_queue_url="n",
    table_name="t",
    outputs_bucket="o",
    results_topic_arn="arn",
    models={"sd15": "sd15"},
    task_timeout_seconds=60,
    agent_cancel_poll_seconds=2,
    agent_shutdown_grace_seconds=25,
    agent_interrupt_wait_seconds=5,
    _env_file=None,  # type: ignore[call-arg]
)


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = FakeStore()
        self.runtime = SeamRuntime()
        self.shutdown = GracefulShutdown(SETTINGS.agent_shutdown_grace_seconds, clock=self.clock)
        self.given_back: list[Job] = []
        self.lost = 0
        self.executor = Executor(
            SETTINGS,
            runtime=self.runtime,
            state=TaskState(self.store),  # type: ignore[arg-type]
            notifier=None,  # type: ignore[arg-type]  # no webhook asks for "start" here
            stats=AgentStats(),
            shutdown=self.shutdown,
            give_back=self._give_back,
            on_runtime_lost=self._lost,
            clock=self.clock,
        )
        msg = message()
        self.store.create(queued(msg), "fp")
        self.job = Job(received=received(), message=msg, span=INVALID_SPAN, store_path="sd15")

    def _give_back(self, job: Job) -> None:
        if not job.returned:  # like Settler.give_back: once per job
            job.returned = True
            self.given_back.append(job)

    def _lost(self) -> None:
        self.lost += 1


def test_executor_generates_and_times_the_call() -> None:
    h = Harness()
    h.runtime.during = lambda: h.clock.advance(1.5)
    outcome = h.executor.run(h.job)
    assert outcome == Generated(h.runtime.images)
    assert h.job.predict_seconds == 1.5 and h.runtime.switches == 1
    assert h.job.started_task is not None and h.job.started_task.status is TaskStatus.PROCESSING


def test_executor_watch_interrupts_a_task_past_its_timeout() -> None:
    h = Harness()

    def during() -> None:
        h.clock.advance(SETTINGS.task_timeout_seconds + 1)
        h.executor.watch()
        h.clock.advance(REINTERRUPT_SECONDS)
        h.executor.watch()  # still running: said again

    h.runtime.during = during
    outcome = h.executor.run(h.job)
    assert isinstance(outcome, Failed) and isinstance(outcome.error, TaskTimeout)
    assert h.runtime.interrupts == 2


def test_executor_watch_sees_a_cancel_in_the_table() -> None:
    h = Harness()

    seen: list[tuple[int, int]] = []  # (interrupts, table reads) after each watch

    def during() -> None:
        h.store.transition("acme", "t1", TaskStatus.CANCELED)
        seen.append((h.runtime.interrupts, h.store.reads))
        h.executor.watch()
        seen.append((h.runtime.interrupts, h.store.reads))
        h.clock.advance(SETTINGS.agent_cancel_poll_seconds)
        h.executor.watch()
        seen.append((h.runtime.interrupts, h.store.reads))

    h.runtime.during = during
    assert h.executor.run(h.job) == Canceled()
    # The processing transition itself checked for a cancel: the table is read one poll period later.
    (_, reads), *after = seen
    assert after == [(0, reads), (1, reads + 1)]


def test_executor_shutdown_interrupts_after_grace_then_gives_back_a_wedged_runtime() -> None:
    h = Harness()

    # The runtime reports no progress: no estimate, so the deadline itself is the backstop.

    def during() -> None:
        h.clock.advance(1)
        h.shutdown.request("SIGTERM")
        h.executor.watch()
        assert h.runtime.interrupts == 0  # within the grace period the task may finish
        h.clock.advance(SETTINGS.agent_shutdown_grace_seconds)
        h.executor.watch()
        assert h.runtime.interrupts == 1
        h.clock.advance(SETTINGS.agent_interrupt_wait_seconds)
        h.executor.watch()
        assert h.given_back == [h.job]  # the runtime ignored the interrupt: message back now

    h.runtime.during = during
    assert h.executor.run(h.job) == Returned()


def test_executor_drain_interrupts_at_once_a_task_that_would_not_finish() -> None:
    """10 % done after 10 s: 90 s more, past a 25 s deadline. Interrupted at the first watch, message back."""
    h = Harness()
    h.runtime.fraction = 0.1

    def during() -> None:
        h.clock.advance(10)
        h.executor.watch()
        assert h.runtime.interrupts == 0  # no shutdown yet: nothing to decide
        h.shutdown.request("SIGTERM")
        h.executor.watch()
        assert h.runtime.interrupts == 1

    h.runtime.during = during
    assert h.executor.run(h.job) == Returned()
    assert h.given_back == [h.job]


def test_executor_drain_lets_a_task_finish_that_will_and_reconsiders_when_it_slows() -> None:
    h = Harness()
    h.runtime.fraction = 0.5

    def during() -> None:
        h.clock.advance(4)  # 4 s more to go: 4 + 5 s margin within 25 s
        h.shutdown.request("SIGTERM")
        h.executor.watch()
        assert h.runtime.interrupts == 0
        h.clock.advance(6)
        h.runtime.fraction = 0.55  # slower: ~8.2 s more, 19 s left (14 after the margin)
        h.executor.watch()
        assert h.runtime.interrupts == 0
        h.clock.advance(6)
        h.runtime.fraction = 0.6  # ~10.7 s more, 13 s left (8 after the margin): too late
        h.executor.watch()
        assert h.runtime.interrupts == 1

    h.runtime.during = during
    assert h.executor.run(h.job) == Returned()


def test_executor_drain_ends_normally_when_the_task_finishes_in_time() -> None:
    h = Harness()
    h.runtime.fraction = 0.8

    def during() -> None:
        h.clock.advance(8)
        h.shutdown.request("SIGTERM")
        h.executor.watch()

    h.runtime.during = during
    assert h.executor.run(h.job) == Generated(h.runtime.images)
    assert h.runtime.interrupts == 0 and h.given_back == []


@pytest.mark.parametrize(
    ("elapsed", "fraction", "timeout_left", "deadline_left", "expected"),
    [
        (10, 0.5, 890, 100, True),  # 10 s more, well inside 100 - 5
        (10, 0.1, 890, 100, True),  # 90 s more: just inside 95
        (10, 0.09, 890, 100, False),  # ~101 s more
        (10, None, 890, 100, None),  # the runtime cannot say: no estimate (yet)
        (0, 0.5, 890, 100, None),  # not measurable yet
        (10, 0.0, 890, 100, None),  # no step done yet
        (10, None, 60, 900, True),  # on-demand: the task timeout ends it before the deadline anyway
        (10, 1.0, 890, 100, True),  # done, only the upload left
        (10, 1.0, 890, 4, False),  # not even the margin left
    ],
)
def test_finishes_in_time(
    elapsed: float,
    fraction: float | None,
    timeout_left: float,
    deadline_left: float,
    expected: bool | None,
) -> None:
    assert (
        finishes_in_time(
            elapsed=elapsed,
            fraction=fraction,
            timeout_left=timeout_left,
            deadline_left=deadline_left,
            margin=5,
        )
        is expected
    )


def test_executor_reports_a_lost_runtime() -> None:
    h = Harness()
    h.runtime.error = RuntimeUnavailable("connect refused")
    outcome = h.executor.run(h.job)
    assert isinstance(outcome, Failed) and isinstance(outcome.error, RuntimeUnavailable)
    assert h.lost == 1
