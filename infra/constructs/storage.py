"""Storage: the models bucket, the outputs bucket, their access-log bucket, and the tasks table.

The table layout comes from :mod:`easel.store`, the definition the local stack (``infra/local/provision.py``)
creates its table from, so both modes agree on every key. The deployed buckets and table are retained by
``cdk destroy`` and therefore carry generated names (a redeploy never collides with what an earlier one
kept); everything else finds them through the core stack's outputs and references.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from easel.config import Storage as StorageConfig
from easel.store import GSI_BY_STATUS, GSI_BY_TENANT, PARTITION_KEY, SORT_ATTR, TTL_ATTR
from infra.constructs.compliance import acknowledge

ACCESS_LOGS_EXPIRE_DAYS = 90


class Storage(Construct):
    """Buckets and the tasks table.

    ``models_bucket`` is versioned (an overwritten model can be restored); ``outputs_bucket`` expires objects
    after ``storage.outputs_expire_days``. Both block public access, refuse plain HTTP and encrypt at rest
    with S3-managed keys (so presigned GETs need no KMS permission). With ``storage.access_logs`` both write
    server access logs to ``access_logs_bucket``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StorageConfig,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket: s3.Bucket | None = None
        if config.access_logs:
            self.access_logs_bucket = s3.Bucket(
                self,
                "AccessLogs",
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                # Server access logging only delivers to SSE-S3 buckets.
                encryption=s3.BucketEncryption.S3_MANAGED,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(ACCESS_LOGS_EXPIRE_DAYS))],
                removal_policy=removal_policy,
            )

        # Retained resources get generated names: after `cdk destroy` they stay, and a redeploy creates new
        # ones instead of colliding with them. `storage.adopt` uses kept buckets again by name.
        self.models_bucket: s3.IBucket = self._bucket(
            "Models", config.adopt.models_bucket, removal_policy, "models/", versioned=True
        )
        self.outputs_bucket: s3.IBucket = self._bucket(
            "Outputs",
            config.adopt.outputs_bucket,
            removal_policy,
            "outputs/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-outputs",
                    expiration=cdk.Duration.days(config.outputs_expire_days),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
        )
        if not config.access_logs:
            for bucket in (self.models_bucket, self.outputs_bucket):
                if isinstance(bucket, s3.Bucket):
                    acknowledge(
                        bucket,
                        "AwsSolutions-S1",
                        "Server access logging is switched off in config (storage.access_logs: false); "
                        "CloudTrail data events remain available to the account owner.",
                    )

        self.table = dynamodb.Table(
            self,
            "Tasks",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTR,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal_policy,
        )
        for index, hash_attr in ((GSI_BY_TENANT, "tenant"), (GSI_BY_STATUS, "tenant_status")):
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=hash_attr, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=SORT_ATTR, type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.ALL,
            )

    def _bucket(
        self,
        construct_id: str,
        adopted: str | None,
        removal_policy: cdk.RemovalPolicy,
        log_prefix: str,
        **kwargs: Any,
    ) -> s3.IBucket:
        if adopted is not None:
            return s3.Bucket.from_bucket_name(self, construct_id, adopted)
        return s3.Bucket(self, construct_id, **kwargs, **self._common(removal_policy, log_prefix))

    def _common(self, removal_policy: cdk.RemovalPolicy, log_prefix: str) -> dict[str, Any]:
        logs: dict[str, Any] = {}
        if self.access_logs_bucket is not None:
            logs = {
                "server_access_logs_bucket": self.access_logs_bucket,
                "server_access_logs_prefix": log_prefix,
            }
        return {
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "removal_policy": removal_policy,
            **logs,
        }
