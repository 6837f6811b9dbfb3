"""What a simulation means to an operator: latency percentiles, node-hours split, cost per 1,000 images.

Cost is what EC2 bills for the pool's GPU nodes over the plan's window (from 0 to the end of the profile's
duration, or to the last task's result if later): every node's lifetime in it times its hourly price
(per-second billing). That time splits into *starting* (launch to Ready, plus image pull and model load of
each pod on it), *busy* (the runtime generating) and *idle* (the rest: waiting for work, cooldowns, empty
nodes before consolidation, the tail of an interrupted task). Per tenant: *busy* cost (GPU-seconds of the
tenant's own tasks at its node's price, as ``easel costs`` attributes) and *loaded* cost (the whole bill
shared in proportion to busy time). Control-plane, API and storage costs are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from easel.plan.sim import ON_DEMAND, SPOT, SimResult


@dataclass
class Summary:
    name: str
    tasks: int
    completed: int
    images: int
    throughput_per_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    mean_s: float
    oldest_message_age_s: float
    horizon_s: float
    node_hours: dict[str, float]  # busy / idle / starting / total
    node_hours_by_capacity: dict[str, float]
    cost_usd: dict[str, float]  # spot / on-demand / total
    cost_per_1000_images: dict[str, float]  # spot / on-demand / total / busy_only
    tenants: dict[str, dict[str, float]]
    max_replicas_seen: int
    max_nodes_seen: int
    interruptions: int
    returned_messages: int
    settings: dict[str, Any] = field(default_factory=dict)
    pricing: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(result: SimResult) -> Summary:
    plan = result.plan
    horizon = result.horizon
    done = [t for t in result.tasks if t.done is not None]
    lat = [t.done - t.submit for t in done if t.done is not None]
    images = sum(t.images for t in done)
    waits = [(t.received if t.received is not None else horizon) - t.submit for t in result.tasks]

    hours = {"busy": 0.0, "idle": 0.0, "starting": 0.0}
    by_cap = {SPOT: 0.0, ON_DEMAND: 0.0}
    cost = {SPOT: 0.0, ON_DEMAND: 0.0}
    for n in result.nodes:
        end = min(n.ended if n.ended is not None else horizon, horizon)
        life = max(0.0, end - n.requested)
        launch = max(0.0, min(n.ready_at if n.ready_at is not None else end, end) - n.requested)
        starting = min(life, launch + n.pod_start)
        busy = min(n.busy, life - starting)
        hours["busy"] += busy / 3600
        hours["starting"] += starting / 3600
        hours["idle"] += (life - starting - busy) / 3600
        by_cap[n.capacity] += life / 3600
        cost[n.capacity] += life / 3600 * n.price
    hours["total"] = sum(hours.values())
    total = cost[SPOT] + cost[ON_DEMAND]
    per_k = 1000.0 / images if images else math.nan

    # Busy-only: the GPU-seconds of the work itself at the price of the nodes that ran it on average.
    busy_seconds = {t.tenant: 0.0 for t in result.tasks}
    for t in done:
        busy_seconds[t.tenant] += t.service
    all_busy = sum(busy_seconds.values())
    node_hours = by_cap[SPOT] + by_cap[ON_DEMAND]
    mean_price = total / node_hours if node_hours else 0.0
    tenants = {}
    for tenant, secs in sorted(busy_seconds.items()):
        n_images = sum(t.images for t in done if t.tenant == tenant)
        share = secs / all_busy if all_busy else 0.0
        tenants[tenant] = {
            "images": float(n_images),
            "busy_usd": round(secs / 3600 * mean_price, 4),
            "loaded_usd": round(total * share, 4),
            "loaded_per_1000_images": round(total * share * 1000 / n_images, 4) if n_images else math.nan,
        }
    return Summary(
        name=plan.name,
        tasks=len(result.tasks),
        completed=len(done),
        images=images,
        throughput_per_s=len(done) / horizon if horizon else math.nan,
        p50_s=percentile(lat, 50),
        p95_s=percentile(lat, 95),
        p99_s=percentile(lat, 99),
        mean_s=sum(lat) / len(lat) if lat else math.nan,
        oldest_message_age_s=max(waits) if waits else 0.0,
        horizon_s=horizon,
        node_hours={k: round(v, 6) for k, v in hours.items()},
        node_hours_by_capacity={k: round(v, 6) for k, v in by_cap.items()},
        cost_usd={SPOT: round(cost[SPOT], 4), ON_DEMAND: round(cost[ON_DEMAND], 4), "total": round(total, 4)},
        cost_per_1000_images={
            SPOT: round(cost[SPOT] * per_k, 4),
            ON_DEMAND: round(cost[ON_DEMAND] * per_k, 4),
            "total": round(total * per_k, 4),
            "busy_only": round(all_busy / 3600 * mean_price * per_k, 4),
        },
        tenants=tenants,
        max_replicas_seen=max((s.replicas for s in result.samples), default=0),
        max_nodes_seen=max((s.nodes_spot + s.nodes_on_demand for s in result.samples), default=0),
        interruptions=result.interruptions,
        returned_messages=result.returned,
        settings={
            "instance_type": plan.instance_type,
            **{f"scaling.{k}": v for k, v in plan.scaling.model_dump().items()},
            **{f"capacity.{k}": v for k, v in plan.capacity.model_dump().items() if k != "instance_type"},
            **{f"agent.{k}": v for k, v in plan.agent.model_dump().items()},
            **{f"pod.{k}": v for k, v in plan.pod.model_dump().items()},
        },
        pricing={"source": plan.pricing_source, "as_of": plan.pricing_as_of},
    )


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Which (cost, p95) points no other point beats on both (<= on both, < on one). NaN never wins."""
    flags = []
    for i, (c, p) in enumerate(points):
        if math.isnan(c) or math.isnan(p):
            flags.append(False)
            continue
        dominated = any(
            (c2 <= c and p2 <= p and (c2 < c or p2 < p))
            for j, (c2, p2) in enumerate(points)
            if j != i and not (math.isnan(c2) or math.isnan(p2))
        )
        flags.append(not dominated)
    return flags
