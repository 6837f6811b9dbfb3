"""SNS filter policies that carry a task from the tasks topic to its runtime's lane queue.

Used by the CDK messaging construct and by the local stack, so both route identically.
"""

from __future__ import annotations

from typing import Any

from easel.contract.tasks import Lane, Priority


def lane_filter_policy(runtime: str, lane: Lane | str) -> dict[str, list[Any]]:
    """High lane takes ``priority=high``; the normal lane takes everything else (normal and low)."""
    if Lane(lane) is Lane.HIGH:
        return {"runtime": [runtime], "priority": [str(Priority.HIGH)]}
    return {"runtime": [runtime], "priority": [{"anything-but": [str(Priority.HIGH)]}]}


def unroutable_filter_policy(runtimes: list[str]) -> dict[str, list[Any]]:
    """Everything no lane takes: a runtime nobody serves, or a message missing ``runtime`` or ``priority``.

    The lanes' policies need both attributes, and SNS drops a message no subscription matches; this catch-all
    (alarmed, should stay empty) makes the lanes plus ``unroutable`` cover every message published.
    """
    return {
        "$or": [
            {"runtime": [{"anything-but": sorted(runtimes)}]},
            {"runtime": [{"exists": False}]},
            {"priority": [{"exists": False}]},
        ]
    }
