"""A small process supervisor for local mode, like a kubelet for one pod per runtime.

Each :class:`ChildSpec` is started as its own process group; a child that exits while the supervisor runs
is restarted after an exponential backoff (reset once it has stayed up for ``stable_seconds``). ``stop``
sends SIGTERM to every child, waits ``grace_seconds``, then SIGKILLs what is left. ``on_change`` is called
with the current pids whenever one changes (the stack rewrites its state file from it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("easel.local.supervisor")


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    port: int | None = None  # informational (state file)


@dataclass(frozen=True)
class Backoff:
    """Restart delays: initial * factor**n, capped; like the kubelet's CrashLoopBackOff (10 s .. 5 min)."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    stable_seconds: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** max(0, failures - 1)))


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restarts: int = 0
    restart_at: float | None = None
    restart_delay: float | None = None  # the backoff before restart_at (reported while waiting)
    log_file: IO[bytes] | None = None


@dataclass(frozen=True)
class ChildStatus:
    name: str
    pid: int | None
    restarts: int
    port: int | None
    log: str | None
    # While a crashed child waits to be restarted: the backoff it waits (None when running).
    restart_in: float | None = None


class Supervisor:
    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        log_dir: Path | None = None,
        backoff: Backoff = Backoff(),
        grace_seconds: float = 10.0,
        poll_seconds: float = 0.1,
        on_change: Callable[[list[ChildStatus]], None] | None = None,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = {s.name: _Child(s) for s in specs}
        self._log_dir = log_dir
        self._backoff = backoff
        self._grace = grace_seconds
        self._poll = poll_seconds
        self._on_change = on_change
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="easel-supervisor", daemon=True)

    # -- public ---------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            for child in self._children.values():
                self._spawn(child)
        self._changed()
        self._thread.start()

    def status(self) -> list[ChildStatus]:
        with self._lock:
            return [
                ChildStatus(
                    name=c.spec.name,
                    pid=c.proc.pid if c.proc and c.proc.poll() is None else None,
                    restarts=c.restarts,
                    port=c.spec.port,
                    log=self._log_path(c.spec).as_posix() if self._log_dir else None,
                    restart_in=c.restart_delay,
                )
                for c in self._children.values()
            ]

    def pids(self) -> dict[str, int | None]:
        return {s.name: s.pid for s in self.status()}

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL what is still running after the grace period."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            running = [c for c in self._children.values() if c.proc and c.proc.poll() is None]
            for child in running:
                _signal_group(child.proc, signal.SIGTERM)  # type: ignore[arg-type]
            deadline = time.monotonic() + self._grace
            for child in running:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within %.0fs; killing it", child.spec.name, self._grace)
                    _signal_group(child.proc, signal.SIGKILL)
                    child.proc.wait(5)
            for child in self._children.values():
                if child.log_file:
                    child.log_file.close()
                    child.log_file = None
        self._changed()

    # -- loop -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            changed = False
            with self._lock:
                now = time.monotonic()
                for child in self._children.values():
                    changed |= self._check(child, now)
            if changed:
                self._changed()

    def _check(self, child: _Child, now: float) -> bool:
        if child.restart_at is not None:
            if now >= child.restart_at and not self._stop.is_set():
                child.restart_at = child.restart_delay = None
                child.restarts += 1
                self._spawn(child)
                return True
            return False
        if child.proc is None or child.proc.poll() is None:
            if (
                child.proc is not None
                and child.failures
                and now - child.started_at >= self._backoff.stable_seconds
            ):
                child.failures = 0  # it has been up long enough: the next crash starts the backoff afresh
            return False
        child.failures += 1
        delay = self._backoff.delay(child.failures)
        log.warning(
            "%s (pid %d) exited with %s; restarting in %.1fs",
            child.spec.name,
            child.proc.pid,
            child.proc.returncode,
            delay,
        )
        child.restart_at, child.restart_delay = now + delay, delay
        return True

    def _spawn(self, child: _Child) -> None:
        out: IO[bytes] | int = subprocess.DEVNULL
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            if child.log_file is None:
                child.log_file = self._log_path(child.spec).open("ab")
            out = child.log_file
        env = {**os.environ, **child.spec.env}
        try:
            child.proc = subprocess.Popen(
                child.spec.argv,
                env=env,
                cwd=child.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own process group: Ctrl-C in the terminal reaches only `easel local up`, which then
                # stops the children in order (and a child's own children go with it).
                start_new_session=True,
            )
        except OSError as exc:  # e.g. the program does not exist: back off like any other crash
            child.proc = None
            child.failures += 1
            delay = self._backoff.delay(child.failures)
            child.restart_at, child.restart_delay = time.monotonic() + delay, delay
            log.error("cannot start %s: %s; retrying in %.1fs", child.spec.name, exc, delay)
            return
        child.started_at = time.monotonic()
        log.info("started %s (pid %d): %s", child.spec.name, child.proc.pid, " ".join(child.spec.argv))

    def _log_path(self, spec: ChildSpec) -> Path:
        assert self._log_dir is not None
        return self._log_dir / f"{spec.name.replace('/', '-')}.log"

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self.status())
            except Exception:
                log.exception("on_change callback failed")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
