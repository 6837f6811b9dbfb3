"""The core stack: storage, messaging, the API, webhooks and monitoring (everything but the GPU cluster).

Kept apart from the cluster so the data plane (table, buckets, queues) can be deployed, updated and
inspected without touching EKS, and so the cluster can be torn down while the data stays.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from easel.config import EaselConfig
from easel.naming import Names
from infra.constructs.api import Api
from infra.constructs.apikeys import AUTHORIZER_TABLE_ACTIONS, ApiKeys
from infra.constructs.compliance import acknowledge, nag_resource
from infra.constructs.grants import OBJECT_READ, grant_items, grant_objects, grant_publish
from infra.constructs.messaging import Messaging
from infra.constructs.monitoring import Monitoring
from infra.constructs.storage import Storage
from infra.constructs.webhooks import Webhooks

# What the API does with the table: create (put), get, list (query on the GSIs), cancel (conditional update).
API_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
EXAMPLE_PROMPT = "a lighthouse on a cliff at dawn, oil painting"
# Raw delivery (the body is the task object) and a filter on the tenant attribute of result messages.
SUBSCRIBE_ATTRIBUTES = json.dumps(
    {"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"tenant": ["<tenant>"]})},
    separators=(",", ":"),
)


# Storage outputs the compute stack imports by export name (the retained buckets and table have generated
# names); importing by a fixed export name keeps its IAM resources readable (and acknowledgeable).
STORAGE_EXPORTS = {
    "ModelsBucketName": "models-bucket",
    "OutputsBucketName": "outputs-bucket",
    "TasksTableName": "tasks-table",
}


def export_name(stack_name: str, export: str) -> str:
    return f"{stack_name}-{export}"


class CoreStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EaselConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.names = Names.of(config, account=self.account, region=self.region)

        self.storage = Storage(self, "Storage", config=config.storage)
        self.messaging = Messaging(self, "Messaging", names=self.names, runtimes=config.runtimes)
        self.api = Api(
            self,
            "Api",
            config=config,
            names=self.names,
            table=self.storage.table,
            tasks_topic=self.messaging.tasks_topic,
            outputs_bucket=self.storage.outputs_bucket,
        )
        # The key API only when a tenant takes API keys (config tenants[].api_keys): otherwise nothing of it.
        self.api_keys: ApiKeys | None = None
        if config.key_tenants:
            self.api_keys = ApiKeys(
                self,
                "ApiKeys",
                config=config,
                names=self.names,
                api_function=self.api.function,
                powertools_layer=self.api.powertools_layer,
                after=self.api.rest_api.deployment_stage,
            )
            # The authorizer reads one key by id; creating, listing and revoking are operator actions.
            grant_items(self.api_keys.table, self.api_keys.function, actions=AUTHORIZER_TABLE_ACTIONS)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            names=self.names,
            config=config.monitoring,
            lanes=self.messaging.lanes,
            unroutable_queue=self.messaging.unroutable_queue,
            rest_api=self.api.rest_api,
            key_api=self.api_keys.rest_api if self.api_keys is not None else None,
        )
        self.webhooks = Webhooks(
            self,
            "Webhooks",
            config=config,
            names=self.names,
            results_topic=self.messaging.results_topic,
            queue_key=self.messaging.queue_key,
            powertools_layer=self.api.powertools_layer,
            alarms_topic=self.monitoring.alarms_topic,
            dashboard=self.monitoring.dashboard,
        )

        # The API Lambda: the table, publishing tasks, and reading outputs to presign GET URLs. Nothing else.
        self.storage.table.grant(self.api.function, *API_TABLE_ACTIONS)
        grant_publish(self.messaging.tasks_topic, self.api.function)
        self.api.cursor_key.grant_read(self.api.function)
        grant_objects(
            self.storage.outputs_bucket, self.api.function, key_pattern="tenants/*", actions=OBJECT_READ
        )
        # Inline base64 images are written to tenants/<t>/inputs/ by the API; its presigned upload POSTs
        # are signed with this same permission (S3 checks the signer's rights at upload time).
        grant_objects(
            self.storage.outputs_bucket,
            self.api.function,
            key_pattern="tenants/*/inputs/*",
            actions=("s3:PutObject",),
        )
        acknowledge(
            self.api.function,
            [
                f"AwsSolutions-IAM5[Resource::{nag_resource(self, self.storage.table.table_arn)}/index/*]",
                "AwsSolutions-IAM5[Resource::"
                f"{nag_resource(self, self.storage.outputs_bucket.arn_for_objects('tenants/*'))}]",
                "AwsSolutions-IAM5[Resource::"
                f"{nag_resource(self, self.storage.outputs_bucket.arn_for_objects('tenants/*/inputs/*'))}]",
            ],
            "Listing queries the table's two tenant indexes (by_tenant, by_status) and presigning reads "
            "generated images under the tenants/ prefix, writing input images under tenants/*/inputs/; every "
            "wildcard stays inside one table or one prefix.",
        )

        # The webhooks Lambda: reading its master key. Nothing else (SNS invokes it; its failure
        # destination grants itself).
        self.webhooks.secret.grant_read(self.webhooks.function)

        self._outputs()

    def _outputs(self) -> None:
        region = self.region
        results_arn = self.messaging.results_topic.topic_arn
        model = self.config.models[0].name
        outputs = {
            "ApiEndpoint": (
                self.api.url,
                "Base URL of the task API (SigV4-signed requests, service execute-api)",
            ),
            "TasksTopicArn": (self.messaging.tasks_topic.topic_arn, "Publish tasks here directly (advanced)"),
            "ResultsTopicArn": (results_arn, "Task results (status, tenant, runtime, task_type attributes)"),
            "AlarmsTopicArn": (self.monitoring.alarms_topic.topic_arn, "CloudWatch alarm notifications"),
            "ModelsBucketName": (
                self.storage.models_bucket.bucket_name,
                "Upload models under their store path",
            ),
            "OutputsBucketName": (
                self.storage.outputs_bucket.bucket_name,
                "Generated images (tenants/<id>/...)",
            ),
            "TasksTableName": (self.storage.table.table_name, "Tasks table"),
            "DashboardName": (self.monitoring.dashboard.dashboard_name, "CloudWatch dashboard"),
            "WebhookSecretArn": (
                self.webhooks.secret.secret_arn,
                "Webhooks master key; hand a tenant its signing secret with "
                "`easel webhooks secret TENANT --secret-arn <this>`",
            ),
            "SubscribeCommand": (
                f"aws sns subscribe --region {region} --topic-arn {results_arn} --protocol sqs "
                f"--notification-endpoint <your-queue-arn> --attributes '{SUBSCRIBE_ATTRIBUTES}'",
                "Receive results in your own SQS queue (its policy must allow this topic to send)",
            ),
            "SubmitCommand": (
                f"easel submit --endpoint {self.api.url} --model {model} --prompt '{EXAMPLE_PROMPT}' --wait",
                "Submit a first task with your AWS credentials (a principal listed under tenants)",
            ),
        }
        if self.api_keys is not None:
            outputs["KeyApiEndpoint"] = (
                self.api_keys.url,
                "Base URL of the same task API for API-key clients (x-api-key; `easel keys create`)",
            )
            outputs["KeyApiId"] = (self.api_keys.rest_api.rest_api_id, "`easel keys revoke --api-id <this>`")
            outputs["ApiKeysTableName"] = (self.api_keys.table.table_name, "API keys (hashed), per tenant")
        for key, (value, description) in outputs.items():
            export = STORAGE_EXPORTS.get(key)
            cdk.CfnOutput(
                self,
                key,
                value=value,
                description=description,
                export_name=export_name(self.stack_name, export) if export else None,
            )
