"""/v1/models: the model registry (name, runtime, task types) and the request limits."""

# No `from __future__ import annotations`: Powertools reads the annotations to build the OpenAPI document.

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from lambdas.api import http
from lambdas.api.deps import get_deps
from lambdas.api.routes.docs import ModelList, errors, ok

router = APIGatewayRouter()


@router.get(
    "/v1/models",
    summary="List models and request limits",
    responses={200: ok("models and limits", ModelList), **errors()},
    tags=["models"],
)
def list_models() -> Response[str]:
    deps = get_deps()
    http.caller_tenant(router.current_event, deps.config)
    models = [
        {"name": m.name, "runtime": m.runtime, "task_types": [str(t) for t in m.task_types]}
        for m in deps.config.models
    ]
    return http.json_response(200, {"models": models, "limits": deps.config.api.limits.model_dump()})
