"""Per-tenant entitlements (``tenants[].entitlements`` in config), checked at intake before storing.

Order: what the tenant may ask for (model, runtime, priority: 403 naming the field and what is allowed),
then how much it has in flight (``max_active_tasks``: 429 with Retry-After), then the daily image quota
(``daily_images``: 429 with Retry-After until the next UTC midnight). The quota is charged here, atomically,
and taken back by :func:`refund` when the task is not created after all (replay, conflict, failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from easel.config import Entitlements
from easel.contract import TaskRequest
from easel.contract.tasks import GenerationInput, Priority
from easel.store import TaskStore
from lambdas.api.errors import Forbidden, TooManyRequests

_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2}


@dataclass(frozen=True)
class Charge:
    """Images charged to a tenant's day; ``refund`` it if the task is not created."""

    tenant: str
    day: str
    images: int


def check_allowed(request: TaskRequest, runtime: str, rules: Entitlements) -> None:
    """Refuse (403, naming the field) a model, runtime or priority this tenant is not entitled to."""
    if rules.models is not None and request.model not in rules.models:
        raise Forbidden(
            f"model '{request.model}' is not in this tenant's entitled models "
            f"({', '.join(rules.models) or 'none'})",
            field="model",
            code="model_not_entitled",
        )
    if rules.runtimes is not None and runtime not in rules.runtimes:
        raise Forbidden(
            f"model '{request.model}' runs on runtime '{runtime}', which is not in this tenant's entitled "
            f"runtimes ({', '.join(rules.runtimes) or 'none'})",
            field="model",
            code="runtime_not_entitled",
        )
    if _RANK[request.priority] > _RANK[rules.max_priority]:
        raise Forbidden(
            f"priority '{request.priority}' is above this tenant's highest allowed priority "
            f"'{rules.max_priority}'",
            field="priority",
            code="priority_not_entitled",
        )


def check_active(store: TaskStore, tenant: str, rules: Entitlements) -> None:
    """Refuse (429) a task that would put the tenant over ``max_active_tasks`` queued plus processing."""
    limit = rules.max_active_tasks
    if limit is None:
        return
    if store.count_active(tenant, up_to=limit) >= limit:
        raise TooManyRequests(
            f"this tenant has {limit} tasks queued or processing, the limit of max_active_tasks ({limit}); "
            "retry when one finishes",
            field="max_active_tasks",
            code="too_many_active_tasks",
            retry_after=rules.retry_after_seconds,
        )


def images_of(request: TaskRequest) -> int:
    """What a task counts against ``daily_images``: its generated images, or 1 for a training run."""
    return request.input.batch_size if isinstance(request.input, GenerationInput) else 1


def charge_daily(
    store: TaskStore, tenant: str, request: TaskRequest, rules: Entitlements, now: datetime
) -> Charge | None:
    """Charge the request's images to today's quota, or refuse (429 until the next UTC midnight)."""
    quota = rules.daily_images
    if quota is None:
        return None
    day = now.date().isoformat()
    images = images_of(request)
    if store.charge_images(tenant, day, images, quota=quota) is None:
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
        raise TooManyRequests(
            f"{images} more image(s) would pass this tenant's daily_images quota of {quota} for {day} (UTC)",
            field="daily_images",
            code="daily_quota_exceeded",
            retry_after=max(1, int((midnight - now).total_seconds())),
        )
    return Charge(tenant, day, images)


def refund(store: TaskStore, charge: Charge | None) -> None:
    if charge is not None:
        store.refund_images(charge.tenant, charge.day, charge.images)
