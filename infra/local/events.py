"""API Gateway REST proxy events (payload format 1.0) from local HTTP requests, and back.

The local gateway builds exactly what API Gateway's ``/{proxy+}`` resource with Lambda proxy integration and
IAM auth hands the function, so ``lambdas.api.app.handler`` runs unchanged.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT = "123456789012"
STAGE = "local"


def proxy_event(
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    principal_arn: str | None,
    access_key_id: str | None,
    source_ip: str,
    host: str,
    request_id: str | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event of a SigV4 call (``principal_arn``, ``access_key_id``) or of a call a Lambda authorizer
    let through (``authorizer``: its context, as ``requestContext.authorizer``; no IAM identity)."""
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    # What API Gateway adds in front of the function (the handler builds its self links from these).
    multi_headers["X-Forwarded-Proto"] = ["http"]
    multi_headers["X-Forwarded-For"] = [source_ip]
    multi_headers["X-Forwarded-Port"] = [host.rpartition(":")[2] if ":" in host else "80"]
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    try:
        text: str | None = body.decode("utf-8") if body else None
        is_b64 = False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    request_id = request_id or str(uuid.uuid4())
    now = datetime.now(UTC)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.upper(),
        # Like API Gateway: the single-value maps keep the last value of a repeated name.
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path.strip("/") else None,
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": is_b64,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method.upper(),
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            **({"authorizer": authorizer} if authorizer is not None else {}),
            "identity": {
                "accountId": ACCOUNT if principal_arn else None,
                "accessKey": access_key_id,
                "caller": principal_arn.rsplit("/", 1)[-1] if principal_arn else None,
                "user": principal_arn.rsplit("/", 1)[-1] if principal_arn else None,
                "userArn": principal_arn,
                "sourceIp": source_ip,
                "userAgent": multi_headers.get("user-agent", [""])[-1],
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "principalOrgId": None,
                "apiKey": None,
                "apiKeyId": None,
            },
        },
    }


@dataclass
class LocalLambdaContext:
    """The slice of ``LambdaContext`` that Powertools and the handler read."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "easel-api-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:local:{ACCOUNT}:function:easel-api-local"
    log_group_name: str = "/aws/lambda/easel-api-local"
    log_stream_name: str = "local"
    timeout_seconds: float = 29.0
    _start: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._start)) * 1000))


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def from_proxy_result(result: Any) -> ProxyResponse:
    """Turn what the handler returned into an HTTP response (502 if it is not a proxy result, as API GW)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return ProxyResponse(
            502,
            [("content-type", "application/json")],
            b'{"error":{"code":"bad_gateway","message":"malformed Lambda proxy response"}}',
        )
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    for name, values in multi.items():
        headers.extend((name, str(v)) for v in values)
    for name, value in (result.get("headers") or {}).items():
        if name not in multi:
            headers.append((name, str(value)))
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return ProxyResponse(result["statusCode"], headers, body)
