"""Reading a request (caller tenant, JSON body, query, path ids) and writing JSON responses.

Everything a client can get wrong surfaces here as an :class:`ApiError` naming the field, so the routes only
deal with valid values.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from easel.config import EaselConfig
from easel.contract.tasks import ID_PATTERN
from easel.contract.values import check_json_value, parse_json_int
from easel.tenancy import resolve_tenant
from easel.tracing import xray_traceparent
from lambdas.api.errors import BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType
from lambdas.api.telemetry import logger

_ID = re.compile(ID_PATTERN)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# Deep nesting would blow the parser's recursion; no valid request comes near this.
_MAX_JSON_DEPTH = 32


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=headers,
    )


def caller_tenant(event: APIGatewayProxyEvent, config: EaselConfig) -> str:
    """The caller's tenant: from the API-key authorizer's context on the key API, else from the caller's IAM
    identity (user, assumed role by its role ARN, federated user).

    Both come from ``requestContext``, which API Gateway writes and no client header can set; the key API
    has no IAM identity and the IAM API no authorizer context, so a request carrying both is refused.
    """
    context = event.get("requestContext") or {}
    arn = (context.get("identity") or {}).get("userArn") or ""
    key_tenant = (context.get("authorizer") or {}).get("tenant")
    if key_tenant is not None:
        tenant = config.tenant(str(key_tenant))
        if arn or tenant is None or tenant.api_keys is None:
            logger.info("api key context refused", extra={"key_id": context["authorizer"].get("key_id")})
            raise Forbidden("the API key is not valid for any tenant", field="x-api-key", code="unknown_key")
        return tenant.id
    tenant_id = resolve_tenant(arn, config.tenants)
    if tenant_id is None:
        # The caller's ARN goes to the log, not into the answer: tenant-readable text carries no ARNs.
        logger.info("principal not mapped to a tenant", extra={"principal": arn or "anonymous"})
        raise Forbidden(
            "the caller's IAM identity is not mapped to a tenant",
            field="principal",
            code="unknown_principal",
        )
    return tenant_id


def json_body(event: APIGatewayProxyEvent, max_bytes: int) -> Any:
    """The decoded JSON body, after checking content type and raw size (before parsing anything)."""
    ctype = (event.headers.get("content-type") or "").strip()
    media, _, params = ctype.partition(";")
    if media.strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"content-type must be application/json, got '{ctype or 'none'}'", field="content-type"
        )
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise UnsupportedMediaType(
            f"only utf-8 bodies are accepted, got '{params.strip()}'", field="content-type"
        )
    raw = _raw_body(event)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is {len(raw)} bytes, over the limit of {max_bytes}", field="body")
    if not raw.strip():
        raise BadRequest("body is empty; send a JSON object", field="body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8 (byte {exc.start})", field="body") from None
    try:
        data = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_int=parse_json_int
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field="body"
        ) from None
    except RecursionError:
        raise BadRequest("JSON nested too deeply", field="body") from None
    if _depth(data) > _MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {_MAX_JSON_DEPTH} levels", field="body")
    # Numbers and strings the store could not hold (a FieldError naming the value's path, 400).
    check_json_value(data)
    return data


def _raw_body(event: APIGatewayProxyEvent) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("body is marked base64 but is not", field="body") from None
    return body.encode("utf-8", errors="surrogatepass")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two values for one key: whichever we kept, the client meant something else somewhere.
            raise BadRequest(f"duplicate key '{key[:64]}' in JSON object", field=key[:64] or "body")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise BadRequest(f"'{name}' is not valid JSON", field="body")


def _depth(value: Any, level: int = 1) -> int:
    if level > _MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def query_params(event: APIGatewayProxyEvent, allowed: set[str]) -> dict[str, str]:
    """Single-valued query parameters; unknown or repeated ones are rejected by name."""
    multi: dict[str, list[str]] = event.get("multiValueQueryStringParameters") or {}
    single: dict[str, str] = event.get("queryStringParameters") or {}
    out: dict[str, str] = {}
    for name in sorted(set(multi) | set(single)):
        if name not in allowed:
            raise BadRequest(
                f"unknown query parameter; use: {', '.join(sorted(allowed))}", field=name[:64] or "query"
            )
        values = multi.get(name) or [single[name]]
        if len(values) > 1:
            raise BadRequest("given more than once", field=name[:64] or "query")
        out[name] = values[0]
    return out


def task_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise BadRequest(f"'{value[:80]}' is not a task id ([A-Za-z0-9_-]{{1,64}})", field="id")
    return value


def base_url(event: APIGatewayProxyEvent, public_url: str | None) -> str:
    """Where this API is reachable, for ``urls.get``/``urls.cancel``."""
    if public_url:
        return public_url.rstrip("/")
    ctx = event.get("requestContext") or {}
    host = ctx.get("domainName") or event.headers.get("host") or "localhost"
    proto = event.headers.get("x-forwarded-proto") or "https"
    stage = ctx.get("stage") or ""
    # The default execute-api domain carries the stage in the path; custom domains and the local
    # gateway don't.
    prefix = f"/{stage}" if stage and ".execute-api." in host else ""
    return f"{proto}://{host}{prefix}"


def trace_context(event: APIGatewayProxyEvent) -> dict[str, str]:
    """W3C trace context from the caller (if well-formed), else the X-Ray trace of this invocation."""
    ctx: dict[str, str] = {}
    parent = (event.headers.get("traceparent") or "").strip().lower()
    if _TRACEPARENT.match(parent):
        ctx["traceparent"] = parent
        state = event.headers.get("tracestate")
        if state and len(state) <= 512:
            ctx["tracestate"] = state
    xray = os.environ.get("_X_AMZN_TRACE_ID")
    if xray:
        ctx["x-amzn-trace-id"] = xray
        # No caller trace: the invocation's X-Ray trace becomes the W3C parent, so the agent's and the
        # runtime's spans (OTLP -> ADOT -> X-Ray) land in the same X-Ray trace as API Gateway and Lambda.
        if "traceparent" not in ctx:
            from_xray = xray_traceparent(xray)
            if from_xray is not None:
                ctx["traceparent"] = from_xray
    return ctx
