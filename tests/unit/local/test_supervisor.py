"""The supervisor with small fake children: start, restart with backoff, graceful then forced stop."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.local.supervisor import Backoff, ChildSpec, ChildStatus, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
]
FAST = Backoff(initial=0.05, factor=2.0, maximum=0.2, stable_seconds=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_backoff_grows_and_caps() -> None:
    b = Backoff(initial=1, factor=2, maximum=5)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_starts_children_and_stops_them_with_sigterm(tmp_path: Path) -> None:
    changes: list[list[ChildStatus]] = []
    sup = Supervisor(
        [ChildSpec("a/runtime", SLEEPER, port=1), ChildSpec("a/agent", SLEEPER, env={"X": "1"})],
        log_dir=tmp_path,
        on_change=changes.append,
    )
    sup.start()
    pids = sup.pids()
    assert set(pids) == {"a/runtime", "a/agent"}
    assert all(pid and _alive(pid) for pid in pids.values())
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 5  # SIGTERM was enough
    assert not any(_alive(pid) for pid in pids.values() if pid)
    assert changes[-1] and all(c.pid is None for c in changes[-1])
    assert (tmp_path / "a-runtime.log").exists()


def test_a_dead_child_is_restarted_and_reported(tmp_path: Path) -> None:
    changes: list[dict[str, int | None]] = []
    sup = Supervisor(
        [ChildSpec("w", SLEEPER)],
        backoff=FAST,
        poll_seconds=0.02,
        on_change=lambda s: changes.append({c.name: c.pid for c in s}),
    )
    sup.start()
    try:
        first = sup.pids()["w"]
        assert first is not None
        os.kill(first, 9)
        _until(lambda: sup.pids()["w"] not in (None, first))
        second = sup.pids()["w"]
        assert second is not None and _alive(second)
        assert sup.status()[0].restarts == 1
        # on_change runs right after the supervisor's check, which pids() may observe first.
        _until(lambda: {"w": second} in changes)
    finally:
        sup.stop()


def test_crash_loop_backs_off() -> None:
    waits: list[float] = []  # each crash's announced backoff, in order (on_change: one call per crash)
    sup = Supervisor(
        [ChildSpec("crash", [sys.executable, "-c", "raise SystemExit(3)"])],
        backoff=FAST,
        poll_seconds=0.01,
        on_change=lambda s: waits.extend(c.restart_in for c in s if c.restart_in is not None),
    )
    sup.start()
    try:
        _until(lambda: len(waits) >= 4)
    finally:
        sup.stop()
    # Doubling from 0.05 s, capped at 0.2 s (with no backoff a 10 ms poll would restart at once).
    assert waits[:4] == [0.05, 0.1, 0.2, 0.2]
    assert sup.status()[0].restarts >= 3


def test_a_missing_program_is_retried_not_fatal() -> None:
    sup = Supervisor([ChildSpec("ghost", ["/nonexistent/program"])], backoff=FAST, poll_seconds=0.01)
    sup.start()
    try:
        _until(lambda: sup.status()[0].restarts >= 1)
    finally:
        sup.stop()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    sup = Supervisor([ChildSpec("stubborn", STUBBORN)], log_dir=tmp_path, grace_seconds=0.5)
    sup.start()
    pid = sup.pids()["stubborn"]
    assert pid is not None
    _until(lambda: b"ready" in (tmp_path / "stubborn.log").read_bytes())
    started = time.monotonic()
    sup.stop()
    assert 0.4 < time.monotonic() - started < 5
    assert not _alive(pid)


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("x", SLEEPER), ChildSpec("x", SLEEPER)])
