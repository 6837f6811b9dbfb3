"""API keys: the key API (``x-api-key``), its REQUEST authorizer, the hashed keys table, usage plans.

API Gateway authorizes a method one way: IAM (SigV4) or a Lambda authorizer, not both. So key callers get
a second REST API, ``<prefix>-key-api``, with exactly the routes of the SigV4 one (:data:`ROUTES`, the same
validation, the same API Lambda): a client of the reference system changes its base URL and keeps its
paths, bodies and ``x-api-key`` header. The Lambda maps both to the same tenant (``lambdas/api/http.py``).

- ``table``: one item per key (``easel/apikeys.py``): key id, tenant, SHA-256 digest, dates; never a key.
  Fixed name (``Names.api_keys_table``) so ``easel keys`` finds it; point-in-time recovery; destroyed with
  the stack (its keys open an API that is then gone).
- ``function``: ``lambdas.authorizer.app.handler``, which may only ``dynamodb:GetItem`` on ``table``.
- ``authorizer``: REQUEST, identity source ``method.request.header.x-api-key``, results cached
  ``api.api_keys.cache_ttl_seconds`` per key (``easel keys revoke`` flushes the stage's cache).
- ``rest_api``: key source ``AUTHORIZER``, every method CUSTOM-authorized and API-key-required, so the
  ``usageIdentifierKey`` the authorizer returns selects the tenant's usage plan.
- ``usage_plans``: per tenant with ``api_keys``, throttle and daily quota, each holding one API Gateway API
  key whose value is :func:`easel.apikeys.usage_identifier` (an identifier the authorizer returns, not a
  credential: with key source ``AUTHORIZER`` API Gateway never compares a client's header with it).
- Gateway responses for 401, 403 and the usage plans' 429s in the API's own error shape.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from easel import apikeys
from easel.config import EaselConfig
from easel.naming import Names
from infra.constructs.api import ACCESS_LOG_FIELDS, STAGE_NAME, declare_routes
from infra.constructs.compliance import acknowledge
from infra.constructs.functions import python_function
from infra.lambda_bundle import CONFIG_FILE

HANDLER = "lambdas.authorizer.app.handler"
SERVICE_NAME = "easel-authorizer"
# The authorizer's one action: read a key's item by id.
AUTHORIZER_TABLE_ACTIONS = ("dynamodb:GetItem",)
# Who called, for the access log: the key's tenant and id (from the authorizer's context), never the key.
KEY_ACCESS_LOG_FIELDS = {
    **{k: v for k, v in ACCESS_LOG_FIELDS.items() if k != "userArn"},
    "tenant": "$context.authorizer.tenant",
    "keyId": "$context.authorizer.principalId",
}
# API Gateway's refusals on the key API -> (status, the key of easel.apikeys.REFUSALS).
GATEWAY_RESPONSES: dict[str, tuple[apigw.ResponseType, str, int | str]] = {
    "Unauthorized": (apigw.ResponseType.UNAUTHORIZED, "401", 401),
    "AccessDenied": (apigw.ResponseType.ACCESS_DENIED, "403", 403),
    "Throttled": (apigw.ResponseType.THROTTLED, "429", "throttled"),
    "QuotaExceeded": (apigw.ResponseType.QUOTA_EXCEEDED, "429", "quota_exceeded"),
}


class ApiKeys(Construct):
    """``table``, ``function`` (the authorizer), ``authorizer``, ``rest_api`` (stage ``prod``),
    ``usage_plans`` (tenant -> plan). The stack grants the authorizer its read of ``table``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EaselConfig,
        names: Names,
        api_function: lambda_.IFunction,
        powertools_layer: lambda_.ILayerVersion,
        after: Construct,
    ) -> None:
        """``after``: the SigV4 API's stage, deployed first (it sets up API Gateway's account-level logging
        role that this stage's execution logs need)."""
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Keys",
            table_name=names.api_keys_table,
            partition_key=dynamodb.Attribute(name=apikeys.PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.table.add_global_secondary_index(
            index_name=apikeys.GSI_BY_TENANT,
            partition_key=dynamodb.Attribute(name="tenant", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
        )
        self.function_log_group = logs.LogGroup(self, "FunctionLogs", retention=logs.RetentionDays.ONE_MONTH)
        self.function = python_function(
            self,
            "Function",
            config=config,
            description="Easel API-key authorizer: x-api-key -> tenant (keys stored hashed)",
            handler=HANDLER,
            powertools_layer=powertools_layer,
            memory_size=256,
            timeout=cdk.Duration.seconds(10),
            log_group=self.function_log_group,
            environment={
                "EASEL_API_KEYS_TABLE": self.table.table_name,
                "EASEL_CONFIG_FILE": CONFIG_FILE,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "Authorizer",
            handler=self.function,
            identity_sources=[apigw.IdentitySource.header(apikeys.HEADER)],
            results_cache_ttl=cdk.Duration.seconds(config.api.api_keys.cache_ttl_seconds),
        )

        throttle = config.api.throttle
        self.access_log_group = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.THREE_MONTHS)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=names.key_api,
            description="Easel task API for API-key clients (x-api-key; same routes as the SigV4 API)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            cloud_watch_role=False,  # the account-level role comes with the SigV4 API
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies hold prompts, headers the keys: keep both out of logs
                throttling_rate_limit=throttle.rate_limit,
                throttling_burst_limit=throttle.burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(KEY_ACCESS_LOG_FIELDS)),
            ),
        )
        self.rest_api.deployment_stage.node.add_dependency(after)
        self.request_validator, self.methods = declare_routes(
            self.rest_api,
            api_function,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            authorizer=self.authorizer,
            api_key_required=True,
        )
        for response_id, (response_type, status, refusal) in GATEWAY_RESPONSES.items():
            code, message = apikeys.REFUSALS[refusal]
            self.rest_api.add_gateway_response(
                response_id,
                type=response_type,
                status_code=status,
                templates={"application/json": json.dumps({"error": {"code": code, "message": message}})},
            )

        self.usage_plans: dict[str, apigw.UsagePlan] = {}
        for tenant in config.tenants:
            plan_config = tenant.api_keys
            if plan_config is None:
                continue
            plan = self.rest_api.add_usage_plan(
                f"Plan-{tenant.id}",
                name=f"{names.prefix}-keys-{tenant.id}",
                description=f"API keys of tenant {tenant.id} (config tenants[].api_keys)",
                throttle=apigw.ThrottleSettings(
                    rate_limit=plan_config.rate_limit, burst_limit=plan_config.burst_limit
                ),
                quota=(
                    apigw.QuotaSettings(limit=plan_config.quota_per_day, period=apigw.Period.DAY)
                    if plan_config.quota_per_day
                    else None
                ),
                api_stages=[
                    apigw.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)
                ],
            )
            plan.add_api_key(
                apigw.ApiKey(
                    self,
                    f"UsageKey-{tenant.id}",
                    api_key_name=f"{names.prefix}-usage-{tenant.id}",
                    description=f"Usage-plan identifier of tenant {tenant.id} (returned by the authorizer)",
                    value=apikeys.usage_identifier(config.stack_name, tenant.id),
                )
            )
            self.usage_plans[tenant.id] = plan
        self._acknowledge()

    @property
    def url(self) -> str:
        return self.rest_api.url

    def _acknowledge(self) -> None:
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "Every method requires a valid API key (Lambda authorizer), the stage is throttled and each "
            "tenant's keys have a usage plan; a WAF web ACL is left to the operator to opt into (its fee).",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-COG4",
            "This API exists for clients that can only send an x-api-key header; a Lambda authorizer checks "
            "the key against the hashed keys table, and the SigV4 API serves everyone else.",
        )
