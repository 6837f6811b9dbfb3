"""A runtime's health states, and the bounded, logged wait until it is ready (any adapter may use it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class RuntimeHealth(StrEnum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    FAILED = "failed"
    DOWN = "down"  # not a runtime state: we could not reach it


def wait_until_ready(
    health: Callable[[], RuntimeHealth],
    timeout: float,
    *,
    stop: threading.Event | None = None,
    first_delay: float = 0.1,
    max_delay: float = 5.0,
    sleep: Callable[[float], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Poll ``health`` with exponential delays until ``ready``; False after ``timeout`` (or on stop).

    Every state change is logged, and a warning at least every 30 s, so a runtime that never becomes
    ready is visible in the pod's logs, not only in its failing readiness probe.
    """
    stop = stop or threading.Event()
    wait = sleep or stop.wait
    started = clock()
    delay = first_delay
    last: RuntimeHealth | None = None
    last_warned = started
    while True:
        state = health()
        waited = clock() - started
        if state is RuntimeHealth.READY:
            if last is not None:
                log.info("runtime ready", extra={"waited_seconds": round(waited, 3)})
            return True
        if state is not last:
            log.info("waiting for runtime", extra={"runtime_state": str(state)})
            last = state
        elif clock() - last_warned >= 30:
            log.warning(
                "runtime still not ready",
                extra={"runtime_state": str(state), "waited_seconds": round(waited, 1)},
            )
            last_warned = clock()
        if waited >= timeout:
            log.error(
                "runtime not ready within bound",
                extra={"runtime_state": str(state), "bound_seconds": timeout},
            )
            return False
        if wait(min(delay, max(0.0, timeout - waited))) or stop.is_set():
            return False
        delay = min(delay * 2, max_delay)
