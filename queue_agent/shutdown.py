"""Graceful shutdown policy: SIGTERM (scale-in, spot interruption) or ``GET /drain``.

1. Stop receiving at once.
2. Messages received but not started go back to their queue (visibility 0): another pod takes them now.
3. The running task may finish only if it will end before the deadline (the grace period: a spot notice
   or the pod's termination grace, per capacity type in config): :func:`finishes_in_time` judges from the
   runtime's progress (fraction done after the time elapsed) or the task timeout, asked again on every
   watch (until the first step the runtime cannot say: the task runs on). Then it completes normally
   (upload, publish, delete). Otherwise, at once, or at the deadline if the estimate was wrong or missing,
   the runtime is interrupted and the message returned (visibility 0); the task stays ``processing`` and
   the next agent picks it up (processing -> processing is allowed), no attempt counted as a failure.
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


def finishes_in_time(
    *,
    elapsed: float,
    fraction: float | None,
    timeout_left: float,
    deadline_left: float,
    margin: float,
) -> bool | None:
    """Will the running task end, plus ``margin`` for its upload and writes, within ``deadline_left``?

    ``elapsed`` seconds since the generation began, ``fraction`` the runtime's progress (0..1, None when it
    cannot say), ``timeout_left`` until the task timeout interrupts it anyway. The rest of the generation is
    estimated at the pace so far: ``elapsed * (1 - fraction) / fraction``. None: cannot tell yet (no step
    done, or a runtime without progress); the caller asks again later and the deadline itself stays the
    backstop. Pure, so it is tested on numbers.
    """
    budget = deadline_left - margin
    if budget <= 0:
        return False
    if max(timeout_left, 0.0) <= budget:
        return True  # whatever its pace, the task timeout ends it in time
    if fraction is None or fraction <= 0 or elapsed <= 0:
        return None
    if fraction >= 1:
        return True
    rest = elapsed * (1 - fraction) / fraction
    return rest <= budget


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

    def lets_finish(
        self, *, elapsed: float, fraction: float | None, timeout_left: float, margin: float
    ) -> bool | None:
        """:func:`finishes_in_time` against the time left before this drain's deadline."""
        return finishes_in_time(
            elapsed=elapsed,
            fraction=fraction,
            timeout_left=timeout_left,
            deadline_left=self.remaining(),
            margin=margin,
        )

    def remaining(self) -> float:
        deadline = self._deadline
        return self.grace_seconds if deadline is None else max(0.0, deadline - self._clock())


def install_signal_handlers(shutdown: GracefulShutdown) -> None:
    def _handler(signum: int, _frame: FrameType | None) -> None:
        shutdown.request(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
