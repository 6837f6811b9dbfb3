"""Webhooks: the Lambda on the results topic, its master secret, retries to an alarmed failure queue, grants."""

from __future__ import annotations

import base64
import json
import secrets
import string
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from easel.config import load_config
from easel.contract import Task, TaskStatus, parse_task_request
from easel.webhook_signing import derive_tenant_secret, verify
from infra.constructs.webhooks import (
    DELIVERY_TIMEOUT_SECONDS,
    HANDLER,
    MASTER_KEY_LENGTH,
    RETRY_ATTEMPTS,
    WEBHOOK_STATUSES,
)
from infra.lambda_bundle import HANDLER as API_HANDLER
from infra.lambda_bundle import stage_api_bundle
from lambdas.webhooks.app import WebhookSettings, _load_master
from lambdas.webhooks.service import event_of
from tests.conftest import EXAMPLE_CONFIG
from tests.infra.conftest import Synth
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.infra


# -- template helpers ------------------------------------------------------------------------------------
def _function(synth: Synth, handler: str) -> tuple[str, dict[str, Any]]:
    found = [
        (k, v["Properties"])
        for k, v in synth.resources(synth.core, "AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == handler
    ]
    assert len(found) == 1, f"functions with handler {handler}: {[k for k, _ in found]}"
    return found[0]


def _one(synth: Synth, type_: str) -> tuple[str, dict[str, Any]]:
    found = synth.resources(synth.core, type_)
    if type_ == "AWS::SecretsManager::Secret":  # the API's cursor key is the stack's other secret
        found = {k: v for k, v in found.items() if k.startswith("Webhooks")}
    assert len(found) == 1, f"{type_}: {list(found)}"
    key, value = next(iter(found.items()))
    return key, value


def _by_name(synth: Synth, type_: str, name_key: str, name: str) -> str:
    found = [
        k for k, v in synth.resources(synth.core, type_).items() if v["Properties"].get(name_key) == name
    ]
    assert len(found) == 1, f"{type_} {name}: {found}"
    return found[0]


def _policies_of(synth: Synth, function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Role"]["Fn::GetAtt"][0]
    return [
        p["Properties"]["PolicyDocument"]
        for p in synth.resources(synth.core, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


# -- the function ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_function_shares_the_api_lambdas_asset_runtime_and_layer(synth: Synth) -> None:
    _, webhooks = _function(synth, HANDLER)
    _, api = _function(synth, API_HANDLER)
    assert webhooks["Runtime"] == "python3.13" == api["Runtime"]
    assert webhooks["Architectures"] == ["arm64"] == api["Architectures"]
    assert webhooks["Layers"][: len(api["Layers"])] == api["Layers"]  # + the ADOT layer (tracing, below)
    assert webhooks["Code"] == api["Code"]  # one staged asset, one S3 object
    assert webhooks["Timeout"] == 30
    secret_id, _ = _one(synth, "AWS::SecretsManager::Secret")
    env = webhooks["Environment"]["Variables"]
    assert env["EASEL_WEBHOOK_SECRET_ARN"] == {"Ref": secret_id}
    assert env["POWERTOOLS_SERVICE_NAME"] == "easel-webhooks"
    # One delivery attempt fits several times into one invocation.
    assert float(env["EASEL_WEBHOOK_TIMEOUT_SECONDS"]) == DELIVERY_TIMEOUT_SECONDS < webhooks["Timeout"] / 2
    assert "EASEL_WEBHOOK_SECRET" not in env  # the key itself never lands in the template


@pytest.mark.slow
def test_delivery_spans_reach_x_ray_through_the_adot_layer(synth: Synth) -> None:
    """The function continues the task's trace (lambdas.webhooks.spans) with the OpenTelemetry SDK and the
    collector extension of the ADOT layer, which exports to X-Ray with the rights active tracing grants."""
    _, fn = _function(synth, HANDLER)
    _, api = _function(synth, API_HANDLER)
    assert fn["TracingConfig"] == {"Mode": "Active"}
    [adot] = [layer for layer in fn["Layers"] if layer not in api["Layers"]]
    resolved = json.dumps(synth.resolve(adot))
    # The pinned ADOT release (webhooks.ADOT_PYTHON_LAYER) for arm64; CDK maps it to the deploying region's ARN.
    assert "aws-otel-python-arm64-ver-1-29-0" in resolved, resolved
    env = fn["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/otel-instrument"
    assert env["OTEL_SERVICE_NAME"] == "easel-webhooks"
    # Our trace ids never travel to a tenant's receiver as traceparent headers.
    assert {"httpx", "urllib3"} <= set(env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"].split(","))
    [policy] = _policies_of(synth, fn)
    xray = [s for s in policy["Statement"] if s["Resource"] == "*"]
    assert len(xray) == 1
    assert sorted(_actions(xray[0])) == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]


@pytest.mark.slow
def test_function_is_subscribed_to_the_results_topic_for_event_statuses(synth: Synth) -> None:
    fn_id, _ = _function(synth, HANDLER)
    results = _by_name(synth, "AWS::SNS::Topic", "TopicName", synth.names.results_topic)
    subs = [
        s["Properties"]
        for s in synth.resources(synth.core, "AWS::SNS::Subscription").values()
        if s["Properties"]["Endpoint"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    ]
    assert len(subs) == 1
    [sub] = subs
    assert sub["Protocol"] == "lambda"
    assert sub["TopicArn"] == {"Ref": results}
    assert sub["FilterPolicy"] == {"status": list(WEBHOOK_STATUSES)}
    permissions = [
        p["Properties"]
        for p in synth.resources(synth.core, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [fn_id, "Arn"]},
            "Principal": "sns.amazonaws.com",
            "SourceArn": {"Ref": results},
        }
    ]


def test_filter_lets_through_exactly_the_statuses_that_become_events() -> None:
    req = parse_task_request({"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "p"}})
    evented = {
        str(status)
        for status in TaskStatus
        if event_of(
            Task(
                id="t1",
                tenant="acme",
                status=status,
                task_type=req.task_type,
                model="sd15",
                runtime="sd15",
                priority=req.priority,
                input=req.input,
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        is not None
    }
    assert set(WEBHOOK_STATUSES) == evented


# -- retries, failure queue, alarm -----------------------------------------------------------------------
@pytest.mark.slow
def test_failed_deliveries_retry_twice_then_land_in_the_encrypted_failure_queue(synth: Synth) -> None:
    fn_id, _ = _function(synth, HANDLER)
    queue_id = _by_name(synth, "AWS::SQS::Queue", "QueueName", synth.names.webhooks_failure_queue)
    _, config = _one(synth, "AWS::Lambda::EventInvokeConfig")
    assert config["Properties"]["FunctionName"] == {"Ref": fn_id}
    assert config["Properties"]["MaximumRetryAttempts"] == RETRY_ATTEMPTS == 2
    assert config["Properties"]["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}
    }
    queue = synth.resources(synth.core, "AWS::SQS::Queue")[queue_id]["Properties"]
    lane_queue = _by_name(synth, "AWS::SQS::Queue", "QueueName", synth.names.unroutable_queue)
    # The same customer-managed key as every other queue.
    assert (
        queue["KmsMasterKeyId"]
        == synth.resources(synth.core, "AWS::SQS::Queue")[lane_queue]["Properties"]["KmsMasterKeyId"]
    )
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600


@pytest.mark.slow
def test_any_failed_delivery_alarms_to_the_alarms_topic(synth: Synth) -> None:
    queue_id = _by_name(synth, "AWS::SQS::Queue", "QueueName", synth.names.webhooks_failure_queue)
    alarms_topic = _by_name(synth, "AWS::SNS::Topic", "TopicName", synth.names.alarms_topic)
    alarm_id = _by_name(synth, "AWS::CloudWatch::Alarm", "AlarmName", f"{synth.names.prefix}-webhooks-dlq")
    alarm = synth.resources(synth.core, "AWS::CloudWatch::Alarm")[alarm_id]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 0
    assert alarm["AlarmActions"] == [{"Ref": alarms_topic}]


# -- least privilege -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_function_may_only_read_its_secret_and_send_failures(synth: Synth) -> None:
    _, fn = _function(synth, HANDLER)
    secret_id, _ = _one(synth, "AWS::SecretsManager::Secret")
    queue_id = _by_name(synth, "AWS::SQS::Queue", "QueueName", synth.names.webhooks_failure_queue)
    queue_key = synth.resources(synth.core, "AWS::SQS::Queue")[queue_id]["Properties"]["KmsMasterKeyId"]
    [policy] = _policies_of(synth, fn)
    by_resource = {
        json.dumps(s["Resource"], sort_keys=True): sorted(_actions(s))
        for s in policy["Statement"]
        if s["Effect"] == "Allow"
    }
    # Active tracing's two X-Ray writes are the only wildcard resource (they have no other).
    assert by_resource.pop('"*"') == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    assert by_resource == {
        json.dumps({"Ref": secret_id}): ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
        json.dumps({"Fn::GetAtt": [queue_id, "Arn"]}, sort_keys=True): [
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:SendMessage",
        ],
        json.dumps(queue_key, sort_keys=True): ["kms:Decrypt", "kms:GenerateDataKey"],
    }
    assert not any("*" in a for s in policy["Statement"] for a in _actions(s))
    # The managed policy is only the basic execution role (its own log streams).
    role_id = fn["Role"]["Fn::GetAtt"][0]
    role = synth.resources(synth.core, "AWS::IAM::Role")[role_id]["Properties"]
    assert len(role["ManagedPolicyArns"]) == 1
    assert "service-role/AWSLambdaBasicExecutionRole" in json.dumps(role["ManagedPolicyArns"])


@pytest.mark.slow
def test_only_the_webhooks_function_can_read_the_secret(synth: Synth) -> None:
    _, fn = _function(synth, HANDLER)
    secret_id, _ = _one(synth, "AWS::SecretsManager::Secret")
    own = _policies_of(synth, fn)
    for stack in (synth.core, synth.compute):
        for key, policy in synth.resources(stack, "AWS::IAM::Policy").items():
            document = policy["Properties"]["PolicyDocument"]
            if secret_id in json.dumps(document):
                assert stack is synth.core and document in own, key
    assert not synth.resources(synth.core, "AWS::SecretsManager::ResourcePolicy")
    # The secret's value is not used anywhere else in the templates either (only its ARN, by Ref).
    for stack in (synth.core, synth.compute):
        assert "resolve:secretsmanager" not in json.dumps(synth.template_json(stack))


# -- the master secret -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_master_secret_is_generated_kept_and_named_in_an_output(example_synth: Synth) -> None:
    secret_id, secret = _one(example_synth, "AWS::SecretsManager::Secret")
    assert secret["DeletionPolicy"] == "Retain"
    assert secret["Properties"]["GenerateSecretString"] == {
        "ExcludePunctuation": True,
        "IncludeSpace": False,
        "PasswordLength": MASTER_KEY_LENGTH,
    }
    outputs = example_synth.template_json(example_synth.core)["Outputs"]
    assert outputs["WebhookSecretArn"]["Value"] == {"Ref": secret_id}
    assert "easel webhooks secret" in outputs["WebhookSecretArn"]["Description"]


def test_a_generated_master_key_is_base64_the_lambda_decodes() -> None:
    """Secrets Manager draws letters and digits; a multiple of 4 of them is unpadded base64."""
    assert MASTER_KEY_LENGTH % 4 == 0
    alphabet = string.ascii_letters + string.digits
    for _ in range(200):
        value = "".join(secrets.choice(alphabet) for _ in range(MASTER_KEY_LENGTH))
        master = _load_master(WebhookSettings(secret=value))
        assert len(master) == MASTER_KEY_LENGTH // 4 * 3 == 33
        assert base64.b64encode(master).decode() == value


# -- the code asset runs with only the layer and the runtime ---------------------------------------------
# What the AWS-managed Powertools layer (built from aws-lambda-powertools[all]) and the Lambda Python
# runtime (boto3) provide; everything else must come from the bundle.
LAYER_AND_RUNTIME = (
    "aws_lambda_powertools",
    "pydantic",
    "pydantic_core",
    "typing_extensions.py",
    "annotated_types",
    "aws_xray_sdk",
    "wrapt",
    "jmespath",
    "boto3",
    "botocore",
    "s3transfer",
    "dateutil",
    "urllib3",
    "six.py",
)
PROBE = """
import json, os, sys
from types import SimpleNamespace
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import certifi, httpx
from lambdas.webhooks.app import handler
context = SimpleNamespace(function_name="webhooks", memory_limit_in_mb=256, aws_request_id="r1",
                          invoked_function_arn="arn:aws:lambda:us-west-2:000000000000:function:webhooks")
event = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn",
                      "Sns": {"Type": "Notification", "MessageId": "m1", "TopicArn": "arn", "Subject": None,
                              "Message": sys.argv[3], "Timestamp": "2026-01-01T00:00:00.000Z",
                              "SignatureVersion": "1", "Signature": "", "SigningCertUrl": "",
                              "UnsubscribeUrl": "", "MessageAttributes": {}}}]}
print(json.dumps({"result": handler(event, context), "files": [httpx.__file__, certifi.where()]}))
"""


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.mark.slow
def test_bundle_delivers_a_signed_webhook_with_only_the_layer_and_runtime(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    bundle = stage_api_bundle(load_config(EXAMPLE_CONFIG), tmp_path / "bundle")
    site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    layer = tmp_path / "layer"
    layer.mkdir()
    for name in LAYER_AND_RUNTIME:
        (layer / name).symlink_to(site / name)
    master = secrets.token_bytes(32)
    req = parse_task_request({"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "p"}})
    task = Task(
        id="t1",
        tenant="acme",
        status=TaskStatus.SUCCEEDED,
        task_type=req.task_type,
        model="sd15",
        runtime="sd15",
        priority=req.priority,
        input=req.input,
        webhook=f"{receiver.origin}/hook",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    env = {
        "EASEL_WEBHOOK_SECRET": base64.b64encode(master).decode(),
        "EASEL_WEBHOOK_TEST_INSECURE_ORIGINS": receiver.origin,
        "AWS_REGION": "us-west-2",
        "POWERTOOLS_SERVICE_NAME": "easel-webhooks",
        "PATH": "/usr/bin:/bin",
    }
    # -S: no site-packages, so neither the editable install of this repo nor the venv is visible.
    proc = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(bundle), str(layer), task.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"] == {"results": ["delivered"]}
    assert all(f.startswith(str(bundle)) for f in out["files"])  # httpx and its CA bundle are vendored
    [(headers, body)] = receiver.requests
    assert verify(
        derive_tenant_secret(master, "acme"),
        headers["webhook-id"],
        int(headers["webhook-timestamp"]),
        body,
        headers["webhook-signature"],
    )
