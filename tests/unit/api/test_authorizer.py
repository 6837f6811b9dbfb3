"""The API-key authorizer Lambda's answers, and how the API Lambda maps an authorizer's context to a tenant."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from easel import apikeys
from easel.apikeys import KeyRecord, mint
from easel.config import EaselConfig
from lambdas.api.deps import Deps
from lambdas.authorizer import app as authorizer
from tests.unit.api.conftest import ACME_ARN, event, invoke

pytestmark = pytest.mark.unit

METHOD_ARN = "arn:aws:execute-api:us-west-2:123456789012:abc123/prod/POST/v1/tasks"


class Store:
    def __init__(self, *records: KeyRecord) -> None:
        self.records = {r.key_id: r for r in records}

    def get(self, key_id: str) -> KeyRecord | None:
        return self.records.get(key_id)


def _request(key: str | None, header: str = "x-api-key") -> dict[str, Any]:
    headers = {header: key} if key is not None else {}
    return {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": headers, "requestContext": {}}


def _deps(config: EaselConfig, *records: KeyRecord) -> authorizer.Deps:
    return authorizer.Deps(config, Store(*records))  # type: ignore[arg-type]


def test_a_valid_key_is_allowed_on_the_whole_stage_with_its_tenant_and_usage_plan(
    two_runtimes_config: EaselConfig,
) -> None:
    new = mint("acme")
    answer = authorizer.respond(_request(new.key, "X-Api-Key"), _deps(two_runtimes_config, new.record))
    assert answer == {
        "principalId": new.record.key_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    # The cached policy serves every method of the stage, not only the first one called.
                    "Resource": "arn:aws:execute-api:us-west-2:123456789012:abc123/prod/*",
                }
            ],
        },
        "context": {"tenant": "acme", "key_id": new.record.key_id},
        "usageIdentifierKey": apikeys.usage_identifier("easel2", "acme"),
    }


def test_a_revoked_or_unknown_key_is_denied_and_a_malformed_one_unauthorized(
    two_runtimes_config: EaselConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    revoked = mint("acme")
    deps = _deps(two_runtimes_config, revoked.record.model_copy(update={"revoked_at": "2026-01-01"}))
    for key in (revoked.key, mint("globex").key):
        answer = authorizer.respond(_request(key), deps)
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert "context" not in answer and "usageIdentifierKey" not in answer
    for key in ("nope", None):
        with pytest.raises(authorizer.Unauthorized, match=r"^Unauthorized$"):
            authorizer.respond(_request(key), deps)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert revoked.record.key_id in logged and revoked.key not in logged


def test_stage_resource() -> None:
    assert authorizer.stage_resource(METHOD_ARN).endswith(":abc123/prod/*")
    with pytest.raises(ValueError, match="method ARN"):
        authorizer.stage_resource("arn:aws:lambda:us-west-2:1:function:x")


# -- the API Lambda: requestContext.authorizer.tenant -----------------------------------------------------
def _keyed(
    method: str, path: str, context: dict[str, Any], arn: str | None = None, **kw: Any
) -> dict[str, Any]:
    ev = event(method, path, arn=arn, **kw)
    ev["requestContext"]["authorizer"] = context
    return ev


def test_the_api_takes_the_tenant_from_the_authorizer_context(deps: Deps) -> None:
    status, body = invoke(_keyed("GET", "/v1/tasks", {"tenant": "globex", "key_id": "k"}))
    assert (status, body["tasks"]) == (200, [])


@pytest.mark.parametrize(
    ("context", "arn"),
    [
        ({"tenant": "initech", "key_id": "k"}, None),  # not a tenant of the config
        ({"tenant": "acme", "key_id": "k"}, ACME_ARN),  # both an authorizer and an IAM caller
    ],
)
def test_an_authorizer_context_that_fits_no_key_tenant_is_403(
    deps: Deps, context: dict[str, Any], arn: str | None
) -> None:
    status, body = invoke(_keyed("GET", "/v1/tasks", context, arn=arn))
    assert (status, body["error"]["code"], body["error"]["field"]) == (403, "unknown_key", "x-api-key")


def test_a_tenant_without_api_keys_is_403_even_with_an_authorizer_context(
    deps: Deps, example_config: EaselConfig
) -> None:
    deps.config = example_config  # acme there takes no API keys
    status, body = invoke(_keyed("GET", "/v1/tasks", {"tenant": "acme", "key_id": "k"}))
    assert (status, body["error"]["code"]) == (403, "unknown_key")
    status, _ = invoke(_keyed("GET", "/v1/tasks", {"tenant": "globex", "key_id": "k"}))
    assert status == 200


def test_headers_cannot_stand_in_for_the_authorizer_context(deps: Deps) -> None:
    ev = event("GET", "/v1/tasks", arn=None, headers={"x-api-key": mint("acme").key, "tenant": "acme"})
    status, body = invoke(ev)
    assert (status, body["error"]["code"]) == (403, "unknown_principal")
