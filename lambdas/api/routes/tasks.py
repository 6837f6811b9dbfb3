"""/v1/tasks: submit, get, list (newest first, opaque cursor), cancel."""

# No `from __future__ import annotations`: Powertools reads the annotations to build the OpenAPI document.

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from easel.contract import Task, TaskStatus, parse_task_request
from easel.errors import FieldError, TaskConflict
from lambdas.api import http, intake, service
from lambdas.api.deps import get_deps
from lambdas.api.errors import BadRequest, Conflict
from lambdas.api.routes.docs import TaskList, errors, ok
from lambdas.api.telemetry import tracer

router = APIGatewayRouter()


def _present(task: Task) -> dict[str, object]:
    return intake.present(task, router.current_event)


@router.post(
    "/v1/tasks",
    summary="Submit a task",
    description="202 with the new task; 200 with the stored task when the same `id` and body were seen.",
    responses={
        202: ok("task queued", Task),
        200: ok("idempotent replay", Task),
        **errors(400, 409, 413, 415, 503),
    },
    tags=["tasks"],
)
@tracer.capture_method
def submit_task() -> Response[str]:
    origins = get_deps().settings.insecure_webhook_origins
    task, created = intake.accept(
        router.current_event, lambda body: parse_task_request(body, insecure_webhook_origins=origins)
    )
    return http.json_response(202 if created else 200, _present(task))


@router.get(
    "/v1/tasks",
    summary="List tasks, newest first",
    description="Query: `status`, `limit` (1..api.list_max_limit, default 20), `next` (last page's cursor).",
    responses={200: ok("a page of tasks", TaskList), **errors(400)},
    tags=["tasks"],
)
@tracer.capture_method
def list_tasks() -> Response[str]:
    deps = get_deps()
    tenant = http.caller_tenant(router.current_event, deps.config)
    query = http.query_params(router.current_event, {"status", "limit", "next"})
    status = _status(query.get("status"))
    limit = _limit(query.get("limit"), deps.config.api.list_max_limit)
    tasks, cursor = deps.store.list(tenant, status=status, limit=limit, cursor=query.get("next") or None)
    return http.json_response(200, {"tasks": [_present(t) for t in tasks], "next": cursor})


@router.get(
    "/v1/tasks/<id>",
    summary="Get a task",
    responses={200: ok("the task", Task), **errors(400, 404)},
    tags=["tasks"],
)
@tracer.capture_method
def get_task(id: str) -> Response[str]:  # the path parameter's name
    deps = get_deps()
    tenant = http.caller_tenant(router.current_event, deps.config)
    return http.json_response(200, _present(deps.store.get(tenant, http.task_id(id))))


@router.post(
    "/v1/tasks/<id>/cancel",
    summary="Cancel a queued or processing task",
    description="409 with the current `status` when the task is already terminal.",
    responses={200: ok("the canceled task", Task), **errors(400, 404, 409)},
    tags=["tasks"],
)
@tracer.capture_method
def cancel_task(id: str) -> Response[str]:
    deps = get_deps()
    tenant = http.caller_tenant(router.current_event, deps.config)
    try:
        task = service.cancel(deps.store, tenant, http.task_id(id))
    except TaskConflict as exc:
        status = str(exc.current.status) if exc.current else "unknown"
        raise Conflict(
            f"task '{id}' is '{status}' and can no longer be canceled",
            field="id",
            code="not_cancelable",
            extra={"status": status},
        ) from None
    return http.json_response(200, _present(task))


def _status(value: str | None) -> TaskStatus | None:
    if value is None or value == "":
        return None
    try:
        return TaskStatus(value)
    except ValueError:
        raise FieldError("status", f"unknown status '{value}'; use one of: {', '.join(TaskStatus)}") from None


def _limit(value: str | None, maximum: int) -> int:
    if value is None:
        return min(20, maximum)
    # ASCII digits only: str.isdigit() and int() also take "²", Arabic-Indic digits or "1_0".
    if not (value.isascii() and value.isdecimal() and len(value) <= 6) or not 1 <= int(value) <= maximum:
        raise BadRequest(f"'{value[:20]}' is not an integer between 1 and {maximum}", field="limit")
    return int(value)
