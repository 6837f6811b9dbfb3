"""What --wait shows for each state of a task, and what an interrupted or timed-out wait says."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from easel.cli.client_cmds import wait_with_progress
from easel.cli.errors import CliError
from easel.cli.progress import phase_of, render
from easel.client import WaitTimeout

NOW = datetime(2026, 11, 29, 12, 0, 10, tzinfo=UTC)


def task(status: str, progress: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "t1", "status": status, "created_at": "2026-11-29T12:00:00Z", "progress": progress}


@pytest.mark.parametrize(
    ("shown", "label", "completed", "total"),
    [
        (task("queued"), "queued, waiting for a worker (10s)", 0, None),
        (task("processing"), "started", 0, None),
        (task("processing", {"phase": "loading", "queue_seconds": 2.5}), "loading the model, waited 2.5s for a worker",
         0, None),
        (task("processing", {"phase": "generating", "step": 3, "steps": 20, "queue_seconds": 2.5}),
         "step 3/20, waited 2.5s for a worker", 3, 20),
        (task("processing", {"phase": "uploading", "step": 20, "steps": 20}), "uploading", 1, 1),
        (task("succeeded", {"phase": "uploading", "step": 20, "steps": 20}), "succeeded", 1, 1),
        (task("failed"), "failed", 1, 1),
    ],
)  # fmt: skip
def test_phase_labels(shown: dict[str, Any], label: str, completed: float, total: float | None) -> None:
    phase = phase_of(shown, NOW)
    assert (phase.label, phase.completed, phase.total) == (label, completed, total)


def test_json_events_one_per_change(capsys: pytest.CaptureFixture[str]) -> None:
    updates = [
        task("queued"),
        task("queued"),
        task("processing", {"phase": "generating", "step": 1, "steps": 4}),
        task("processing", {"phase": "generating", "step": 1, "steps": 4}),
        task("processing", {"phase": "generating", "step": 3, "steps": 4}),
        task("succeeded", {"phase": "uploading", "step": 4, "steps": 4}),
    ]

    def watch(on_update: Any) -> dict[str, Any]:
        for t in updates:
            on_update(t)
        return {"t1": updates[-1]}

    assert render(["t1"], watch, as_json=True)["t1"]["status"] == "succeeded"
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["status"], e["phase"], e["step"]) for e in events] == [
        ("queued", "waiting", None),
        ("processing", "generating", 1),
        ("processing", "generating", 3),
        ("succeeded", "succeeded", 4),
    ]


class _Client:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def wait(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "code", "exit_code"),
    [
        (KeyboardInterrupt(), "interrupted", 130),
        (WaitTimeout("late", {"t1": task("processing")}), "timeout", 1),
    ],
)
def test_an_ended_wait_names_the_commands_that_follow_or_cancel(
    exc: BaseException, code: str, exit_code: int
) -> None:
    with pytest.raises(CliError) as err:
        wait_with_progress(_Client(exc), ["t1"], timeout=5, quiet=True, out=None)  # type: ignore[arg-type]
    assert (err.value.code, err.value.exit_code) == (code, exit_code)
    assert err.value.hint is not None
    assert "easel status t1 --wait" in err.value.hint and "easel cancel t1" in err.value.hint
