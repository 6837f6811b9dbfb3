"""The settle policy on its own (pure: no I/O), for every error class at the first, a middle and the last
receive; then the settler carrying decisions out against in-memory fakes."""

from __future__ import annotations

import pytest
from opentelemetry.trace import INVALID_SPAN

from easel.contract import TaskStatus
from easel.contract.failures import task_error
from easel.errors import FieldError
from queue_agent.errors import (
    AlreadyDone,
    AwsUnavailable,
    InputInvalid,
    InputRefused,
    InputUnavailable,
    InvalidMessage,
    LoraMissing,
    ModelMissing,
    PermanentError,
    RuntimeFault,
    RuntimeRejected,
    RuntimeUnavailable,
    TaskCanceled,
    TaskTimeout,
    Unsupported,
)
from queue_agent.job import Job
from queue_agent.lanes import Acks, ExponentialBackoff
from queue_agent.settle import Action, Decision, SettlePolicy, Settler
from queue_agent.state import TaskState
from queue_agent.telemetry import AgentStats
from tests.agent.unit_fakes import FakeLanes, FakeStore, message, queued, received

MAX_RECEIVES = 3
POLICY = SettlePolicy(MAX_RECEIVES, ExponentialBackoff(base_seconds=5, cap_seconds=600))
FIRST, MIDDLE, LAST = 1, 2, MAX_RECEIVES

PERMANENT: list[PermanentError] = [
    InvalidMessage("bad body"),
    Unsupported("no such model"),
    ModelMissing("model gone"),
    LoraMissing("lora gone"),
    RuntimeRejected("steps too many"),
    InputRefused("s3://x/y", "bucket not allowed"),
    InputInvalid("s3://x/y", "not an image"),
    TaskTimeout("too long"),
    PermanentError("generic"),
]
RETRYABLE = [RuntimeUnavailable("503"), AwsUnavailable("throttled"), InputUnavailable("https://x", "502")]
UNKNOWN = [RuntimeFault("500"), AlreadyDone("t1"), RuntimeError("bug"), KeyError("k")]


@pytest.mark.parametrize("count", [FIRST, MIDDLE, LAST, LAST + 4])
def test_canceled_is_always_completed_as_canceled(count: int) -> None:
    assert POLICY.decide(TaskCanceled("t1"), count) == Decision(Action.CANCELED)


@pytest.mark.parametrize("count", [FIRST, MIDDLE, LAST])
@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_permanent_errors_fail_the_task_on_any_receive(error: PermanentError, count: int) -> None:
    decision = POLICY.decide(error, count)
    assert decision == Decision(Action.FAIL, code=error.code, reason=str(error))


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_retryable_errors_back_off_until_the_last_receive(error: Exception) -> None:
    assert POLICY.decide(error, FIRST) == Decision(Action.RETRY, reason=str(error), delay_seconds=5)
    assert POLICY.decide(error, MIDDLE) == Decision(Action.RETRY, reason=str(error), delay_seconds=10)
    last = POLICY.decide(error, LAST)
    assert last.action is Action.GIVE_UP and last.code == "retries_exhausted"
    assert last.reason == f"gave up after {LAST} receives; last error: {error}"


@pytest.mark.parametrize("error", UNKNOWN, ids=lambda e: type(e).__name__)
def test_unknown_errors_leave_the_message_and_give_up_on_the_last_receive(error: Exception) -> None:
    assert POLICY.decide(error, FIRST) == Decision(Action.LEAVE, reason=str(error))
    assert POLICY.decide(error, MIDDLE) == Decision(Action.LEAVE, reason=str(error))
    assert POLICY.decide(error, LAST).action is Action.GIVE_UP
    assert POLICY.decide(error, LAST + 4).action is Action.GIVE_UP  # redelivered past the count


def test_retry_delay_follows_the_backoff_cap() -> None:
    policy = SettlePolicy(100, ExponentialBackoff(base_seconds=5, cap_seconds=30))
    assert [policy.decide(RuntimeUnavailable("x"), n).delay_seconds for n in (1, 2, 3, 4, 5)] == [
        5,
        10,
        20,
        30,
        30,
    ]


