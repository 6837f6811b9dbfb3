"""The API Lambda: Powertools REST resolver, error mapping, and the one-line handler.

Every error leaves as ``{"error": {"code", "message", "field"?}}``: client mistakes as 4xx (core
``FieldError`` -> 400, unknown task -> 404, conflicts -> 409), AWS trouble as 503, and only true server
faults as 500 (logged with the stack).
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from easel.errors import FieldError, InvalidCursor, StoreUnavailable, TaskConflict, TaskNotFound
from lambdas.api.errors import ApiError, BadRequest, Conflict, MethodNotAllowed, NotFound, ServiceUnavailable
from lambdas.api.http import json_response
from lambdas.api.routes import compat, models, tasks, uploads
from lambdas.api.telemetry import logger, tracer

# A path with a control character (e.g. "/v1/tasks/abc%0A") is no route: the route patterns end in "$",
# which would otherwise match before a trailing newline and serve task "abc".
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_characters(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[str]:
    if _CONTROL.search(app.current_event.path):
        raise NotFound("the path holds a control character", field="path", code="route_not_found")
    return next_middleware(app)


app = APIGatewayRestResolver()
app.use(middlewares=[_no_control_characters])
app.include_router(tasks.router)
app.include_router(models.router)
app.include_router(compat.router)
app.include_router(uploads.router)


def _error(exc: ApiError) -> Response[str]:
    return json_response(exc.status, exc.body(), headers=exc.headers() or None)


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response[str]:
    logger.info("request refused", extra={"status": exc.status, "code": exc.code, "field": exc.field})
    return _error(exc)


@app.exception_handler(FieldError)
def _field_error(exc: FieldError) -> Response[str]:
    return _api_error(
        BadRequest(
            f"{exc.field}: {exc.reason}", field=exc.field, code="invalid_field", extra={"errors": exc.errors}
        )
    )


@app.exception_handler(InvalidCursor)
def _invalid_cursor(exc: InvalidCursor) -> Response[str]:
    return _api_error(
        BadRequest(f"next: {exc.reason}; start again without `next`", field="next", code="invalid_cursor")
    )


@app.exception_handler(TaskNotFound)
def _not_found(exc: TaskNotFound) -> Response[str]:
    return _api_error(NotFound(str(exc), field="id", code="task_not_found"))


@app.exception_handler(TaskConflict)
def _conflict(exc: TaskConflict) -> Response[str]:
    return _api_error(Conflict(str(exc), field="id", code="task_conflict"))


@app.exception_handler([StoreUnavailable, ClientError, BotoCoreError])
def _aws_unavailable(_: Exception) -> Response[str]:
    logger.exception("AWS call failed")
    return _error(ServiceUnavailable("a backing service is unavailable; retry later"))


@app.not_found
def _no_route(_: NotFoundError) -> Response[str]:
    method = app.current_event.http_method.upper()[:16]
    path = app.current_event.path
    allowed = sorted({r.method for r in app._static_routes + app._dynamic_routes if r.rule.match(path)})
    if allowed:
        exc: ApiError = MethodNotAllowed(
            f"{method} is not allowed on {path}; use {', '.join(allowed)}", field="method"
        )
        return json_response(exc.status, exc.body(), headers={"Allow": ", ".join(allowed)})
    return _api_error(NotFound(f"no route {method} {path[:200]!r}", field="path", code="route_not_found"))


@app.exception_handler(Exception)
def _server_fault(_: Exception) -> Response[str]:
    # Reached only by bugs and misconfiguration: everything a client can send is mapped above.
    logger.exception("unhandled error")
    return json_response(500, {"error": {"code": "internal_error", "message": "internal server error"}})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
