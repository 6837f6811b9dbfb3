"""API: the REST API (IAM auth on every method) in front of the API Lambda.

The Lambda is ``lambdas.api.app.handler`` on Python 3.13/arm64 with Powertools from the AWS-managed layer.
The layer ARN is read at deploy time from the public SSM parameter Powertools publishes per architecture,
Python version and release (a CloudFormation parameter of type ``AWS::SSM::Parameter::Value<String>``), so
synth needs no AWS call and the layer is pinned to the same release as the ``lambdas`` extra.
The code asset is staged at synth by :mod:`infra.lambda_bundle` (no Docker).

Routes are declared here one by one (not a ``{proxy+}``) so that API Gateway authorizes and validates each
method before the Lambda runs; ``tests/infra`` checks the list against the Lambda's router.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from easel.config import EaselConfig
from easel.naming import Names
from infra.constructs.compliance import acknowledge
from infra.constructs.functions import PYTHON_RUNTIME, python_function
from infra.lambda_bundle import CONFIG_FILE, HANDLER

# (method, path): the Lambda's routes (lambdas/api/routes); `{id}` is a task id.
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/v1/models"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/{id}"),
    ("POST", "/v1/tasks/{id}/cancel"),
    ("POST", "/v1/uploads"),
    ("POST", "/v1alpha1"),
    ("POST", "/v1alpha2"),
)
# Methods whose body must be a JSON object (the Lambda validates the fields; the edge rejects non-objects).
JSON_BODY_ROUTES = frozenset(
    {("POST", "/v1/tasks"), ("POST", "/v1/uploads"), ("POST", "/v1alpha1"), ("POST", "/v1alpha2")}
)

# Same release as the `lambdas` extra in pyproject.toml (tests check they agree).
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/arm64/{python}/{version}"
SERVICE_NAME = "easel-api"
# One JSON object per request; userArn is what the Lambda maps to a tenant, so it is what an operator
# needs to answer "who sent this".
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "xrayTraceId": "$context.xrayTraceId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "userArn": "$context.identity.userArn",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "error": "$context.error.message",
}
STAGE_NAME = "prod"


class Api(Construct):
    """``rest_api`` (stage ``prod``), ``function`` (the API Lambda), ``usage_plan``, ``cursor_key`` (the
    pagination cursors' HMAC key) and their log groups.

    The stack grants the function its permissions; this construct only passes resource names in.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EaselConfig,
        names: Names,
        table: dynamodb.ITable,
        tasks_topic: sns.ITopic,
        outputs_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        # Signs the pagination cursors the API hands out (easel.store): a cursor a tenant altered, or one
        # issued to another tenant or query, fails its HMAC. Replacing the value only ends open listings.
        self.cursor_key = secretsmanager.Secret(
            self,
            "CursorKey",
            description=f"{names.prefix}: HMAC key of the API's pagination cursors",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        acknowledge(
            self.cursor_key,
            "AwsSolutions-SMG4",
            "The cursor key only authenticates short-lived pagination cursors; replacing it ends the open "
            "listings at once, so it is rotated by an operator step, not on a schedule.",
        )
        self.function_log_group = logs.LogGroup(self, "FunctionLogs", retention=logs.RetentionDays.ONE_MONTH)
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            ssm.StringParameter.value_for_string_parameter(self, powertools_layer_parameter()),
        )
        self.function = python_function(
            self,
            "Function",
            config=config,
            description="Easel API: validate, store and route tasks",
            handler=HANDLER,
            powertools_layer=self.powertools_layer,
            memory_size=512,
            # API Gateway gives up on an integration after 29 s; running longer would only waste money.
            timeout=cdk.Duration.seconds(29),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.function_log_group,
            environment={
                "EASEL_TABLE_NAME": table.table_name,
                "EASEL_TASKS_TOPIC_ARN": tasks_topic.topic_arn,
                "EASEL_OUTPUTS_BUCKET": outputs_bucket.bucket_name,
                # Relative to the working directory, which is LAMBDA_TASK_ROOT (the asset root).
                "EASEL_CONFIG_FILE": CONFIG_FILE,
                "EASEL_CURSOR_KEY_SECRET_ARN": self.cursor_key.secret_arn,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": names.metrics_namespace,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )

        throttle = config.api.throttle
        self.access_log_group = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.THREE_MONTHS)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{names.prefix}-api",
            description="Easel task API (SigV4 / IAM authorization)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Stage execution logs need the account-level CloudWatch role of API Gateway.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies hold prompts: keep them out of the logs
                throttling_rate_limit=throttle.rate_limit,
                throttling_burst_limit=throttle.burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        self.request_validator, self.methods = declare_routes(
            self.rest_api, self.function, authorization_type=apigw.AuthorizationType.IAM
        )

        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            name=f"{names.prefix}-default",
            description="Stage throttle from config api.throttle (attach API keys for per-client quotas)",
            throttle=apigw.ThrottleSettings(rate_limit=throttle.rate_limit, burst_limit=throttle.burst_limit),
            quota=(
                apigw.QuotaSettings(limit=throttle.quota_per_day, period=apigw.Period.DAY)
                if throttle.quota_per_day
                else None
            ),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)],
        )
        self._acknowledge()

    @property
    def url(self) -> str:
        """The stage URL (``https://<id>.execute-api.<region>.amazonaws.com/prod/``)."""
        return self.rest_api.url

    def _acknowledge(self) -> None:
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "Every method requires SigV4 IAM authorization and the stage is throttled; a WAF web ACL adds "
            "a monthly fee per ACL and rule that this deployment leaves to the operator to opt into.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-COG4",
            "Callers authenticate with IAM (SigV4) and are mapped to tenants by principal ARN, so a Cognito "
            "user pool authorizer would be a second, unused identity system.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role must use the AWS managed push-to-logs policy; it "
            "is what the service documents and it only writes API Gateway's own log groups.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM5[Resource::*]",
            "Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which have no resource "
            "level permissions, so AWS requires the wildcard resource for them.",
        )


def declare_routes(
    rest_api: apigw.RestApi, function: lambda_.IFunction, **method_options: Any
) -> tuple[apigw.RequestValidator, dict[tuple[str, str], apigw.Method]]:
    """Every route of :data:`ROUTES` on ``rest_api``, proxied to ``function``, its parameters and JSON bodies
    validated at the edge; ``method_options`` say how callers are authorized (IAM, or the key authorizer)."""
    validator = rest_api.add_request_validator(
        "Validator",
        request_validator_name="body-and-parameters",
        validate_request_body=True,
        validate_request_parameters=True,
    )
    json_object = rest_api.add_model(
        "JsonObject",
        content_type="application/json",
        model_name="JsonObject",
        schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT),
    )
    integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
    methods: dict[tuple[str, str], apigw.Method] = {}
    for method, path in ROUTES:
        resource = rest_api.root.resource_for_path(path)
        params = {"method.request.path.id": True} if "{id}" in path else None
        models = {"application/json": json_object} if (method, path) in JSON_BODY_ROUTES else None
        methods[(method, path)] = resource.add_method(
            method,
            integration,
            request_validator=validator,
            request_parameters=params,
            request_models=models,
            **method_options,
        )
    return validator, methods


def powertools_layer_parameter() -> str:
    """The public SSM parameter holding the Powertools layer ARN for this runtime and release."""
    return POWERTOOLS_LAYER_PARAMETER.format(python=PYTHON_RUNTIME.name, version=POWERTOOLS_VERSION)
