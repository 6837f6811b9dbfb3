"""/v1/uploads: a presigned POST into the caller's ``tenants/<tenant>/inputs/``, for init images and other
task inputs. S3 enforces the conditions of the POST policy (this content type, 1..max_upload_bytes bytes);
the API checks the object again when a task names it (exists, size, PNG/JPEG/WebP signature)."""

# No `from __future__ import annotations`: Powertools reads the annotations to build the OpenAPI document.

import uuid
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, ValidationError

from easel.errors import FieldError
from easel.naming import input_prefix
from lambdas.api import http
from lambdas.api.deps import get_deps
from lambdas.api.errors import ServiceUnavailable
from lambdas.api.routes.docs import errors, ok
from lambdas.api.telemetry import tracer

router = APIGatewayRouter()

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_type: Literal["image/png", "image/jpeg", "image/webp"]


class PresignedPost(BaseModel):
    url: str
    fields: dict[str, str]


class Upload(BaseModel):
    uri: str
    upload: PresignedPost
    max_bytes: int
    expires_in: int


@router.post(
    "/v1/uploads",
    summary="Get a presigned POST for an input image",
    description=(
        "POST the file as multipart/form-data to `upload.url` with every `upload.fields` entry, the "
        "file last; then use `uri` as `init_images` (or train-lora `images`)."
    ),
    responses={201: ok("presigned upload", Upload), **errors(400, 413, 415, 503)},
    tags=["uploads"],
)
@tracer.capture_method
def create_upload() -> Response[str]:
    deps = get_deps()
    tenant = http.caller_tenant(router.current_event, deps.config)
    body = http.json_body(router.current_event, deps.config.api.limits.max_body_bytes)
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    try:
        req = UploadRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in err["loc"]) or "body"
        reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise FieldError(name, reason) from None
    if deps.inputs is None:
        raise ServiceUnavailable("uploads are not configured")
    bucket = deps.settings.outputs_bucket
    key = f"{input_prefix(tenant)}{uuid.uuid4().hex}.{EXTENSIONS[req.content_type]}"
    # The agent fetches at most inputs.max_bytes: a larger upload could never be used.
    max_bytes = deps.config.inputs.max_bytes
    ttl = deps.config.api.url_ttl_seconds
    post: dict[str, Any] = deps.inputs.presign_post(
        bucket, key, content_type=req.content_type, max_bytes=max_bytes, ttl_seconds=ttl
    )
    doc = {
        "uri": f"s3://{bucket}/{key}",
        "upload": {"url": post["url"], "fields": post["fields"]},
        "max_bytes": max_bytes,
        "expires_in": ttl,
    }
    return http.json_response(201, doc)
