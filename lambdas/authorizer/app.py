"""The API-key authorizer: a REQUEST authorizer (identity source ``x-api-key``) over the hashed keys table.

The decision is :func:`easel.apikeys.authorize` (the local gateway takes the same one); this module turns
it into what API Gateway expects:

- allowed: an Allow policy on the whole stage (API Gateway caches one policy per key and reuses it for
  every method, so a policy naming only the first method would deny the others), ``context`` {tenant,
  key_id} (the API Lambda reads ``requestContext.authorizer.tenant``) and ``usageIdentifierKey``, the value
  of the tenant's API Gateway key, so the tenant's usage plan (throttle, daily quota) applies;
- unknown, revoked, or a tenant without ``api_keys``: a Deny policy (403);
- malformed: ``Unauthorized`` (401), as API Gateway answers a missing header without calling us.

The presented key is never logged: only the key id and the reason.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from easel import apikeys
from easel.apikeys import Decision, KeyStore
from easel.config import EaselConfig, parse_config
from lambdas.logformat import EaselLogFormatter

SERVICE = "easel-authorizer"
logger = Logger(service=SERVICE, logger_formatter=EaselLogFormatter(SERVICE))


class AuthorizerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore")

    api_keys_table: str
    config_file: Path


@dataclass
class Deps:
    config: EaselConfig
    store: KeyStore


_deps: Deps | None = None
_lock = threading.Lock()


def get_deps() -> Deps:
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                import boto3

                settings = AuthorizerSettings()  # fields come from the environment
                config = parse_config(json.loads(settings.config_file.read_text()), str(settings.config_file))
                _deps = Deps(config, KeyStore(boto3.client("dynamodb"), settings.api_keys_table))
    return _deps


def set_deps(deps: Deps | None) -> None:
    global _deps
    _deps = deps


class Unauthorized(Exception):
    """Raised with the message ``Unauthorized``: API Gateway's contract for a 401 from an authorizer."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def stage_resource(method_arn: str) -> str:
    """``arn:...:<api>/<stage>/<VERB>/<path>`` -> ``arn:...:<api>/<stage>/*`` (every method of the stage)."""
    head, _, rest = method_arn.partition(":execute-api:")
    parts = rest.split("/")
    if not head or len(parts) < 2:
        raise ValueError(f"not a method ARN: {method_arn!r}")
    return f"{head}:execute-api:{parts[0]}/{parts[1]}/*"


def presented_key(event: dict[str, Any]) -> str | None:
    headers = event.get("headers") or {}
    return next((v for k, v in headers.items() if k.lower() == apikeys.HEADER), None)


def respond(event: dict[str, Any], deps: Deps) -> dict[str, Any]:
    decision = apikeys.authorize(
        presented_key(event), lookup=deps.store.get, key_tenants=deps.config.key_tenants
    )
    logger.info("api key %s", decision.reason, extra={"key_id": decision.key_id, "tenant": decision.tenant})
    if decision.status == 401:
        raise Unauthorized()
    return policy(decision, event["methodArn"], stack_name=deps.config.stack_name)


def policy(decision: Decision, method_arn: str, *, stack_name: str) -> dict[str, Any]:
    statement = {
        "Action": "execute-api:Invoke",
        "Effect": "Allow" if decision.allowed else "Deny",
        "Resource": stage_resource(method_arn),
    }
    out: dict[str, Any] = {
        "principalId": decision.key_id or "anonymous",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
    }
    if decision.allowed and decision.tenant is not None:
        out["context"] = {"tenant": decision.tenant, "key_id": decision.key_id}
        out["usageIdentifierKey"] = apikeys.usage_identifier(stack_name, decision.tenant)
    return out


@logger.inject_lambda_context(log_event=False)  # the event holds the key: never log it
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return respond(event, get_deps())
