"""Per-tenant GPU cost accounting from the tasks table.

Every finished task carries ``metrics.gpu_seconds`` (model switch + generation time on the GPU, written by
the queue agent). Cost = GPU-seconds / 3600 * the runtime's ``gpu_hour_usd`` from config. Idle node time
(scale-in cooldown, node start) is not attributed to tenants: it is the platform's overhead, reported by
the dashboard, not billed to whoever happened to run last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from easel.config import EaselConfig
from easel.contract import TaskStatus
from easel.store import TaskStore


@dataclass
class CostLine:
    tenant: str
    runtime: str
    tasks: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    gpu_seconds: float = 0.0
    usd: float = 0.0


def tenant_costs(
    store: TaskStore,
    config: EaselConfig,
    *,
    since: datetime,
    tenants: Iterable[str] | None = None,
    page_size: int = 100,
) -> list[CostLine]:
    """One line per (tenant, runtime) with tasks created at or after ``since``, sorted by cost."""
    prices = {r.name: r.gpu_hour_usd for r in config.runtimes}
    lines: dict[tuple[str, str], CostLine] = {}
    for tenant in tenants if tenants is not None else [t.id for t in config.tenants]:
        cursor: str | None = None
        while True:
            page, cursor = store.list(tenant, limit=page_size, cursor=cursor)
            for task in page:
                if task.created_at < since:
                    cursor = None  # newest first: everything after this is older
                    break
                line = lines.setdefault((tenant, task.runtime), CostLine(tenant, task.runtime))
                line.tasks += 1
                line.by_status[str(task.status)] = line.by_status.get(str(task.status), 0) + 1
                if task.status is not TaskStatus.QUEUED and task.metrics.gpu_seconds:
                    line.gpu_seconds += task.metrics.gpu_seconds
            if cursor is None:
                break
    for line in lines.values():
        line.usd = round(line.gpu_seconds / 3600 * prices.get(line.runtime, 0.0), 6)
        line.gpu_seconds = round(line.gpu_seconds, 3)
    return sorted(lines.values(), key=lambda x: (-x.usd, x.tenant, x.runtime))
