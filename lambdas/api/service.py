"""The API's domain functions: plain code over the task store and the publisher (no HTTP in here).

Submit order: validate (caller) -> model + limits -> entitlements (allowed, in flight, daily quota) ->
store.create (idempotent) -> publish -> task.
If publishing fails the task is marked ``failed`` (``dispatch_failed``) so it never sits ``queued`` forever,
and :class:`DispatchFailed` is raised; the handler layer maps it to HTTP 503.
"""

from __future__ import annotations

from typing import Any

from easel import lifecycle
from easel.clock import utcnow
from easel.config import EaselConfig, Entitlements
from easel.contract import QueueMessage, Task, TaskRequest, TaskStatus, request_fingerprint
from easel.errors import StoreError
from easel.limits import check_limits, check_model
from easel.naming import output_dir
from easel.store import TaskStore
from lambdas.api import entitlements
from lambdas.api.deps import DispatchError, Presigner, Publisher
from lambdas.api.telemetry import logger


class DispatchFailed(Exception):
    """The task could not be published to the tasks topic (``task_id`` names it); retry later."""

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"task '{task_id}' could not be queued: {reason}")
        self.task_id = task_id


def submit(
    request: TaskRequest,
    *,
    tenant: str,
    config: EaselConfig,
    store: TaskStore,
    publisher: Publisher,
    trace: dict[str, str] | None = None,
) -> tuple[Task, bool]:
    """Create and dispatch a task. Returns ``(task, created)``; a replay returns the stored task.

    A replayed task that is still ``queued`` and was never marked dispatched is published again: the
    first request may have died between its write and its publish. Once dispatched, a replay publishes
    nothing, so a client retry never queues the same task twice.
    """
    runtime = check_model(request, config)
    check_limits(request, config.api.limits)
    tenant_config = config.tenant(tenant)
    rules = tenant_config.entitlements if tenant_config else Entitlements()
    entitlements.check_allowed(request, runtime, rules)
    charge = None
    # An idempotent replay of an existing task is answered as usual, whatever the tenant's usage now.
    if request.id is None or store.find(tenant, request.id) is None:
        entitlements.check_active(store, tenant, rules)
        charge = entitlements.charge_daily(store, tenant, request, rules, utcnow())
    try:
        task, created = store.create(
            lifecycle.queued_task(request, tenant=tenant, runtime=runtime), request_fingerprint(request)
        )
    except BaseException:
        entitlements.refund(store, charge)
        raise
    if not created:
        entitlements.refund(store, charge)
    if not created and (task.status is not TaskStatus.QUEUED or task.dispatched_at is not None):
        return task, created
    try:
        publisher.publish(QueueMessage.from_task(task, trace))
    except DispatchError as exc:
        # The SDK's text names the topic ARN and the account: it goes to the log, the tenant reads the code.
        logger.warning("dispatch failed", extra={"task_id": task.id, "tenant": tenant, "error": str(exc)})
        if created:
            entitlements.refund(store, charge)
            # Nobody will ever pick this task up: say so in the task rather than leave it queued.
            lifecycle.fail(store, tenant, task.id, "dispatch_failed", sources=[TaskStatus.QUEUED])
        raise DispatchFailed(task.id, "publish failed") from exc
    dispatched = utcnow()
    try:
        store.mark_dispatched(tenant, task.id, dispatched)
    except StoreError:
        # The message is out; without the mark a replay would publish a duplicate, which the agent drops.
        return task, created
    return task.model_copy(update={"dispatched_at": dispatched}), created


def cancel(store: TaskStore, tenant: str, task_id: str) -> Task:
    """queued|processing -> canceled; a terminal task raises :class:`easel.errors.TaskConflict`."""
    return lifecycle.cancel(store, tenant, task_id)


def present(
    task: Task, *, base_url: str, outputs_bucket: str, presigner: Presigner, ttl_seconds: int
) -> dict[str, Any]:
    """The task object as clients see it: links to itself and, when succeeded, presigned output URLs."""
    doc = task.model_dump(mode="json")
    doc["urls"] = {
        "get": f"{base_url}/v1/tasks/{task.id}",
        "cancel": f"{base_url}/v1/tasks/{task.id}/cancel",
    }
    if task.status is TaskStatus.SUCCEEDED and task.output is not None:
        doc["output"]["urls"] = [
            presigner.presign_get(bucket, key, ttl_seconds)
            for bucket, key in _own_objects(task, outputs_bucket)
        ]
    return doc


def output_location(task: Task, outputs_bucket: str) -> str:
    """Where the task's outputs land, as stable-diffusion-on-eks reports it (no trailing slash): the agent
    writes them, and a compat task's ``.out``, under ``tenants/<tenant>/<output_prefix or 'tasks'>/<id>``."""
    return f"s3://{outputs_bucket}/{output_dir(task.tenant, task.id, task.output_prefix).rstrip('/')}"


def _own_objects(task: Task, outputs_bucket: str) -> list[tuple[str, str]]:
    # Presign only this tenant's objects in the outputs bucket: a URL is a capability, and the image
    # list is written by the agent, so it is checked rather than trusted.
    prefix = f"s3://{outputs_bucket}/tenants/{task.tenant}/"
    out = []
    for uri in task.output.images if task.output else []:
        if uri.startswith(prefix):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            out.append((bucket, key))
    return out
