"""A task's trace as a waterfall: read the spans the local stack's processes wrote (``EASEL_TRACES=file:``,
see :mod:`easel.tracing`), select the traces of one task, and order them parent before child.

A task's spans are found by their ``easel.task_id`` attribute (the agent's task span, each attempt's); the
whole trace of each of those spans comes along (the gateway's request span, the runtime's spans). A task that
was received twice (a retry) has two ``easel.task`` spans in the same trace, one per attempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_ID = "easel.task_id"


@dataclass
class Stage:
    """One span in the waterfall: ``offset``/``duration`` in seconds from the start of the task's trace."""

    name: str
    service: str
    depth: int
    offset: float
    duration: float
    error: bool
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    trace_id: str
    span_id: str
    parent_id: str | None
    children: list[Stage] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "depth": self.depth,
            "offset_seconds": round(self.offset, 6),
            "duration_seconds": round(self.duration, 6),
            "error": self.error,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "events": self.events,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
        }


def read_spans(directory: Path) -> list[dict[str, Any]]:
    """Every span record under ``directory`` (``*.jsonl``); a torn last line (a process died) is skipped."""
    spans: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "trace_id" in record and "span_id" in record:
                spans.append(record)
    return spans


def task_trace(spans: Iterable[dict[str, Any]], task_id: str) -> list[Stage]:
    """The waterfall of ``task_id``: its traces' spans, depth-first by start time (empty if none)."""
    spans = list(spans)
    trace_ids = {s["trace_id"] for s in spans if s.get("attributes", {}).get(TASK_ID) == task_id}
    if not trace_ids:
        return []
    chosen = [s for s in spans if s["trace_id"] in trace_ids]
    t0 = min(s["start"] for s in chosen)
    by_id: dict[str, Stage] = {}
    for s in chosen:
        end = s.get("end") or s["start"]
        by_id[s["span_id"]] = Stage(
            name=s["name"],
            service=s.get("service", ""),
            depth=0,
            offset=(s["start"] - t0) / 1e9,
            duration=(end - s["start"]) / 1e9,
            error=s.get("status") == "ERROR",
            status_message=s.get("status_message"),
            attributes=s.get("attributes", {}),
            events=[{**e, "offset_seconds": round((e["time"] - t0) / 1e9, 6)} for e in s.get("events", [])],
            trace_id=s["trace_id"],
            span_id=s["span_id"],
            parent_id=s.get("parent_id"),
        )
    roots: list[Stage] = []
    for stage in by_id.values():
        parent = by_id.get(stage.parent_id) if stage.parent_id else None
        # A parent outside the files (e.g. the caller's own span, or the API's X-Ray segment) makes a root.
        (parent.children if parent is not None else roots).append(stage)
    ordered: list[Stage] = []

    def walk(stage: Stage, depth: int) -> None:
        stage.depth = depth
        ordered.append(stage)
        for child in sorted(stage.children, key=lambda c: (c.offset, c.name)):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda r: (r.offset, r.name)):
        walk(root, 0)
    return ordered


# Attributes worth a column in the terminal (the rest are in --json).
_SHOWN = (
    "easel.outcome",
    "easel.receive_count",
    "easel.event",
    "easel.attempt",
    "easel.queue_seconds",
    "easel.model",
    "easel.steps",
    "easel.width",
    "easel.height",
    "easel.images",
    "easel.switched",
    "easel.cache_hit",
    "http.request.method",
    "http.route",
    "server.address",
    "url.path",
    "http.response.status_code",
    "easel.reason",
)


def shown_attributes(stage: Stage) -> str:
    parts = [f"{k.removeprefix('easel.')}={stage.attributes[k]}" for k in _SHOWN if k in stage.attributes]
    parts += [e["name"] for e in stage.events]
    return " ".join(parts)


def render(stages: list[Stage], task_id: str, *, width: int = 30) -> Any:
    """A rich table: stage (indented by depth), service, start offset, duration, a bar, attributes; errors
    in red."""
    from rich.table import Table
    from rich.text import Text

    total = max((s.offset + s.duration for s in stages), default=0.0) or 1.0
    table = Table(title=f"task {task_id}", title_justify="left")
    for column, justify in (
        ("stage", "left"),
        ("service", "left"),
        ("start", "right"),
        ("duration", "right"),
        ("", "left"),
        ("attributes", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for s in stages:
        begin = min(int(s.offset / total * width), width - 1)
        length = max(1, min(round(s.duration / total * width), width - begin))
        bar = " " * begin + "█" * length
        style = "red" if s.error else ""
        attrs = shown_attributes(s)
        if s.error and s.status_message:
            attrs = f"{attrs} error={s.status_message}".strip()
        table.add_row(
            Text("  " * s.depth + s.name, style=style),
            s.service,
            f"{s.offset * 1000:.1f} ms",
            f"{s.duration * 1000:.1f} ms",
            Text(bar, style="red" if s.error else "cyan"),
            Text(attrs, style=style),
        )
    return table