# -- the settler, against fakes ---------------------------------------------------------------------------
class RecordingNotifier:
    def __init__(self) -> None:
        self.published: list[tuple[str, TaskStatus]] = []

    def publish_once(self, task: object) -> bool:
        self.published.append((task.id, task.status))  # type: ignore[attr-defined]
        return True


class Held:
    def __init__(self) -> None:
        self.released: list[str] = []

    def release(self, m: object) -> bool:
        self.released.append(m.message_id)  # type: ignore[attr-defined]
        return True


def _settler(store: FakeStore) -> tuple[Settler, FakeLanes, Acks, RecordingNotifier, Held, AgentStats]:
    lanes, notifier, held, stats = FakeLanes(), RecordingNotifier(), Held(), AgentStats()
    acks = Acks(lanes)  # type: ignore[arg-type]
    settler = Settler(
        POLICY,
        lanes=lanes,  # type: ignore[arg-type]
        acks=acks,
        heartbeat=held,  # type: ignore[arg-type]
        state=TaskState(store),  # type: ignore[arg-type]
        notifier=notifier,  # type: ignore[arg-type]
        stats=stats,
        runtime="sd15",
        emf=False,
    )
    return settler, lanes, acks, notifier, held, stats


def _job(store: FakeStore, count: int) -> Job:
    msg = message()
    store.create(queued(msg), "fp")
    return Job(received=received(receive_count=count), message=msg, span=INVALID_SPAN)


def test_settler_fails_and_acks_a_permanent_error() -> None:
    store = FakeStore()
    settler, _, acks, notifier, _, stats = _settler(store)
    settler.settle(_job(store, FIRST), ModelMissing("runtime has no model 'x'"))
    task = store.tasks[("acme", "t1")]
    assert task.status is TaskStatus.FAILED and task.error is not None
    assert task.error == task_error("model_missing", "runtime has no model 'x'")
    assert task.error.message.endswith("runtime has no model 'x'")
    assert notifier.published == [("t1", TaskStatus.FAILED)]
    assert len(acks) == 1 and stats.outcomes["failed"] == 1


def test_settler_backs_off_a_retryable_error_and_keeps_the_task() -> None:
    store = FakeStore()
    settler, lanes, acks, notifier, held, stats = _settler(store)
    settler.settle(_job(store, MIDDLE), RuntimeUnavailable("503"))
    assert lanes.visibility == [(["m1"], 10)] and held.released == ["m1"]
    assert store.tasks[("acme", "t1")].status is TaskStatus.QUEUED
    assert not notifier.published and len(acks) == 0 and stats.retried == 1


def test_settler_gives_up_on_the_last_receive_and_leaves_the_message_for_the_dlq() -> None:
    store = FakeStore()
    settler, lanes, acks, notifier, held, stats = _settler(store)
    settler.settle(_job(store, LAST), RuntimeFault("HTTP 500"))
    task = store.tasks[("acme", "t1")]
    assert task.status is TaskStatus.FAILED and task.error is not None
    assert task.error.code == "retries_exhausted"
    assert notifier.published == [("t1", TaskStatus.FAILED)]
    assert not lanes.visibility and len(acks) == 0  # not deleted: the DLQ takes it
    assert held.released == ["m1"] and stats.left == 1


def test_settler_that_cannot_write_leaves_the_message() -> None:
    store = FakeStore()
    settler, _, acks, _, held, stats = _settler(store)
    job = _job(store, FIRST)
    store.unavailable = 5
    settler.settle(job, ModelMissing("gone"))
    assert len(acks) == 0 and held.released == ["m1"] and stats.left == 1


def test_poison_message_naming_a_task_fails_it_otherwise_is_left() -> None:
    store = FakeStore()
    settler, _, acks, notifier, held, _ = _settler(store)
    store.create(queued(message()), "fp")
    settler.poison(received(body='{"id": "t1", "tenant": "acme"}'), FieldError("input", "missing"))
    assert store.tasks[("acme", "t1")].status is TaskStatus.FAILED and len(acks) == 1
    settler.poison(received(2, body="not json"), FieldError("body", "not JSON"))
    assert held.released == ["m2"] and len(notifier.published) == 1
