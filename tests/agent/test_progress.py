"""The agent's progress recorder (phase changes at once, steps at most once a period, only once processing),
and the executor recording it for a running job and for every member of a batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.trace import INVALID_SPAN

from easel.contract import ProgressPhase, QueueMessage, Task, TaskStatus
from queue_agent.errors import RuntimeRejected
from queue_agent.execute import Executor
from queue_agent.job import Failed, Generated, Job
from queue_agent.progress import ProgressRecorder
from queue_agent.runtimes import RuntimeRequest
from queue_agent.settings import AgentSettings
from queue_agent.shutdown import GracefulShutdown
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats
from tests.agent.conftest import Stack, wait_for
from tests.agent.unit_fakes import FakeClock, FakeStore, SeamRuntime, queued, received
from tests.agent.unit_fakes import message as unit_message

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
    recorder.enter(job, ProgressPhase.LOADING)
    recorder.tick([job], lambda: fraction)
    assert writes == []  # not processing yet: the store would refuse it
    started = Task.model_validate(
        {
            **message().model_dump(),
            "status": TaskStatus.PROCESSING,
            "started_at": CREATED + timedelta(seconds=3),
        }
    )
    job.started_task = started
    recorder.tick([job], lambda: fraction)
    assert [(w["phase"], w["step"], w["queue_seconds"]) for w in writes] == [("loading", None, 3.0)]
    recorder.enter(job, ProgressPhase.GENERATING)
    fraction = 0.25
    recorder.tick([job], lambda: fraction)  # a phase change waits for the period like a step
    clock.t = 1.0
    recorder.tick([job], lambda: fraction)
    recorder.tick([job], lambda: fraction)  # unchanged: no write
    clock.t = 2.5
    fraction = 0.5
    recorder.tick([job], lambda: fraction)
    recorder.uploading(job)  # the finisher took it: the watch no longer lists it, the tick still writes
    clock.t = 3.5
    recorder.tick([], lambda: fraction)
    assert [(w["phase"], w["step"], w["steps"]) for w in writes] == [
        ("loading", None, 20),
        ("generating", 5, 20),
        ("generating", 10, 20),
        ("uploading", 20, 20),
    ]
    assert {w["who"] for w in writes} == {("acme", "t1")}
    # Another job's ticks are ignored; a failing write never raises.
    recorder.tick([FakeJob(message().model_copy(update={"id": "t2"}))], lambda: 1.0)
    assert len(writes) == 4
    broken = ProgressRecorder(lambda *_: (_ for _ in ()).throw(RuntimeError("table down")), clock=clock)
    broken.enter(job, ProgressPhase.GENERATING)
    broken.tick([job], lambda: 0.5)


# -- the executor records it (in-memory store and runtime seam; the heartbeat's watch called by hand) --------


class BatchSeam(SeamRuntime):
    """The seam with a settable progress fraction (counting the questions) and mixed batches."""

    batching = True

    def __init__(self) -> None:
        super().__init__()
        self.fraction: float | None = 0.0
        self.asked = 0

    def progress(self) -> float | None:
        self.asked += 1
        return self.fraction

    def generate_batch(self, requests: list[RuntimeRequest]) -> list[list[bytes] | Exception]:
        self.calls.extend(requests)
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return [list(self.images) for _ in requests]


def settings() -> AgentSettings:
    return AgentSettings(
        runtime="sd15", high_queue_url="h", normal_queue_url="n", table_name="t", outputs_bucket="o",
        results_topic_arn="arn", models={"sd15": "sd15"}, agent_batch_max_images=4,
        _env_file=None,  # type: ignore[call-arg]
    )  # fmt: skip


def executor_with(
    store: FakeStore, runtime: BatchSeam, clock: FakeClock
) -> tuple[Executor, ProgressRecorder]:
    state = TaskState(store)  # type: ignore[arg-type]
    recorder = ProgressRecorder(state.record_progress, period=1.0, clock=clock)
    executor = Executor(
        settings(),
        runtime=runtime,
        state=state,
        notifier=None,  # type: ignore[arg-type]  # no webhook asks for "start" here
        stats=AgentStats(),
        shutdown=GracefulShutdown(25, clock=clock),
        give_back=lambda job: None,
        on_runtime_lost=lambda: None,
        clock=clock,
        progress=recorder,
    )
    return executor, recorder


def jobs_in(store: FakeStore, *ids: str) -> list[Job]:
    out = []
    for n, task_id in enumerate(ids, start=1):
        msg = unit_message(task_id)
        store.create(queued(msg), f"fp{n}")
        out.append(Job(received=received(n), message=msg, span=INVALID_SPAN, store_path="sd15"))
    return out


def wait_until(pred: Callable[[], bool]) -> None:
    # The processing transitions run on the executor's helper threads: wait for their writes (an event).
    deadline = time.monotonic() + 10
    while not pred():
        assert time.monotonic() < deadline, "the processing transitions never recorded progress"
        time.sleep(0.005)


def stored(store: FakeStore, task_id: str) -> dict[str, Any] | None:
    task = store.tasks[("acme", task_id)]
    return None if task.progress is None else task.progress.model_dump(mode="json")


def test_the_executor_records_steps_for_every_batch_member_throttled() -> None:
    store, runtime, clock = FakeStore(), BatchSeam(), FakeClock()
    executor, recorder = executor_with(store, runtime, clock)
    jobs = jobs_in(store, "t1", "t2")
    seen: dict[str, Any] = {}

    def during() -> None:
        # Each member's first progress (its queue wait) rides on its processing transition: no write of its own.
        wait_until(lambda: stored(store, "t1") is not None and stored(store, "t2") is not None)
        seen["first"] = [stored(store, "t1"), stored(store, "t2")]
        seen["writes_before"] = len(store.progress_writes)
        runtime.fraction = 0.5
        clock.advance(1.0)
        executor.watch()  # both members at step 1 of 2, the runtime asked once
        seen["asked"] = runtime.asked
        seen["steps"] = [(w[0], w[1]["phase"], w[1]["step"]) for w in store.progress_writes]
        executor.watch()  # within the period: no question, no write
        seen["writes"] = len(store.progress_writes)
        seen["asked_again"] = runtime.asked

    runtime.during = during
    outcomes = executor.run_batch(jobs)
    assert outcomes == [Generated(runtime.images)] * 2
    assert seen["writes_before"] == 0
    assert all(p is not None and p["queue_seconds"] is not None and p["steps"] == 2 for p in seen["first"])
    assert seen["asked"] == 1 and seen["asked_again"] == 1
    assert sorted(seen["steps"]) == [("t1", "generating", 1), ("t2", "generating", 1)]
    assert seen["writes"] == 2
    # The finisher uploads: a quick upload writes nothing; one the watch still sees a period after the
    # last write is written.
    for job in jobs:
        recorder.uploading(job)
    executor.watch()  # within the period: not yet
    assert len(store.progress_writes) == 2
    clock.advance(1.0)
    executor.watch()  # nothing runs on the executor now: the watch still ticks the uploads
    last = dict(store.progress_writes)
    assert {k: (v["phase"], v["step"]) for k, v in last.items()} == {
        "t1": ("uploading", 2),
        "t2": ("uploading", 2),
    }
    assert len(store.progress_writes) == 4
    # The last progress goes with -> succeeded; then the job is forgotten and nothing more is written.
    closing = [recorder.closing(job) for job in jobs]
    assert [(c["phase"], c["step"], c["steps"]) for c in closing if c] == [("uploading", 2, 2)] * 2
    clock.advance(5)
    recorder.tick(jobs, lambda: 1.0)
    assert len(store.progress_writes) == 4
    assert recorder.closing(jobs[0]) is None


def test_a_quick_upload_writes_no_progress_of_its_own() -> None:
    store, runtime, clock = FakeStore(), BatchSeam(), FakeClock()
    executor, recorder = executor_with(store, runtime, clock)
    (job,) = jobs_in(store, "t1")
    (outcome,) = executor.run_batch([job])
    assert outcome == Generated(runtime.images)
    recorder.uploading(job)
    closing = recorder.closing(job)
    assert closing is not None and (closing["phase"], closing["step"]) == ("uploading", 2)
    clock.advance(5)
    executor.watch()
    assert store.progress_writes == []


def test_a_failed_run_stops_recording_and_keeps_the_last_progress() -> None:
    store, runtime, clock = FakeStore(), BatchSeam(), FakeClock()
    executor, recorder = executor_with(store, runtime, clock)
    (job,) = jobs_in(store, "t1")

    def during() -> None:
        wait_until(lambda: stored(store, "t1") is not None)
        runtime.fraction = 0.5
        clock.advance(1.0)
        executor.watch()

    runtime.during = during
    runtime.error = RuntimeRejected("bad sampler")
    (outcome,) = executor.run_batch([job])
    assert isinstance(outcome, Failed)
    writes = len(store.progress_writes)
    assert store.progress_writes[-1][1]["step"] == 1
    clock.advance(5)
    recorder.tick([job], lambda: 1.0)
    recorder.uploading(job)  # forgotten: no write
    recorder.tick([], lambda: 1.0)
    assert len(store.progress_writes) == writes
    assert recorder.closing(job) is None


def test_progress_writes_are_best_effort_and_a_broken_runtime_question_too() -> None:
    store, clock = FakeStore(), FakeClock()
    (job,) = jobs_in(store, "t1")
    store.transition("acme", "t1", TaskStatus.PROCESSING)
    job.started_task = store.tasks[("acme", "t1")]
    recorder = ProgressRecorder(TaskState(store).record_progress, clock=clock)  # type: ignore[arg-type]
    recorder.enter(job, ProgressPhase.GENERATING)
    store.unavailable = 1  # throttled: AwsUnavailable inside, logged, never raised
    recorder.tick([job], lambda: 0.5)
    assert store.progress_writes == []
    clock.advance(1)

    def broken() -> float | None:
        raise RuntimeError("runtime gone")

    recorder.tick([job], broken)  # recorded as step 0: the phase is still news
    assert [(w[1]["phase"], w[1]["step"]) for w in store.progress_writes] == [("generating", 0)]


# -- the agent on moto, the fake runtime over HTTP ---------------------------------------------------------


@pytest.mark.integration
def test_the_agent_records_progress_on_the_task_while_it_runs(stack: Stack) -> None:
    control = stack.runtime.control
    control.hold_seconds, control.progress = 60, 0.25  # held until the test releases it
    stack.submit("p1", steps=20)

    def at(phase: str, step: int | None) -> Callable[[], Task | None]:
        def check() -> Task | None:
            task = stack.task("p1")
            p = task.progress
            return task if p is not None and (p.phase, p.step) == (phase, step) else None

        return check

    with stack.running(agent_progress_seconds=0.1):
        task = wait_for(at("generating", 5), 15, "step 5/20 on the record")
        assert task.status is TaskStatus.PROCESSING and task.progress is not None
        assert task.progress.steps == 20 and task.progress.queue_seconds is not None
        assert task.progress.queue_seconds >= 0
        control.progress = 0.75
        wait_for(at("generating", 15), 15, "step 15/20 on the record")
        stack.runtime.release()
        done = stack.wait_status("p1", "succeeded")
    # The succeeded task keeps its last progress (every step done), written with the transition.
    assert done.progress is not None
    assert (done.progress.phase, done.progress.step, done.progress.steps) == ("uploading", 20, 20)
