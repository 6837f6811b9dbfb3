"""Webhooks: the results topic -> the webhooks Lambda -> signed Standard Webhooks callbacks to tenants.

- ``secret``: the master key (Secrets Manager, generated at deploy time, never in the template). Every
  tenant's signing secret is derived from it (:func:`easel.webhook_signing.derive_tenant_secret`), so
  operators hand one out with ``easel webhooks secret TENANT --secret-arn <WebhookSecretArn>``. The generated
  value is 44 letters and digits: valid base64 (four characters for every three bytes, so no padding), which
  the Lambda base64-decodes into a 33-byte HMAC key with about 262 bits of entropy.
- ``function``: ``lambdas.webhooks.app.handler`` from the same code asset, runtime, architecture and
  Powertools layer as the API Lambda (:mod:`infra.constructs.api`, :mod:`infra.lambda_bundle`).
- ``subscription``: the function on the results topic, filtered to the statuses that can become a webhook
  event (``processing`` -> ``start``, terminal -> ``completed``; see :mod:`lambdas.webhooks.service`).
  Whether a task has a webhook URL at all is not a message attribute, so the body decides that in the Lambda.
  SNS decrypts messages of the KMS-encrypted topic itself before invoking Lambda: the function needs no key.
- Tracing: each delivery attempt is an OpenTelemetry span in the task's trace (:mod:`lambdas.webhooks.spans`,
  parent: the agent's publish span, whose context the result message carries as ``traceparent``). The
  function gets the OpenTelemetry SDK and a collector extension that sends to X-Ray from the ADOT Lambda
  layer (``ADOT_PYTHON_LAYER``, wrapper ``/opt/otel-instrument``) and X-Ray active tracing, which grants
  the collector ``xray:PutTraceSegments``/``PutTelemetryRecords`` (no resource-level permissions exist).
- Delivery failures that may pass (timeouts, 5xx, 429) raise in the handler; Lambda's asynchronous
  invocation retries them ``RETRY_ATTEMPTS`` times, then sends the event to ``failure_queue`` and ``alarm``
  notifies the alarms topic. ``failure_queue`` is encrypted under the queues' key like every other queue;
  Lambda writes to it with the function's own role, which gets ``sqs:SendMessage`` on that queue and
  exactly ``kms:GenerateDataKey`` and ``kms:Decrypt`` on the key (not the ``*`` variants that
  ``grant_send_messages`` would add).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from easel.config import EaselConfig
from easel.contract import TaskStatus
from easel.naming import Names
from infra.constructs.compliance import acknowledge
from infra.constructs.functions import python_function

HANDLER = "lambdas.webhooks.app.handler"
SERVICE_NAME = "easel-webhooks"
# Lambda's asynchronous retries of a failed delivery (about 1 and 2 minutes apart), then the failure queue.
RETRY_ATTEMPTS = 2
# One delivery attempt (EASEL_WEBHOOK_TIMEOUT_SECONDS) inside one invocation (the function timeout).
DELIVERY_TIMEOUT_SECONDS = 10
FUNCTION_TIMEOUT = cdk.Duration.seconds(30)
# Letters and digits only, a multiple of 4 long: valid unpadded base64 (see the module doc).
MASTER_KEY_LENGTH = 44
# Results that can turn into a webhook event (lambdas.webhooks.service.event_of).
WEBHOOK_STATUSES: tuple[str, ...] = tuple(
    str(s) for s in TaskStatus if s is TaskStatus.PROCESSING or s.terminal
)
FAILED_RETENTION = cdk.Duration.days(14)
# What sending to an SSE-KMS queue needs on its key (no wildcard variants).
FAILURE_QUEUE_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
PERIOD = cdk.Duration.minutes(5)
# The ADOT Lambda layer for Python (OpenTelemetry SDK + a collector extension exporting to X-Ray): CDK maps
# it to the region's layer ARN. Pinned: a newer layer is a deliberate upgrade, tested before it ships.
ADOT_PYTHON_LAYER = lambda_.AdotLambdaLayerPythonSdkVersion.V1_29_0


class Webhooks(Construct):
    """``secret``, ``function`` (and ``function_log_group``), ``subscription``, ``failure_queue``, ``alarm``.

    The stack grants the function read access to ``secret``; the failure queue's grants are made here.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EaselConfig,
        names: Names,
        results_topic: sns.ITopic,
        queue_key: kms.IKey,
        powertools_layer: lambda_.ILayerVersion,
        alarms_topic: sns.ITopic,
        dashboard: cloudwatch.Dashboard | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "MasterSecret",
            description=f"{names.prefix}: webhooks master key (tenant signing secrets derive from it)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=MASTER_KEY_LENGTH,
                exclude_punctuation=True,
                include_space=False,
            ),
            # Tenants hold secrets derived from this key: deleting the stack must not invalidate them.
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.failure_queue = sqs.Queue(
            self,
            "FailureQueue",
            queue_name=names.webhooks_failure_queue,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=queue_key,
            enforce_ssl=True,
            retention_period=FAILED_RETENTION,
        )

        self.function_log_group = logs.LogGroup(self, "FunctionLogs", retention=logs.RetentionDays.ONE_MONTH)
        self.function = python_function(
            self,
            "Function",
            config=config,
            description="Easel webhooks: deliver signed (Standard Webhooks) task callbacks",
            handler=HANDLER,
            powertools_layer=powertools_layer,
            memory_size=256,
            timeout=FUNCTION_TIMEOUT,
            log_group=self.function_log_group,
            retry_attempts=RETRY_ATTEMPTS,
            tracing=lambda_.Tracing.ACTIVE,
            adot_instrumentation=lambda_.AdotInstrumentationConfig(
                layer_version=lambda_.AdotLayerVersion.from_python_sdk_layer_version(ADOT_PYTHON_LAYER),
                exec_wrapper=lambda_.AdotLambdaExecWrapper.INSTRUMENT_HANDLER,
            ),
            # SqsDestination grants send on the queue it is given; given the queue itself it would also
            # grant kms:Encrypt, kms:ReEncrypt* and kms:GenerateDataKey*. The same queue by ARN (no key)
            # plus the two key actions a producer of an SSE-KMS queue needs, granted below.
            on_failure=destinations.SqsDestination(
                sqs.Queue.from_queue_arn(self, "FailureQueueTarget", self.failure_queue.queue_arn)
            ),
            environment={
                "EASEL_WEBHOOK_SECRET_ARN": self.secret.secret_arn,
                "EASEL_WEBHOOK_TIMEOUT_SECONDS": str(DELIVERY_TIMEOUT_SECONDS),
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                # The service of the delivery spans in X-Ray (the function's name otherwise).
                "OTEL_SERVICE_NAME": SERVICE_NAME,
                # The layer would instrument the HTTP clients and send our trace ids to tenants' receivers
                # as traceparent headers: the delivery span is Easel's own, the tenant's server is not.
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx,urllib3,urllib,requests",
            },
        )
        self.failure_queue.grant_on_key(self.function, *FAILURE_QUEUE_KEY_ACTIONS)
        self.subscription = results_topic.add_subscription(
            subscriptions.LambdaSubscription(
                self.function,
                filter_policy={
                    "status": sns.SubscriptionFilter.string_filter(allowlist=list(WEBHOOK_STATUSES))
                },
            )
        )

        depth = self.failure_queue.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic="Maximum"
        )
        self.alarm = cloudwatch.Alarm(
            self,
            "FailedAlarm",
            alarm_name=f"{names.prefix}-webhooks-dlq",
            alarm_description=(
                f"Webhook deliveries failed {RETRY_ATTEMPTS + 1} times (receiver down or slow) and their "
                "events sit in the webhooks failure queue."
            ),
            metric=depth,
            threshold=0,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = actions.SnsAction(alarms_topic)
        self.alarm.add_alarm_action(action)
        self.alarm.add_ok_action(action)
        if dashboard is not None:
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Webhooks: invocations and errors",
                    left=[
                        self.function.metric_invocations(period=PERIOD, label="invocations"),
                        self.function.metric_errors(period=PERIOD, label="errors (retried)"),
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Webhooks: failure queue (visible)",
                    left=[depth.with_(label="failed")],
                    width=12,
                ),
            )
        self._acknowledge()

    def _acknowledge(self) -> None:
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Rotating the webhooks master key changes every tenant's derived signing secret at once, so it "
            "is a coordinated operator step (new secrets handed out first), not an automatic schedule.",
        )
        acknowledge(
            self.failure_queue,
            "AwsSolutions-SQS3",
            "The failure queue is itself the webhooks Lambda's on-failure destination: nothing consumes it, "
            "an alarm fires on its first message and an operator inspects it, so it needs no DLQ of its own.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM5[Resource::*]",
            "Active tracing (the delivery spans go to X-Ray) needs xray:PutTraceSegments and "
            "xray:PutTelemetryRecords, which have no resource level permissions, so AWS requires the "
            "wildcard resource for them.",
        )
