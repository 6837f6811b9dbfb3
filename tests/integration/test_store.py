"""TaskStore against a real moto server: conditional writes, idempotency, listing, dedup of notifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from easel.config import EaselConfig
from easel.contract import Task, TaskStatus, parse_task_request
from easel.errors import FieldError, TaskConflict, TaskNotFound
from easel.lifecycle import queued_task
from easel.naming import Names
from easel.store import TaskStore
from infra.local.provision import Resources

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def make_task(task_id: str, tenant: str = "acme", minutes: int = 0) -> Task:
    req = parse_task_request({"task_type": "text-to-image", "model": "realvis", "input": {"prompt": "p"}})
    req = req.model_copy(update={"id": task_id})
    return queued_task(req, tenant=tenant, runtime="community", created_at=T0 + timedelta(minutes=minutes))


@pytest.fixture
def store(provisioned: tuple[EaselConfig, Names, Resources], aws_session: boto3.Session) -> TaskStore:
    return TaskStore(aws_session.client("dynamodb"), provisioned[2].table)


def test_create_is_idempotent_by_fingerprint(store: TaskStore) -> None:
    task = make_task("t1")
    assert store.create(task, "fp")[1] is True
    again, created = store.create(task, "fp")
    assert created is False and again.id == "t1"
    with pytest.raises(TaskConflict):
        store.create(task, "other")


def test_ids_are_scoped_by_tenant(store: TaskStore) -> None:
    store.create(make_task("same", "acme"), "a")
    store.create(make_task("same", "globex"), "b")
    assert store.get("acme", "same").tenant == "acme"
    assert store.get("globex", "same").tenant == "globex"
    with pytest.raises(TaskNotFound):
        store.get("initech", "same")


def test_transitions_are_conditional_and_terminal_is_final(store: TaskStore) -> None:
    store.create(make_task("t1"), "fp")
    t = store.transition(
        "acme",
        "t1",
        TaskStatus.PROCESSING,
        updates={"started_at": "2026-11-01T00:01:00Z"},
        count_attempt=True,
    )
    assert t.status is TaskStatus.PROCESSING and t.attempts == 1
    t = store.transition("acme", "t1", TaskStatus.PROCESSING, count_attempt=True)
    assert t.attempts == 2
    done = store.transition(
        "acme",
        "t1",
        TaskStatus.SUCCEEDED,
        updates={"output": {"images": ["s3://b/k.png"]}, "metrics": {"gpu_seconds": 1.25}},
    )
    assert done.output is not None and done.output.images == ["s3://b/k.png"]
    assert done.metrics.gpu_seconds == 1.25
    for target in (TaskStatus.CANCELED, TaskStatus.FAILED, TaskStatus.PROCESSING):
        with pytest.raises(TaskConflict) as info:
            store.transition("acme", "t1", target)
        assert info.value.current.status is TaskStatus.SUCCEEDED  # type: ignore[union-attr]
    with pytest.raises(TaskNotFound):
        store.transition("acme", "missing", TaskStatus.CANCELED)


def test_notification_claimed_once_per_status(store: TaskStore) -> None:
    store.create(make_task("t1"), "fp")
    assert store.claim_notification("acme", "t1", TaskStatus.PROCESSING) is True
    assert store.claim_notification("acme", "t1", TaskStatus.PROCESSING) is False
    assert store.claim_notification("acme", "t1", TaskStatus.SUCCEEDED) is True
    assert store.claim_notification("acme", "t1", TaskStatus.SUCCEEDED) is False


def test_list_newest_first_paginated_and_filtered(store: TaskStore) -> None:
    for i in range(5):
        store.create(make_task(f"t{i}", minutes=i), "fp")
    store.create(make_task("other", "globex", minutes=10), "fp")
    store.transition("acme", "t1", TaskStatus.CANCELED)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = store.list("acme", limit=2, cursor=cursor)
        assert len(page) <= 2
        seen += [t.id for t in page]
        if cursor is None:
            break
    assert seen == ["t4", "t3", "t2", "t1", "t0"]
    canceled, _ = store.list("acme", status=TaskStatus.CANCELED)
    assert [t.id for t in canceled] == ["t1"]
    _, cursor = store.list("acme", limit=1)
    assert cursor is not None
    with pytest.raises(FieldError) as info:
        store.list("globex", limit=1, cursor=cursor)
    assert info.value.field == "next"
    with pytest.raises(FieldError):
        store.list("acme", cursor="!!not-a-cursor!!")


def test_progress_is_recorded_only_while_processing(store: TaskStore) -> None:
    store.create(make_task("p1"), "fp")
    progress = {"phase": "generating", "step": 3, "steps": 20, "queue_seconds": 1.25}
    assert store.record_progress("acme", "p1", progress) is False  # still queued
    assert store.get("acme", "p1").progress is None
    store.transition("acme", "p1", TaskStatus.PROCESSING)
    assert store.record_progress("acme", "p1", progress) is True
    shown = store.get("acme", "p1").progress
    assert shown is not None and (shown.phase, shown.step, shown.steps, shown.queue_seconds) == (
        "generating", 3, 20, 1.25,
    )  # fmt: skip
    store.transition("acme", "p1", TaskStatus.SUCCEEDED)
    assert store.record_progress("acme", "p1", {**progress, "step": 4}) is False  # terminal: untouched
    final = store.get("acme", "p1").progress
    assert final is not None and final.step == 3
    assert store.record_progress("acme", "nope", progress) is False
