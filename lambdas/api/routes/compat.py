"""/v1alpha1 and /v1alpha2: stable-diffusion-on-eks requests, normalized and submitted like /v1/tasks.

They answer as the reference does: ``200`` with ``{"id", "runtime", "output_location"}`` (v1alpha2) or
``{"id_task", "sd_model_checkpoint", "output_location"}`` (v1alpha1), for a new task and for an idempotent
replay alike, plus the Easel task object under ``task`` (its ``urls.get`` to poll).
"""

# No `from __future__ import annotations`: Powertools reads the annotations to build the OpenAPI document.

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

from easel.contract import Task, TaskRequest
from lambdas.api import compat_request, http, intake, service, v1alpha1, v1alpha2
from lambdas.api.deps import get_deps
from lambdas.api.routes.docs import errors, ok
from lambdas.api.telemetry import tracer

router = APIGatewayRouter()


class V1alpha2Accepted(BaseModel):
    id: str
    runtime: str
    output_location: str
    task: Task


class V1alpha1Accepted(BaseModel):
    id_task: str
    sd_model_checkpoint: str
    output_location: str
    task: Task


def _location(task: Task) -> str:
    return service.output_location(task, get_deps().settings.outputs_bucket)


@router.post(
    "/v1alpha2",
    summary="Submit a task in the stable-diffusion-on-eks v1alpha2 shape",
    description="200 `{id, runtime, output_location, task}` for a new task and for an idempotent replay.",
    responses={200: ok("task queued (or replayed)", V1alpha2Accepted), **errors(400, 409, 413, 415, 503)},
    tags=["compat"],
)
@tracer.capture_method
def submit_v1alpha2() -> Response[str]:
    config = get_deps().config
    seen: dict[str, Any] = {}

    def parse(body: Any) -> TaskRequest:
        seen["body"] = body
        return v1alpha2.normalize(body, config)

    def has_link() -> bool:
        scripts = (((seen.get("body") or {}).get("task") or {}).get("content") or {}).get("alwayson_scripts")
        return isinstance(scripts, dict) and bool(scripts.get("image_link"))

    content = "task.content"
    task, _ = intake.accept(
        router.current_event,
        parse,
        image_paths=[
            (*content.split("."), "init_images", "*"),
            (*content.split("."), "alwayson_scripts", "image_link"),
            (*content.split("."), "image"),  # extra-single-image
        ],
        rename=compat_request.input_renamer(content, f"{content}.alwayson_scripts.image_link", has_link),
    )
    doc: dict[str, Any] = {
        "id": task.id,
        "runtime": task.compat.runtime if task.compat else task.runtime,
        "output_location": _location(task),
        "task": intake.present(task, router.current_event),
    }
    return http.json_response(200, doc)


@router.post(
    "/v1alpha1",
    summary="Submit a task in the stable-diffusion-on-eks v1alpha1 shape",
    description="200 `{id_task, sd_model_checkpoint, output_location, task}`, new task or replay.",
    responses={200: ok("task queued (or replayed)", V1alpha1Accepted), **errors(400, 409, 413, 415, 503)},
    tags=["compat"],
)
@tracer.capture_method
def submit_v1alpha1() -> Response[str]:
    config = get_deps().config
    seen: dict[str, Any] = {}

    def parse(body: Any) -> TaskRequest:
        seen["body"] = body
        return v1alpha1.normalize(body, config)

    def has_link() -> bool:
        scripts = (seen.get("body") or {}).get("alwayson_scripts")
        return isinstance(scripts, dict) and bool(scripts.get("image_link"))

    task, _ = intake.accept(
        router.current_event,
        parse,
        image_paths=[("init_images", "*"), ("alwayson_scripts", "image_link")],
        rename=compat_request.input_renamer("", "alwayson_scripts.image_link", has_link),
    )
    checkpoint = task.compat.checkpoint if task.compat and task.compat.checkpoint else task.model
    doc: dict[str, Any] = {
        "id_task": task.id,
        "sd_model_checkpoint": checkpoint,
        "output_location": _location(task),
        "task": intake.present(task, router.current_event),
    }
    return http.json_response(200, doc)
