"""Storage: the tasks table has easel.store's layout; buckets are private, TLS-only, encrypted."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from easel.config import Storage as StorageConfig
from easel.store import GSI_BY_STATUS, GSI_BY_TENANT, PARTITION_KEY, SORT_ATTR, TTL_ATTR
from infra.app import cdk_json_context
from infra.constructs.storage import Storage
from tests.infra.conftest import Synth

pytestmark = [pytest.mark.infra, pytest.mark.slow]


def test_table_layout_matches_easel_store(synth: Synth) -> None:
    def gsi(name: str, hash_attr: str) -> dict[str, object]:
        return {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": hash_attr, "KeyType": "HASH"},
                {"AttributeName": SORT_ATTR, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }

    synth.core_template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            # Retained: a generated name, so a redeploy after `cdk destroy` does not collide with it.
            "TableName": Match.absent(),
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": Match.array_equals(
                [gsi(GSI_BY_TENANT, "tenant"), gsi(GSI_BY_STATUS, "tenant_status")]
            ),
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTR, "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )
    synth.core_template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_buckets_block_public_access_and_encrypt(synth: Synth) -> None:
    buckets = synth.resources(synth.core, "AWS::S3::Bucket")
    assert len(buckets) == 3  # models, outputs, access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_every_bucket_policy_denies_plain_http(synth: Synth) -> None:
    buckets = set(synth.resources(synth.core, "AWS::S3::Bucket"))
    denied = set()
    for policy in synth.resources(synth.core, "AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        if any(
            s["Effect"] == "Deny"
            and s["Action"] == "s3:*"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ):
            denied.add(policy["Properties"]["Bucket"]["Ref"])
    assert denied == buckets


def test_models_bucket_is_versioned_and_outputs_expire(synth: Synth) -> None:
    by_id = {k: b["Properties"] for k, b in synth.resources(synth.core, "AWS::S3::Bucket").items()}
    # Retained buckets carry generated names (docs/deploy.md, "Teardown").
    assert not any("BucketName" in b for b in by_id.values())
    models = next(b for k, b in by_id.items() if k.startswith("StorageModels"))
    outputs = next(b for k, b in by_id.items() if k.startswith("StorageOutputs"))
    access_logs = next(b for k, b in by_id.items() if k.startswith("StorageAccessLogs"))
    assert models["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = outputs["LifecycleConfiguration"]["Rules"][0]
    assert rule["ExpirationInDays"] == synth.config.storage.outputs_expire_days
    assert rule["Status"] == "Enabled"
    for bucket in (models, outputs):
        assert bucket["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    assert "LoggingConfiguration" not in access_logs


@pytest.mark.parametrize("access_logs", [True, False])
def test_storage_alone_passes_cdk_nag(access_logs: bool, tmp_path: Path) -> None:
    """Both settings of storage.access_logs: with logs off, S1 is acknowledged (with a reason)."""
    app = cdk.App(outdir=str(tmp_path), context=cdk_json_context())  # the app's feature flags
    stack = cdk.Stack(app, "StorageOnly")
    Storage(stack, "Storage", config=StorageConfig(access_logs=access_logs))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    assert json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"] == []
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::S3::Bucket", 3 if access_logs else 2)
