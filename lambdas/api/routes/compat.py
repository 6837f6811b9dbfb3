"""/v1alpha2: the stable-diffusion-on-eks request shape, normalized and submitted like /v1/tasks."""

# No `from __future__ import annotations`: Powertools reads the annotations to build the OpenAPI document.

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from easel.contract import Task
from lambdas.api import http, service, v1alpha2
from lambdas.api.deps import get_deps
from lambdas.api.routes.docs import errors, ok
from lambdas.api.telemetry import record_submitted, tracer

router = APIGatewayRouter()


@router.post(
    "/v1alpha2",
    summary="Submit a task in the stable-diffusion-on-eks v1alpha2 shape",
    description="The task object plus the v1alpha2 response fields `id_task`, `runtime`, `output_location`.",
    responses={
        202: ok("task queued", Task),
        200: ok("idempotent replay", Task),
        **errors(400, 409, 413, 415, 503),
    },
    tags=["compat"],
)
@tracer.capture_method
def submit_v1alpha2() -> Response[str]:
    deps = get_deps()
    tenant = http.caller_tenant(router.current_event, deps.config)
    body = http.json_body(router.current_event, deps.config.api.limits.max_body_bytes)
    request = v1alpha2.normalize(body, deps.config)
    task, created = service.submit(
        request,
        tenant=tenant,
        config=deps.config,
        store=deps.store,
        publisher=deps.publisher,
        trace=http.trace_context(router.current_event),
    )
    if created:
        record_submitted(task)
    doc = service.present(
        task,
        base_url=http.base_url(router.current_event, deps.settings.public_url),
        outputs_bucket=deps.settings.outputs_bucket,
        presigner=deps.presigner,
        ttl_seconds=deps.config.api.url_ttl_seconds,
    )
    doc.update(
        id_task=task.id,
        output_location=service.output_location(task, deps.settings.outputs_bucket),
    )
    return http.json_response(202 if created else 200, doc)
