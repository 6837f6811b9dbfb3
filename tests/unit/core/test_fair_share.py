"""Fair share within a lane, simulated: SQS fair queues (keyed by MessageGroupId = tenant) vs plain FIFO order.

The local emulator does not model fairness, so the effect is shown on a model of a lane: ``pods`` agents each
take the next message when free and hold it for one service time. A plain standard queue hands out roughly
the oldest message first; a fair queue prefers messages of the group (tenant) with the fewest messages in
flight, which is how SQS fair queues keep a quiet tenant's dwell time low next to a noisy one's backlog.
The plumbing (every lane message carries its tenant as MessageGroupId) is tested on moto in
tests/integration/api/test_tasks_api.py.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Message:
    tenant: str
    sent_at: float
    seq: int


def simulate(
    messages: list[Message], *, pods: int, service: float, fair: bool, seed: int = 7
) -> dict[int, float]:
    """Wait (receive time - send time) of each message, by ``seq``."""
    rng = random.Random(seed)
    pending = sorted(messages, key=lambda m: (m.sent_at, m.seq))
    free_at = [0.0] * pods  # heap of the times pods become free
    in_flight: list[tuple[float, str]] = []  # heap of (done_at, tenant)
    waits: dict[int, float] = {}
    while pending:
        now = heapq.heappop(free_at)
        now = max(now, pending[0].sent_at)  # an idle pod waits for the next message sent
        while in_flight and in_flight[0][0] <= now:
            heapq.heappop(in_flight)
        visible = [m for m in pending if m.sent_at <= now]
        if fair:
            busy = Counter(t for _, t in in_flight)
            chosen = min(visible, key=lambda m: (busy[m.tenant], m.sent_at, m.seq))
        else:
            chosen = visible[0]
        pending.remove(chosen)
        waits[chosen.seq] = now - chosen.sent_at
        done = now + service * rng.uniform(0.9, 1.1)
        heapq.heappush(in_flight, (done, chosen.tenant))
        heapq.heappush(free_at, done)
    return waits


# From two pods up: the fair queue tells tenants apart by their messages in flight, and with a single pod
# that has just deleted its message there are none (the agent's prefetch would hold one; not modelled).
@pytest.mark.parametrize("pods", [2, 4, 10])
def test_a_quiet_tenant_waits_about_one_service_time_next_to_a_backlog_of_500(pods: int) -> None:
    service = 10.0
    backlog = [Message("noisy", 0.0, i) for i in range(500)]
    quiet_at = 60.0  # the quiet tenant submits one task a minute into the noisy tenant's backlog
    quiet = Message("quiet", quiet_at, 10_000)
    fifo = simulate([*backlog, quiet], pods=pods, service=service, fair=False)
    fair = simulate([*backlog, quiet], pods=pods, service=service, fair=True)
    print(
        f"pods={pods} service={service:.0f}s backlog=500: quiet tenant waits {fifo[quiet.seq]:.0f}s in "
        f"FIFO order, {fair[quiet.seq]:.1f}s in a fair queue"
    )
    # Fair: the next pod to free up takes it, so at most about one service time.
    assert fair[quiet.seq] <= service * 1.1
    # FIFO: it waits behind what is left of the backlog.
    assert fifo[quiet.seq] >= (500 / pods) * service * 0.9 - quiet_at
    # The noisy tenant still gets every pod it can use: its backlog takes no longer, give or take one task.
    noisy_fifo = max(w for s, w in fifo.items() if s != quiet.seq)
    noisy_fair = max(w for s, w in fair.items() if s != quiet.seq)
    assert abs(noisy_fair - noisy_fifo) <= service * 1.1


def test_two_backlogged_tenants_share_pods_evenly() -> None:
    a = [Message("a", 0.0, i) for i in range(200)]
    b = [Message("b", 0.0, 1000 + i) for i in range(200)]
    fair = simulate([*a, *b], pods=4, service=10.0, fair=True)
    first_100 = sorted(fair, key=lambda s: fair[s])[:100]
    shares = Counter("a" if s < 1000 else "b" for s in first_100)
    assert abs(shares["a"] - shares["b"]) <= 10
