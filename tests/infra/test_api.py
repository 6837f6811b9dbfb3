"""API: IAM auth and validation on every method, throttling, logging, tracing; the Lambda and its grants."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from easel.config import load_config
from infra.constructs.api import POWERTOOLS_VERSION, ROUTES, powertools_layer_parameter
from infra.lambda_bundle import CONFIG_FILE, HANDLER, stage_api_bundle
from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra


def sigv4_api_id(synth: Synth) -> str:
    """The logical id of the SigV4 API (the key API, when there is one, is tests/infra/test_apikeys.py's)."""
    return str(synth.resolve(synth.core.api.rest_api.rest_api_id)["Ref"])  # type: ignore[index]


def of_api(resources: dict[str, dict[str, Any]], api_id: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Properties"].get("RestApiId") == {"Ref": api_id}}


@pytest.mark.slow
def test_every_method_requires_iam_auth_and_is_validated(synth: Synth) -> None:
    api_id = sigv4_api_id(synth)
    methods = of_api(synth.resources(synth.core, "AWS::ApiGateway::Method"), api_id)
    assert len(methods) == len(ROUTES)
    validators = of_api(synth.resources(synth.core, "AWS::ApiGateway::RequestValidator"), api_id)
    assert [v["Properties"]["ValidateRequestBody"] for v in validators.values()] == [True]
    validator_id = next(iter(validators))
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props["RequestValidatorId"] == {"Ref": validator_id}
        assert props["Integration"]["Type"] == "AWS_PROXY"


@pytest.mark.slow
def test_task_bodies_must_be_json_objects_and_ids_are_required(example_synth: Synth) -> None:
    template = example_synth.core_template
    api_id = {"Ref": sigv4_api_id(example_synth)}
    template.resource_properties_count_is(
        "AWS::ApiGateway::Method",
        {"RestApiId": api_id, "HttpMethod": "POST", "RequestModels": {"application/json": Match.any_value()}},
        4,  # POST /v1/tasks, /v1/uploads, /v1alpha1 and /v1alpha2
    )
    template.resource_properties_count_is(
        "AWS::ApiGateway::Method",
        {"RestApiId": api_id, "RequestParameters": {"method.request.path.id": True}},
        2,
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Model",
        {"ContentType": "application/json", "Schema": Match.object_like({"type": "object"})},
    )


def test_routes_match_the_lambda_router() -> None:
    """API Gateway only forwards declared routes; they must be exactly the ones the Lambda serves."""
    from lambdas.api.app import app

    routes = [*app._static_routes, *app._dynamic_routes]
    served = {(str(route.method).upper(), _unregex(route.rule.pattern)) for route in routes}
    assert served == set(ROUTES)


def _unregex(pattern: str) -> str:
    """Powertools compiles `/v1/tasks/<id>` to `^/v1/tasks/(?P<id>[...]+)/*$`; undo that."""
    path = pattern.removeprefix("^").removesuffix("$").removesuffix("/*")
    return re.sub(r"\(\?P<(\w+)>\[.*?\]\+\)", r"{\1}", path)


@pytest.mark.slow
def test_stage_throttles_traces_and_logs(synth: Synth) -> None:
    throttle = synth.config.api.throttle
    synth.core_template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "prod",
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp("userArn"),
            },
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "ThrottlingRateLimit": throttle.rate_limit,
                        "ThrottlingBurstLimit": throttle.burst_limit,
                        "LoggingLevel": "ERROR",
                        "DataTraceEnabled": False,
                    }
                )
            ],
        },
    )
    synth.core_template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": throttle.rate_limit, "BurstLimit": throttle.burst_limit}},
    )


@pytest.mark.slow
def test_api_lambda_runtime_layer_and_environment(synth: Synth) -> None:
    synth.core_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Runtime": "python3.13",
            "Architectures": ["arm64"],
            "TracingConfig": {"Mode": "Active"},
            "Layers": [{"Ref": Match.string_like_regexp("^SsmParameterValueawsservicepowertools")}],
            "Environment": {
                "Variables": {
                    "EASEL_TABLE_NAME": Match.any_value(),
                    "EASEL_TASKS_TOPIC_ARN": Match.any_value(),
                    "EASEL_OUTPUTS_BUCKET": Match.any_value(),
                    "EASEL_CONFIG_FILE": CONFIG_FILE,
                    "EASEL_CURSOR_KEY_SECRET_ARN": Match.any_value(),
                    "POWERTOOLS_SERVICE_NAME": "easel-api",
                    "POWERTOOLS_METRICS_NAMESPACE": "Easel",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                }
            },
        },
    )
    # The layer ARN is resolved by CloudFormation from the public SSM parameter: no lookup at synth.
    params = synth.template_json(synth.core)["Parameters"]
    assert any(
        p["Type"] == "AWS::SSM::Parameter::Value<String>" and p["Default"] == powertools_layer_parameter()
        for p in params.values()
    )


