"""Least-privilege grants with explicit actions, for the cases the L2 ``grant_*`` methods make too broad.

``Bucket.grant_read`` gives ``s3:GetObject*``/``s3:List*`` on the whole bucket and ``Topic.grant_publish``
gives ``kms:GenerateDataKey*``; the workload policy must name every action and stay inside a key prefix,
so these helpers call the same grant machinery (``bucket.grants``, ``topic.grants``, ``iam.Grant``) with
exact action lists. They return the ``iam.Grant`` like any ``grant_*`` call.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

OBJECT_READ = ("s3:GetObject",)
OBJECT_READ_WRITE = ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
# Delete: the agent removes the outputs of a task canceled while it was being written.
OBJECT_READ_WRITE_DELETE = (*OBJECT_READ_WRITE, "s3:DeleteObject")
# What a publisher needs on the key of an SSE-KMS topic (no wildcard variants).
TOPIC_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def grant_objects(
    bucket: s3.IBucket, grantee: iam.IGrantable, *, key_pattern: str, actions: Sequence[str]
) -> iam.Grant:
    """``actions`` on the objects under ``key_pattern`` (e.g. ``tenants/*``) only."""
    return s3.BucketGrants.from_bucket(bucket).actions_on_object_keys(grantee, key_pattern, *actions)


def grant_list(bucket: s3.IBucket, grantee: iam.IGrantable, *, prefix: str | None = None) -> iam.Grant:
    """``s3:ListBucket`` on the bucket, limited to keys under ``prefix`` when given.

    Without list permission a missing key reads as 403 instead of 404; with the prefix condition the
    grantee still cannot enumerate anything outside its prefix.
    """
    conditions = {"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None
    return iam.Grant.add_to_principal(
        grantee=grantee, actions=["s3:ListBucket"], resource_arns=[bucket.bucket_arn], conditions=conditions
    )


def grant_publish(topic: sns.Topic, grantee: iam.IGrantable) -> iam.Grant:
    """``sns:Publish`` on ``topic`` plus exactly the key actions an encrypted topic needs."""
    return topic.grants.actions(grantee, ["sns:Publish"], key_actions=list(TOPIC_KEY_ACTIONS))


def grant_assume(role: iam.IRole, grantee: iam.IGrantable) -> iam.Grant:
    """Let ``grantee`` assume ``role`` with session tags (the role's trust policy must name it too)."""
    return iam.Grant.add_to_principal(
        grantee=grantee, actions=["sts:AssumeRole", "sts:TagSession"], resource_arns=[role.role_arn]
    )


def grant_items(table: dynamodb.ITable, grantee: iam.IGrantable, *, actions: Sequence[str]) -> iam.Grant:
    """``actions`` on the table's items only: ``Table.grant`` also covers ``<table>/index/*`` once the
    table has an index, which a caller reading items by key never needs."""
    return iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=[table.table_arn])
