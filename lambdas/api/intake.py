"""Accepting a task over HTTP, shared by ``POST /v1/tasks`` and the ``POST /v1alpha2`` compat route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from easel.contract import Task, TaskRequest
from lambdas.api import http, service
from lambdas.api.deps import get_deps
from lambdas.api.telemetry import record_submitted


def present(task: Task, event: APIGatewayProxyEvent) -> dict[str, Any]:
    deps = get_deps()
    return service.present(
        task,
        base_url=http.base_url(event, deps.settings.public_url),
        outputs_bucket=deps.settings.outputs_bucket,
        presigner=deps.presigner,
        ttl_seconds=deps.config.api.url_ttl_seconds,
    )


def accept(event: APIGatewayProxyEvent, parse: Callable[[Any], TaskRequest]) -> tuple[Task, bool]:
    """Tenant from the caller, body within limits, ``parse`` into a request, then submit."""
    deps = get_deps()
    tenant = http.caller_tenant(event, deps.config)
    body = http.json_body(event, deps.config.api.limits.max_body_bytes)
    task, created = service.submit(
        parse(body),
        tenant=tenant,
        config=deps.config,
        store=deps.store,
        publisher=deps.publisher,
        trace=http.trace_context(event),
    )
    if created:
        record_submitted(task)
    return task, created
