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
    """Catches messages for a runtime nobody serves (should stay empty; it has an alarm)."""
    return {"runtime": [{"anything-but": sorted(runtimes)}]}
