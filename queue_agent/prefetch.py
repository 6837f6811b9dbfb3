"""The prefetch stage: one poller thread per lane, bounded slots, and the run order of prepared jobs.

The normal poller receives only while the high lane is empty (its last receive returned nothing and no
high job waits), so a high task never waits behind queued normal ones. Two threads, because a long poll
blocks: the high lane can be long-polled all the time without ever delaying the normal prefetch the runtime
is about to need. Prefetch is bounded (``EASEL_AGENT_PREFETCH``, or ``EASEL_AGENT_BATCH_MAX_IMAGES`` when
batching and larger, + 1 slot only the high lane may use)
because a held message is invisible to other pods. (Two receives that return at the same instant may
overshoot the bound by their batch; it is a bound on what we ask for, not a hard cap.)

Each received message is prepared on its poller's thread (:mod:`queue_agent.prepare`) and buffered, high
lane first, for :meth:`Prefetcher.next_job`, or :meth:`Prefetcher.next_batch` which adds the buffered jobs
that may share the head's generation (:mod:`queue_agent.batching`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from easel.contract import Lane
from queue_agent.batching import take_batch
from queue_agent.heartbeat import Heartbeat
from queue_agent.job import Job
from queue_agent.lanes import Lanes, Received
from queue_agent.settings import AgentSettings
from queue_agent.shutdown import GracefulShutdown
from queue_agent.telemetry import AgentStats

log = logging.getLogger(__name__)


class Prefetcher:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        lanes: Lanes,
        heartbeat: Heartbeat,
        stats: AgentStats,
        shutdown: GracefulShutdown,
        runtime_ready: threading.Event,
        prepare: Callable[[Received], Job | None],
        give_back: Callable[[Received, Job | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._lanes = lanes
        self._heartbeat = heartbeat
        self._stats = stats
        self._shutdown = shutdown
        self._runtime_ready = runtime_ready
        self._prepare = prepare
        self._give_back = give_back
        self.polling = threading.Event()
        self._cond = threading.Condition()
        self._buffer: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()
        self._pending = 0  # received, not yet running (being prepared or buffered)
        self._high_empty = False  # the high lane's last receive returned nothing
        self._high_waiting = 0  # high messages received and not yet running
        self._pollers = [
            threading.Thread(target=self._poll_loop, args=(lane,), name=f"poll-{lane}", daemon=True)
            for lane in (Lane.HIGH, Lane.NORMAL)
        ]

    # -- threads -----------------------------------------------------------------------------------------
    def start(self) -> None:
        for poller in self._pollers:
            poller.start()

    def alive(self) -> bool:
        """The pollers start once the runtime is ready: one never started counts as alive."""
        return all(p.ident is None or p.is_alive() for p in self._pollers)

    def stop(self) -> None:
        """Wait for the pollers (after shutdown was requested), then give back what is buffered."""
        for poller in self._pollers:
            if poller.ident is not None:
                # A long poll in flight returns within its wait; what it brings is returned below.
                poller.join(timeout=max(self._settings.agent_high_wait_seconds, 20) + 10)
        self.polling.clear()
        self.return_buffered("shutdown")

    # -- the run thread's side -----------------------------------------------------------------------------
    def next_job(self, timeout: float) -> Job | None:
        """The next prepared job, high lane first; None if none came within ``timeout``."""
        with self._cond:
            if not self._buffer:
                self._cond.wait(timeout)
            if not self._buffer:
                return None
            _, _, job = heapq.heappop(self._buffer)
            self._slot_freed(job.received.lane)
            return job

    def next_batch(self, timeout: float, *, max_images: int, max_wait: float) -> list[Job]:
        """The next prepared job (high lane first) and the buffered jobs that may share its generation
        (:func:`queue_agent.batching.take_batch`), up to ``max_images``. While the batch has room and
        received messages are still being prepared, waits for them up to ``max_wait``; when nothing is
        being prepared it returns at once, so a lone task never waits. Empty if no job came in ``timeout``."""
        with self._cond:
            if not self._buffer:
                self._cond.wait(timeout)
            if not self._buffer:
                return []
            _, _, head = heapq.heappop(self._buffer)
            self._slot_freed(head.received.lane)
            batch = [head]
            if head.batch_key is None or head.images >= max_images:
                return batch
            deadline = self._clock() + max_wait
            while True:
                ordered = [j for _, _, j in sorted(self._buffer)]
                room = max_images - sum(j.images for j in batch)
                taken = take_batch(
                    head.batch_key,
                    max_images - room,
                    ordered,
                    key=lambda j: j.batch_key,
                    images=lambda j: j.images,
                    max_images=max_images,
                )
                if taken:
                    chosen = {id(j) for j in taken}
                    self._buffer = [e for e in self._buffer if id(e[2]) not in chosen]
                    heapq.heapify(self._buffer)
                    for j in taken:
                        self._slot_freed(j.received.lane)
                    batch.extend(taken)
                room = max_images - sum(j.images for j in batch)
                preparing = self._pending - len(self._buffer)
                left = deadline - self._clock()
                if room <= 0 or preparing <= 0 or left <= 0:
                    return batch
                self._cond.wait(left)

    def return_buffered(self, why: str) -> None:
        """Every prepared, unstarted job back to its queue now (shutdown, runtime not ready)."""
        with self._cond:
            jobs = [j for _, _, j in self._buffer]
            self._buffer.clear()
            for j in jobs:
                self._slot_freed(j.received.lane)
        for job in jobs:
            log.info("returning prefetched message", extra={**job.ids, "why": why})
            self._give_back(job.received, job)

    # -- pollers -------------------------------------------------------------------------------------------
    def _slots(self, lane: Lane) -> int:
        """How many messages ``lane`` may ask for now. Call with the lock held."""
        prefetch = self._settings.prefetch_slots
        if lane is Lane.HIGH:
            return prefetch + 1 - self._pending
        if self._high_empty and not self._high_waiting:
            return prefetch - self._pending
        return 0

    def _poll_loop(self, lane: Lane) -> None:
        errors = 0
        quick = True  # high lane: a short poll first (at start, and right after it had messages)
        while not self._shutdown.requested.is_set():
            if not self._runtime_ready.wait(0.2):
                continue
            with self._cond:
                slots = self._slots(lane)
                if slots <= 0:
                    self._cond.wait(0.2)
                    continue
            if lane is Lane.HIGH:
                wait = 0 if quick else self._settings.agent_high_wait_seconds
            else:
                wait = self._settings.agent_normal_wait_seconds
            self.polling.set()
            try:
                # Short visibility, renewed by the heartbeat while held: if this process dies, what it
                # holds (prefetched or running) is visible again within it, not the queue's timeout.
                got = self._lanes.receive(
                    lane, slots, wait, visibility=self._settings.hold_visibility_seconds
                )
                errors = 0
            except Exception:
                errors += 1
                log.exception("receive failed", extra={"lane": str(lane)})
                self._shutdown.requested.wait(min(20.0, 0.5 * 2**errors))
                continue
            with self._cond:
                self._pending += len(got)
                if lane is Lane.HIGH:
                    quick = bool(got)
                    self._high_empty = not got
                    self._high_waiting += len(got)
                self._cond.notify_all()
            if got:
                self._take(got)
        # Shutdown: what waits unstarted goes back now, not after the running task (another pod can start it).
        self.return_buffered("shutdown")

    def _take(self, got: list[Received]) -> None:
        self._stats.count("received", len(got))
        for m in got:
            self._heartbeat.hold(m)
        for m in got:
            job = None
            if self._shutdown.requested.is_set():
                self._give_back(m, None)
            else:
                job = self._prepare(m)
            with self._cond:
                if job is None:
                    self._slot_freed(m.lane)
                else:
                    heapq.heappush(self._buffer, (job.rank, next(self._seq), job))
                    self._cond.notify_all()

    def _slot_freed(self, lane: Lane) -> None:
        """A received message stopped waiting (it runs now, or was settled). Call with the lock held."""
        self._pending -= 1
        if lane is Lane.HIGH:
            self._high_waiting -= 1
        self._cond.notify_all()
