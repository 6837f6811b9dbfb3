"""/v1alpha2: the stable-diffusion-on-eks request shape, normalized and submitted like /v1/tasks."""

# No `from __future__ import annotations`: Powertools reads the annotations to build the OpenAPI document.

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from easel.contract import Task
from lambdas.api import http, intake, service, v1alpha2
from lambdas.api.deps import get_deps
from lambdas.api.routes.docs import errors, ok
from lambdas.api.telemetry import tracer

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
    task, created = intake.accept(router.current_event, lambda body: v1alpha2.normalize(body, deps.config))
    doc = intake.present(task, router.current_event)
    doc.update(
        id_task=task.id,
        output_location=service.output_location(task, deps.settings.outputs_bucket),
    )
    return http.json_response(202 if created else 200, doc)
