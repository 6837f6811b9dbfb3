"""The key API: same routes as the SigV4 API behind a cached REQUEST authorizer over the hashed keys table,
per-tenant usage plans, least privilege for the authorizer, and nothing of it without a tenant's api_keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from easel import apikeys
from easel.config import load_config
from infra.app import build_app
from infra.constructs.api import JSON_BODY_ROUTES, ROUTES
from infra.constructs.apikeys import HANDLER
from infra.stacks.core import CoreStack
from tests.conftest import TWO_RUNTIMES_CONFIG
from tests.infra.conftest import Synth

pytestmark = [pytest.mark.infra, pytest.mark.slow]


def _key_api(synth: Synth) -> str:
    assert synth.core.api_keys is not None
    return str(synth.resolve(synth.core.api_keys.rest_api.rest_api_id)["Ref"])  # type: ignore[index]


def _of(synth: Synth, type_: str, api_id: str) -> dict[str, dict[str, Any]]:
    resources = synth.resources(synth.core, type_)
    return {k: v for k, v in resources.items() if v["Properties"].get("RestApiId") == {"Ref": api_id}}


def test_the_key_api_serves_every_route_behind_the_cached_key_authorizer(synth: Synth) -> None:
    api_id = _key_api(synth)
    [(authorizer_id, authorizer)] = _of(synth, "AWS::ApiGateway::Authorizer", api_id).items()
    assert authorizer["Properties"]["Type"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.x-api-key"
    ttl = synth.config.api.api_keys.cache_ttl_seconds
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == ttl == 60
    methods = _of(synth, "AWS::ApiGateway::Method", api_id)
    assert len(methods) == len(ROUTES)
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "CUSTOM"
        assert props["AuthorizerId"] == {"Ref": authorizer_id}
        assert props["ApiKeyRequired"] is True
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert "RequestValidatorId" in props
    bodies = [m for m in methods.values() if "RequestModels" in m["Properties"]]
    assert len(bodies) == len(JSON_BODY_ROUTES)
    [api] = [v for k, v in synth.resources(synth.core, "AWS::ApiGateway::RestApi").items() if k == api_id]
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
    assert api["Properties"]["Name"] == f"{synth.config.stack_name}-key-api"
    # The same API Lambda serves both APIs.
    integrations = {json.dumps(m["Properties"]["Integration"]["Uri"]) for m in methods.values()}
    assert len(integrations) == 1 and "ApiFunction" in integrations.pop()


def test_each_key_tenant_has_a_usage_plan_with_its_throttle_quota_and_identifier(synth: Synth) -> None:
    api_id = _key_api(synth)
    plans = {
        p["Properties"]["UsagePlanName"]: p
        for p in synth.resources(synth.core, "AWS::ApiGateway::UsagePlan").values()
        if json.dumps(p["Properties"]["ApiStages"]).count(api_id)
    }
    keyed = [t for t in synth.config.tenants if t.api_keys is not None]
    assert keyed and set(plans) == {f"{synth.config.stack_name}-keys-{t.id}" for t in keyed}
    keys = synth.resources(synth.core, "AWS::ApiGateway::ApiKey")
    values = {k["Properties"]["Value"] for k in keys.values()}
    for tenant in keyed:
        assert tenant.api_keys is not None
        props = plans[f"{synth.config.stack_name}-keys-{tenant.id}"]["Properties"]
        assert props["Throttle"] == {
            "RateLimit": tenant.api_keys.rate_limit,
            "BurstLimit": tenant.api_keys.burst_limit,
        }
        if tenant.api_keys.quota_per_day:
            assert props["Quota"] == {"Limit": tenant.api_keys.quota_per_day, "Period": "DAY"}
        else:
            assert "Quota" not in props
        assert apikeys.usage_identifier(synth.config.stack_name, tenant.id) in values
    assert len(synth.resources(synth.core, "AWS::ApiGateway::UsagePlanKey")) == len(keyed)


def test_refusals_answer_in_the_apis_error_shape(synth: Synth) -> None:
    api_id = _key_api(synth)
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in _of(synth, "AWS::ApiGateway::GatewayResponse", api_id).values()
    }
    assert set(responses) == {"UNAUTHORIZED", "ACCESS_DENIED", "THROTTLED", "QUOTA_EXCEEDED"}
    body = json.loads(responses["ACCESS_DENIED"]["ResponseTemplates"]["application/json"])
    assert body == {"error": dict(zip(("code", "message"), apikeys.REFUSALS[403], strict=True))}
    assert responses["UNAUTHORIZED"]["StatusCode"] == "401"
    assert responses["QUOTA_EXCEEDED"]["StatusCode"] == "429"


def test_the_authorizer_may_only_get_items_of_the_keys_table(synth: Synth) -> None:
    assert synth.core.api_keys is not None
    table_id = synth.resolve(synth.core.api_keys.table.table_arn)
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in synth.resources(synth.core, "AWS::IAM::Policy").items()
        if k.startswith("ApiKeysFunction")
    ]
    assert policies == [[{"Action": "dynamodb:GetItem", "Effect": "Allow", "Resource": table_id}]]
    # Nothing else (the API Lambda, the webhooks Lambda, the workloads) may touch the keys table.
    for key, policy in synth.resources(synth.core, "AWS::IAM::Policy").items():
        if not key.startswith("ApiKeysFunction"):
            assert json.dumps(table_id) not in json.dumps(policy), key
    functions = synth.resources(synth.core, "AWS::Lambda::Function")
    [fn] = [f for f in functions.values() if f["Properties"].get("Handler") == HANDLER]
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["EASEL_API_KEYS_TABLE"] == {"Ref": str(table_id["Fn::GetAtt"][0])}  # type: ignore[index]
    tables = synth.resources(synth.core, "AWS::DynamoDB::Table")
    [keys_table] = [
        t for t in tables.values() if t["Properties"].get("TableName") == synth.names.api_keys_table
    ]
    assert keys_table["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }
    assert [a["AttributeName"] for a in keys_table["Properties"]["KeySchema"]] == [apikeys.PARTITION_KEY]


def test_the_key_api_logs_tenant_and_key_id_never_the_key(synth: Synth) -> None:
    stages = _of(synth, "AWS::ApiGateway::Stage", _key_api(synth))
    [stage] = stages.values()
    fields = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
    assert fields["tenant"] == "$context.authorizer.tenant" and "userArn" not in fields
    assert "x-api-key" not in json.dumps(fields).lower()
    assert stage["Properties"]["MethodSettings"][0]["DataTraceEnabled"] is False
    synth.core_template.has_output("KeyApiEndpoint", Match.any_value())


def test_the_key_apis_5xx_are_alarmed(synth: Synth) -> None:
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in synth.resources(synth.core, "AWS::CloudWatch::Alarm").values()
    }
    props = alarms[f"{synth.names.prefix}-key-api-5xx"]
    assert props["MetricName"] == "5XXError"
    assert props["Dimensions"] == [{"Name": "ApiName", "Value": f"{synth.config.stack_name}-key-api"}]


def test_no_key_api_without_a_tenant_that_takes_keys(tmp_path: Any) -> None:
    data = load_config(TWO_RUNTIMES_CONFIG).model_dump(mode="json")
    for tenant in data["tenants"]:
        tenant["api_keys"] = None
    from easel.config import parse_config

    app = build_app(parse_config(data), outdir=tmp_path, nag=False)
    core = app.node.find_child(data["stack_name"])
    assert isinstance(core, CoreStack) and core.api_keys is None
    template = app.synth().get_stack_by_name(core.stack_name).template
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGateway::Authorizer"]
