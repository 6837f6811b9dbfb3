"""The one clock of Easel: aware UTC datetimes, and the one timestamp format stored and published.

Every layer (API, agent, store, benchmarks, tests) reads time here, so a test can see one format and one
source; the agent's monotonic clocks (timeouts, heartbeats) are a different thing and stay injected.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """``2026-01-01T00:00:00.000000Z``: microseconds, always UTC, a ``Z`` suffix."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
