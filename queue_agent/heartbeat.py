"""The heartbeat thread: keeps held messages invisible, and watches the running task.

Every message the agent holds (prefetched or running, until its delete or release) was received with a
short visibility (``EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS``, 60 s by default) and gets it renewed once per
period (a quarter of it by default), in batches, so a dead agent's messages, running or prefetched, are
visible again within that short window instead of the queue's visibility timeout. The running task is also
watched, on a faster cadence: its status in the table (a cancel set by the API), its timeout, and the
drain deadline. What to do then is the agent's business (callbacks), the heartbeat only notices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from queue_agent.lanes import Lanes, Received

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        lanes: Lanes,
        *,
        extend_to: int,
        period: float,
        watch_period: float,
        on_watch: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lanes = lanes
        self._extend_to = extend_to
        self._period = period
        self._watch_period = watch_period
        self._on_watch = on_watch
        self._clock = clock
        # Held under the lock while visibility calls are in flight, so a release (followed by the caller's
        # own visibility change, e.g. a backoff or 0 on shutdown) is never overwritten by a late extension.
        self._lock = threading.Lock()
        self._held: dict[int, tuple[Received, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.extensions = 0
        self._next_watch = clock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def hold(self, message: Received) -> None:
        with self._lock:
            self._held[id(message)] = (message, self._clock())

    def release(self, message: Received) -> bool:
        """Stop extending ``message``; True if it was held."""
        with self._lock:
            return self._held.pop(id(message), None) is not None

    def held(self) -> list[Received]:
        with self._lock:
            return [m for m, _ in self._held.values()]

    def _run(self) -> None:
        tick = min(self._period, self._watch_period) / 2
        while not self._stop.wait(tick):
            self.beat()

    def beat(self) -> None:
        """One tick of the thread: extend what is due, and watch if the watch period has passed. Never
        raises (a failed extension is retried next tick). Public so a test can drive it with a fake clock."""
        try:
            self._extend_due()
        except Exception:
            log.exception("heartbeat: visibility extension failed")
        if self._clock() >= self._next_watch:
            self._next_watch = self._clock() + self._watch_period
            try:
                self._on_watch()
            except Exception:
                log.exception("heartbeat: watch failed")

    def _extend_due(self) -> None:
        with self._lock:
            now = self._clock()
            due = [m for m, at in self._held.values() if now - at >= self._period]
            if not due:
                return
            failed = set(map(id, self._lanes.change_visibility(due, self._extend_to)))
            for m in due:
                if id(m) in failed:
                    # Per-message refusal (receipt no longer valid: deleted, or redelivered elsewhere after a
                    # stall): retrying cannot help. The work itself stays idempotent if it continues.
                    self._held.pop(id(m), None)
                elif id(m) in self._held:
                    self._held[id(m)] = (m, now)
            self.extensions += len(due) - len(failed)
