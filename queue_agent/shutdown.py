"""Graceful shutdown policy: SIGTERM (scale-in, spot interruption) or ``GET /drain``.

1. Stop receiving at once.
2. Messages received but not started go back to their queue (visibility 0): another pod takes them now.
3. The running task may finish within the grace period (then it completes normally: upload, publish,
   delete). Past the grace period the runtime is interrupted and the message returned (visibility 0);
   the task stays ``processing`` and the next agent picks it up (processing -> processing is allowed).
4. Exit 0: for Kubernetes a drained agent is a successful one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


class GracefulShutdown:
    def __init__(self, grace_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_seconds = grace_seconds
        self._clock = clock
        self.requested = threading.Event()
        self.drained = threading.Event()
        self.reason: str | None = None
        self._deadline: float | None = None
        self._lock = threading.Lock()

    def request(self, reason: str) -> None:
        """Idempotent; safe from a signal handler (no I/O besides a log line)."""
        with self._lock:
            if self.requested.is_set():
                return
            self.reason = reason
            self._deadline = self._clock() + self.grace_seconds
            self.requested.set()
        log.info("shutdown requested", extra={"reason": reason, "grace_seconds": self.grace_seconds})

    def past_grace(self, extra: float = 0.0) -> bool:
        deadline = self._deadline
        return deadline is not None and self._clock() >= deadline + extra

    def remaining(self) -> float:
        deadline = self._deadline
        return self.grace_seconds if deadline is None else max(0.0, deadline - self._clock())


def install_signal_handlers(shutdown: GracefulShutdown) -> None:
    def _handler(signum: int, _frame: FrameType | None) -> None:
        shutdown.request(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
