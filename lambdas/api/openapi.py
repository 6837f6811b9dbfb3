"""The OpenAPI document of the API (``docs/openapi.json``), generated from the registered routes.

Powertools renders paths, path parameters and responses from the routes; request bodies, query parameters
and the SigV4 security scheme are added here because the routes parse those themselves (to name fields in
errors the Easel way). ``python -m lambdas.api.openapi docs/openapi.json`` rewrites the file; a test checks
it is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from easel import __version__
from easel.contract import TaskRequest


class V1Alpha2Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="task id, [A-Za-z0-9_-]{1,64}")
    runtime: str = Field(description="a runtime of the config")
    tasktype: str = Field(description="text-to-image | image-to-image")
    prefix: str | None = Field(
        default=None, description="accepted and ignored (outputs go to the tenant prefix)"
    )
    context: Any = None


class V1Alpha2Task(BaseModel):
    metadata: V1Alpha2Metadata
    content: dict[str, Any] = Field(
        description="SD WebUI txt2img/img2img fields; alwayson_scripts.sd_model_checkpoint picks the model"
    )


class V1Alpha2Request(BaseModel):
    """Body of ``POST /v1alpha2`` (stable-diffusion-on-eks)."""

    task: V1Alpha2Task


_BODIES: dict[tuple[str, str], tuple[str, type[BaseModel], str]] = {
    ("/v1/tasks", "post"): ("TaskRequest", TaskRequest, "validation"),
    ("/v1alpha2", "post"): ("V1Alpha2Request", V1Alpha2Request, "validation"),
}
_QUERY = {
    ("/v1/tasks", "get"): [
        {
            "name": "status",
            "in": "query",
            "required": False,
            "description": "only tasks in this status",
            "schema": {"type": "string", "enum": ["queued", "processing", "succeeded", "failed", "canceled"]},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "page size (1..api.list_max_limit)",
            "schema": {"type": "integer", "minimum": 1, "default": 20},
        },
        {
            "name": "next",
            "in": "query",
            "required": False,
            "description": "the `next` cursor of the last page",
            "schema": {"type": "string"},
        },
    ]
}


def build() -> dict[str, Any]:
    from lambdas.api.app import app

    doc: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title="Easel API",
            version=__version__,
            description="Stable Diffusion tasks over SigV4-signed HTTPS (API Gateway IAM auth).",
        )
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), (name, model, mode) in _BODIES.items():
        schema = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas[name] = schema
        doc["paths"][path][method]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    for (path, method), params in _QUERY.items():
        doc["paths"][path][method].setdefault("parameters", []).extend(params)
    doc["components"]["securitySchemes"] = {
        "sigv4": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "x-amazon-apigateway-authtype": "awsSigv4",
            "description": "AWS Signature Version 4, service execute-api",
        },
        # The key API (docs/api.md, "API keys"): the same paths at another base URL (KeyApiEndpoint).
        "apiKey": {
            "type": "apiKey",
            "name": "x-api-key",
            "in": "header",
            "description": "An Easel API key (easel keys create), for tenants with api_keys, on the key API",
        },
    }
    doc["security"] = [{"sigv4": []}, {"apiKey": []}]
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)  # Powertools' request validation is not used: errors are ErrorBody
    for ops in doc["paths"].values():
        for op in ops.values():
            op.get("responses", {}).pop("422", None)
    return doc


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json").write_text(render())
