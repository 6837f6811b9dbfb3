"""Callers map to tenants for every identity shape API Gateway reports (recorded events, shipped config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from easel.config import EaselConfig, parse_config
from easel.errors import ConfigError
from easel.tenancy import match_names, resolve_tenant
from lambdas.api.deps import Deps
from tests.unit.api.conftest import FakePublisher, invoke

CALLERS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "apigw-callers.json").read_text()
)["cases"]
REQ = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog", "steps": 4}}


def _with_body(ev: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    ev = json.loads(json.dumps(ev))
    ev.update(
        httpMethod="POST", path="/v1/tasks", body=json.dumps(body), pathParameters={"proxy": "v1/tasks"}
    )
    ev["headers"]["Content-Type"] = "application/json"
    ev["multiValueHeaders"]["Content-Type"] = ["application/json"]
    ev["requestContext"].update(httpMethod="POST", path="/prod/v1/tasks")
    return ev


@pytest.mark.parametrize("case", sorted(CALLERS))
def test_recorded_caller_maps_to_its_tenant_or_403(
    case: str, deps: Deps, example_config: EaselConfig
) -> None:
    deps.config = example_config  # the shipped config.yaml, as deployed
    expected, ev = CALLERS[case]["tenant"], CALLERS[case]["event"]
    status, body = invoke(ev)
    publisher = deps.publisher
    assert isinstance(publisher, FakePublisher)
    if expected is None:
        assert (status, body["error"]["code"]) == (403, "unknown_principal")
        # Tenant-readable text carries no ARN and no account id.
        assert "arn:" not in body["error"]["message"]
        assert ev["requestContext"]["identity"]["accountId"] not in json.dumps(body)
        assert invoke(_with_body(ev, REQ))[0] == 403
        assert publisher.messages == []
        return
    assert status == 200 and body["models"]
    status, task = invoke(_with_body(ev, REQ))
    assert (status, task["tenant"]) == (202, expected)
    assert [(m.id, m.tenant) for m in publisher.messages] == [(task["id"], expected)]


def test_assumed_role_matches_on_role_arn_for_any_session() -> None:
    arn = "arn:aws:sts::123456789012:assumed-role/acme-app/any.session=name@x"
    assert match_names(arn) == [arn, "arn:aws:iam::123456789012:role/acme-app"]
    assert (
        match_names("arn:aws-cn:sts::123456789012:assumed-role/r/s")[1]
        == "arn:aws-cn:iam::123456789012:role/r"
    )
    # Users and federated users are matched as they are.
    assert match_names("arn:aws:iam::123456789012:user/ops/alice") == [
        "arn:aws:iam::123456789012:user/ops/alice"
    ]
    cfg = parse_config(
        {
            "tenants": [
                {"id": "pinned", "principals": ["arn:aws:sts::123456789012:assumed-role/app/batch-*"]},
                {"id": "app", "principals": ["arn:aws:iam::123456789012:role/app"]},
            ],
            "models": [{"name": "m", "runtime": "r"}],
            "runtimes": [{"name": "r"}],
        }
    )
    # A pattern on the session ARN still works and, listed first, wins.
    assert resolve_tenant("arn:aws:sts::123456789012:assumed-role/app/batch-7", cfg.tenants) == "pinned"
    assert resolve_tenant("arn:aws:sts::123456789012:assumed-role/app/web-1", cfg.tenants) == "app"
    # The role name must match whole: no prefix or suffix games.
    assert resolve_tenant("arn:aws:sts::123456789012:assumed-role/app2/web-1", cfg.tenants) is None
    assert resolve_tenant("arn:aws:sts::123456789012:assumed-role/app", cfg.tenants) is None
    assert resolve_tenant(None, cfg.tenants) is None


def test_role_pattern_with_iam_path_is_refused_by_config() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "tenants": [{"id": "acme", "principals": ["arn:aws:iam::123456789012:role/teams/acme-*"]}],
                "models": [{"name": "m", "runtime": "r"}],
                "runtimes": [{"name": "r"}],
            }
        )
    assert info.value.key == "tenants.0.principals.0"
    assert "IAM path" in info.value.reason
