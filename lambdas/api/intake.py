"""Accepting a task over HTTP, shared by ``POST /v1/tasks`` and the compat routes (/v1alpha1, /v1alpha2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from easel.contract import Task, TaskRequest
from easel.errors import FieldError
from easel.limits import check_limits, check_model
from lambdas.api import http, inputs, service
from lambdas.api.deps import get_deps
from lambdas.api.errors import ServiceUnavailable
from lambdas.api.telemetry import record_submitted

# Where /v1/tasks bodies carry images (inline base64 is moved to S3 from these places).
V1_IMAGE_PATHS: list[tuple[str, ...]] = [
    ("input", "init_images", "*"),
    ("input", "images", "*"),
    ("input", "image"),  # upscale
]


def present(task: Task, event: APIGatewayProxyEvent) -> dict[str, Any]:
    deps = get_deps()
    return service.present(
        task,
        base_url=http.base_url(event, deps.settings.public_url),
        outputs_bucket=deps.settings.outputs_bucket,
        presigner=deps.presigner,
        ttl_seconds=deps.config.api.url_ttl_seconds,
    )


def _same(exc: FieldError) -> FieldError:
    return exc


def accept(
    event: APIGatewayProxyEvent,
    parse: Callable[[Any], TaskRequest],
    *,
    image_paths: list[tuple[str, ...]] | None = None,
    rename: Callable[[FieldError], FieldError] = _same,
) -> tuple[Task, bool]:
    """Tenant from the caller, body within limits, inline images out, ``parse`` into a request, inputs
    checked (``rename`` maps ``input.*`` errors to the client's paths), then submit."""
    deps = get_deps()
    tenant = http.caller_tenant(event, deps.config)
    limits = deps.config.api.limits
    body = http.json_body(event, max(limits.max_body_bytes, limits.max_inline_body_bytes))
    bucket = deps.settings.outputs_bucket
    prepared = inputs.offload_inline(
        body,
        V1_IMAGE_PATHS if image_paths is None else image_paths,
        tenant=tenant,
        bucket=bucket,
        config=deps.config,
    )
    if not prepared.pending:
        # Only inline images earn the larger body limit: check the raw size as for any other body.
        http.json_body(event, limits.max_body_bytes)
    request = parse(prepared.body)
    # Model and limits first: a request the model cannot serve is refused for that, not for its images.
    check_model(request, deps.config)
    check_limits(request, limits)
    if deps.inputs is not None:
        try:
            inputs.check_refs(
                inputs.request_refs(request),
                tenant=tenant,
                bucket=bucket,
                config=deps.config,
                objects=deps.inputs,
                pending={key for key, _, _ in prepared.pending},
            )
        except FieldError as exc:
            raise rename(exc) from None
        for key, data, content_type in prepared.pending:
            deps.inputs.put(bucket, key, data, content_type)
    try:
        task, created = service.submit(
            request,
            tenant=tenant,
            config=deps.config,
            store=deps.store,
            publisher=deps.publisher,
            trace=http.trace_context(event),
        )
    except service.DispatchFailed as exc:
        raise ServiceUnavailable(
            "the task could not be queued; retry later", code="dispatch_failed", extra={"id": exc.task_id}
        ) from exc
    if created:
        record_submitted(task)
    return task, created