@pytest.mark.slow
def test_api_lambda_may_only_touch_the_table_tasks_topic_and_tenant_outputs(example_synth: Synth) -> None:
    synth = example_synth
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in synth.resources(synth.core, "AWS::IAM::Policy").items()
        if k.startswith("ApiFunction")
    ]
    assert len(policies) == 1
    actions = sorted(a for s in policies[0] for a in _list(s["Action"]))
    assert actions == sorted(
        [
            "xray:PutTelemetryRecords",
            "xray:PutTraceSegments",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "sns:Publish",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "s3:GetObject",
            "s3:PutObject",
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
        ]
    )
    s3_statement = next(s for s in policies[0] if s["Action"] == "s3:GetObject")
    assert json.dumps(s3_statement["Resource"]).endswith('/tenants/*"]]}')
    put = next(s for s in policies[0] if s["Action"] == "s3:PutObject")
    assert json.dumps(put["Resource"]).endswith('/tenants/*/inputs/*"]]}')
    # The only secret it reads is its own cursor key.
    [secret_statement] = [s for s in policies[0] if "secretsmanager:GetSecretValue" in _list(s["Action"])]
    [cursor_key] = [k for k in synth.resources(synth.core, "AWS::SecretsManager::Secret") if "CursorKey" in k]
    assert secret_statement["Resource"] == {"Ref": cursor_key}


@pytest.mark.slow
def test_api_lambda_reads_its_cursor_key_from_a_generated_secret(synth: Synth) -> None:
    [(key, secret)] = [
        (k, v)
        for k, v in synth.resources(synth.core, "AWS::SecretsManager::Secret").items()
        if "CursorKey" in k
    ]
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    functions = synth.resources(synth.core, "AWS::Lambda::Function")
    [api] = [f for f in functions.values() if f["Properties"].get("Handler") == HANDLER]
    assert api["Properties"]["Environment"]["Variables"]["EASEL_CURSOR_KEY_SECRET_ARN"] == {"Ref": key}
    # By reference only: the key's value never appears in a template.
    assert "resolve:secretsmanager" not in json.dumps(synth.template_json(synth.core))


def test_powertools_layer_matches_the_lambdas_extra_pin() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["optional-dependencies"]["lambdas"] if "powertools" in d]
    assert pins and all(p.endswith(f"=={POWERTOOLS_VERSION}") for p in pins)
    assert (
        powertools_layer_parameter()
        == f"/aws/service/powertools/python/arm64/python3.13/{POWERTOOLS_VERSION}"
    )


def test_bundle_holds_handler_core_vendored_deps_and_config(tmp_path: Path) -> None:
    config = load_config(EXAMPLE_CONFIG)
    bundle = stage_api_bundle(config, tmp_path / "bundle")
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"lambdas/api/app.py", "easel/config.py", "easel/store.py", CONFIG_FILE} <= files
    assert {"yaml/__init__.py", "pydantic_settings/__init__.py", "dotenv/__init__.py"} <= files
    assert not any(f.startswith(("easel/cli/", "bench/")) for f in files)
    assert {"httpx/__init__.py", "certifi/cacert.pem"} <= files  # the webhooks Lambda's HTTP client
    data = {CONFIG_FILE, "certifi/cacert.pem"}
    assert all(f.endswith(".py") or f in data for f in files), "only sources, the config and CA bundle"
    assert json.loads((bundle / CONFIG_FILE).read_text()) == config.model_dump(mode="json")


@pytest.mark.slow
def test_bundle_imports_without_the_repo_or_compiled_yaml(tmp_path: Path) -> None:
    """The handler imports from the bundle alone, plus what the Powertools layer and runtime provide."""
    bundle = stage_api_bundle(load_config(EXAMPLE_CONFIG), tmp_path / "bundle")
    site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "import lambdas.api.app, yaml, pydantic_settings, easel;"
        "from lambdas.api.deps import load_config_json;"
        "from pathlib import Path;"
        "assert load_config_json(Path(sys.argv[1], 'easel_config.json')).stack_name == 'easel';"
        "print(easel.__file__, yaml.__file__, yaml.__with_libyaml__)"
    )
    # -S: no site-packages processing, so the editable install of this repo is invisible.
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(bundle), str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert out[0].startswith(str(bundle)) and out[1].startswith(str(bundle))
    assert out[2] == "False"  # pure-Python PyYAML (the x86_64 C extension is not shipped)


def _list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
