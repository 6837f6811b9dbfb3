"""What ``--wait`` shows while tasks run: a progress line per task, or a JSON event stream.

A task moves through these phases, read from its status and the ``progress`` the agent records on it
(``{"phase", "step", "steps", "queue_seconds"}``, see docs/api.md):

    queued -> waiting for a worker -> loading the model -> step n/N -> uploading -> succeeded|failed|canceled

On a terminal the line is a rich progress bar (on stderr); with ``--json`` each change is one JSON object
per line on stderr (``{"event": "progress", "id", "status", "phase", "step", "steps", ...}``) so that
stdout stays a single JSON document (the final task).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class Phase:
    """One rendering of a task's state: the label, and the bar's completed/total (total None = unknown)."""

    status: str
    phase: str
    label: str
    completed: float
    total: float | None
    step: int | None = None
    steps: int | None = None
    queue_seconds: float | None = None

    def event(self, task_id: str) -> dict[str, Any]:
        return {
            "event": "progress",
            "id": task_id,
            "status": self.status,
            "phase": self.phase,
            "step": self.step,
            "steps": self.steps,
            "queue_seconds": self.queue_seconds,
        }


def _age_seconds(stamp: Any, now: datetime) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - created).total_seconds())


def phase_of(task: dict[str, Any], now: datetime | None = None) -> Phase:
    """The phase to show for a task object returned by the API."""
    status = str(task.get("status", "?"))
    progress = task.get("progress") or {}
    step = progress.get("step") if isinstance(progress.get("step"), int) else None
    steps = progress.get("steps") if isinstance(progress.get("steps"), int) else None
    queued_for = progress.get("queue_seconds")
    if status in TERMINAL:
        done_queue = float(queued_for) if isinstance(queued_for, int | float) else None
        return Phase(status, status, status, 1, 1, step, steps, done_queue)
    if status == "queued":
        waited = _age_seconds(task.get("created_at"), now or datetime.now(UTC))
        label = "queued, waiting for a worker" + (f" ({waited:.0f}s)" if waited is not None else "")
        return Phase(status, "waiting", label, 0, None, None, None, waited)
    phase = str(progress.get("phase") or "started")
    queue = float(queued_for) if isinstance(queued_for, int | float) else None
    note = f", waited {queue:.1f}s for a worker" if queue is not None else ""
    if phase == "generating" and steps:
        done = min(step or 0, steps)
        return Phase(status, phase, f"step {done}/{steps}{note}", done, steps, done, steps, queue)
    if phase == "uploading":
        return Phase(status, phase, "uploading", 1, 1, step, steps, queue)
    if phase == "loading":
        return Phase(status, phase, f"loading the model{note}", 0, None, None, None, queue)
    return Phase(status, phase, f"started{note}", 0, None, step, steps, queue)


Watcher = Callable[[Callable[[dict[str, Any]], None]], dict[str, dict[str, Any]]]


def render(task_ids: list[str], watch: Watcher, *, as_json: bool, quiet: bool = False) -> dict[str, Any]:
    """Run ``watch(on_update)`` (the client's polling loop) while showing each task's phase.

    ``as_json``: one JSON line per change on stderr. ``quiet``: nothing at all.
    """
    if quiet:
        return watch(lambda _task: None)
    if as_json:
        return watch(_json_events())
    return _rich_progress(task_ids, watch)


def _json_events() -> Callable[[dict[str, Any]], None]:
    last: dict[str, tuple[Any, ...]] = {}

    def on_update(task: dict[str, Any]) -> None:
        phase = phase_of(task)
        key = (phase.status, phase.phase, phase.step, phase.steps)
        if last.get(task["id"]) != key:
            last[task["id"]] = key
            sys.stderr.write(json.dumps(phase.event(task["id"])) + "\n")
            sys.stderr.flush()

    return on_update


def _rich_progress(task_ids: list[str], watch: Watcher) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    colours = {"succeeded": "green", "failed": "red", "canceled": "yellow"}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[task_id]}"),
        BarColumn(bar_width=24),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        rows = {tid: progress.add_task("queued", total=None, task_id=tid, start=True) for tid in task_ids}

        def on_update(task: dict[str, Any]) -> None:
            phase = phase_of(task)
            colour = colours.get(phase.status)
            label = f"[{colour}]{phase.label}[/{colour}]" if colour else phase.label
            progress.update(rows[task["id"]], description=label, completed=phase.completed, total=phase.total)

        return watch(on_update)
