"""Create every Easel resource in an AWS endpoint (moto server locally) from config + naming.

Mirrors the CDK messaging/storage constructs: tasks and results topics, per runtime a high and a normal
lane queue (raw delivery, filter policy, DLQ with maxReceiveCount), the unroutable catch-all queue, the
local webhooks queue (results topic, raw delivery, DLQ; drained by :mod:`infra.local.webhooks_worker` where
AWS invokes the webhooks Lambda), the tasks table with its two GSIs and TTL, the API keys table, and the
models/outputs buckets.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from easel import apikeys
from easel.config import EaselConfig
from easel.naming import LANES, Names
from easel.routing import lane_filter_policy, unroutable_filter_policy
from easel.store import GSI_BY_STATUS, GSI_BY_TENANT, PARTITION_KEY, SORT_ATTR, TTL_ATTR


@dataclass
class LaneResources:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


@dataclass
class Resources:
    """Names/URLs/ARNs of what was created (written to the local state file)."""

    region: str
    tasks_topic_arn: str
    results_topic_arn: str
    unroutable_queue_url: str
    table: str
    models_bucket: str
    outputs_bucket: str
    # runtime -> lane -> resources
    lanes: dict[str, dict[str, LaneResources]] = field(default_factory=dict)
    webhooks_queue_url: str = ""
    webhooks_dlq_url: str = ""
    api_keys_table: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resources:
        lanes = {
            rt: {lane: LaneResources(**res) for lane, res in by_lane.items()}
            for rt, by_lane in data.get("lanes", {}).items()
        }
        return cls(**{**data, "lanes": lanes})


def provision(config: EaselConfig, names: Names, session: Any) -> Resources:
    """Create (idempotently) every resource; ``session`` is a boto3 Session pointed at the endpoint."""
    sns = session.client("sns")
    sqs = session.client("sqs")
    ddb = session.client("dynamodb")
    s3 = session.client("s3")

    tasks_topic = sns.create_topic(Name=names.tasks_topic)["TopicArn"]
    results_topic = sns.create_topic(Name=names.results_topic)["TopicArn"]

    lanes: dict[str, dict[str, LaneResources]] = {}
    for runtime in config.runtimes:
        lanes[runtime.name] = {}
        for lane in LANES:
            dlq_url = sqs.create_queue(
                QueueName=names.lane_dlq(runtime.name, lane),
                Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
            )["QueueUrl"]
            dlq_arn = _queue_arn(sqs, dlq_url)
            redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(runtime.max_receive_count)}
            q_url = sqs.create_queue(
                QueueName=names.lane_queue(runtime.name, lane),
                Attributes={
                    "VisibilityTimeout": str(runtime.visibility_timeout_seconds),
                    "RedrivePolicy": json.dumps(redrive),
                    "MessageRetentionPeriod": str(4 * 24 * 3600),
                },
            )["QueueUrl"]
            q_arn = _queue_arn(sqs, q_url)
            _subscribe(sns, tasks_topic, q_arn, lane_filter_policy(runtime.name, lane))
            lanes[runtime.name][str(lane)] = LaneResources(q_url, q_arn, dlq_url, dlq_arn)

    unroutable_url = sqs.create_queue(QueueName=names.unroutable_queue)["QueueUrl"]
    _subscribe(
        sns,
        tasks_topic,
        _queue_arn(sqs, unroutable_url),
        unroutable_filter_policy([r.name for r in config.runtimes]),
    )

    webhooks_queue_url, webhooks_dlq_url = _webhooks_queue(sns, sqs, names, results_topic)

    _create_table(ddb, names.tasks_table)
    _create_keys_table(ddb, names.api_keys_table)
    for bucket in (names.models_bucket, names.outputs_bucket):
        _create_bucket(s3, bucket, names.region)

    return Resources(
        region=names.region,
        tasks_topic_arn=tasks_topic,
        results_topic_arn=results_topic,
        unroutable_queue_url=unroutable_url,
        table=names.tasks_table,
        models_bucket=names.models_bucket,
        outputs_bucket=names.outputs_bucket,
        lanes=lanes,
        webhooks_queue_url=webhooks_queue_url,
        webhooks_dlq_url=webhooks_dlq_url,
        api_keys_table=names.api_keys_table,
    )


# The local webhooks worker leaves a failed delivery (timeout, 5xx, 429) in the queue: it is retried after
# the visibility timeout, and after WEBHOOKS_MAX_RECEIVE_COUNT receives it moves to the DLQ (in AWS: the
# Lambda's asynchronous retries, then its on-failure queue).
WEBHOOKS_VISIBILITY_TIMEOUT_SECONDS = 10
WEBHOOKS_MAX_RECEIVE_COUNT = 3


def _webhooks_queue(sns: Any, sqs: Any, names: Names, results_topic: str) -> tuple[str, str]:
    dlq_url = sqs.create_queue(
        QueueName=names.webhooks_local_dlq,
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    redrive = {
        "deadLetterTargetArn": _queue_arn(sqs, dlq_url),
        "maxReceiveCount": str(WEBHOOKS_MAX_RECEIVE_COUNT),
    }
    url = sqs.create_queue(
        QueueName=names.webhooks_local_queue,
        Attributes={
            "VisibilityTimeout": str(WEBHOOKS_VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    # Every result, like the Lambda's subscription (no filter): deliver() skips tasks without a webhook.
    sns.subscribe(
        TopicArn=results_topic,
        Protocol="sqs",
        Endpoint=_queue_arn(sqs, url),
        Attributes={"RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )
    return url, dlq_url


def _queue_arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attrs["QueueArn"])


def _subscribe(sns: Any, topic_arn: str, queue_arn: str, policy: dict[str, Any]) -> None:
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps(policy)},
        ReturnSubscriptionArn=True,
    )


def _create_table(ddb: Any, name: str) -> None:
    try:
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": "tenant", "AttributeType": "S"},
                {"AttributeName": "tenant_status", "AttributeType": "S"},
                {"AttributeName": SORT_ATTR, "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": GSI_BY_TENANT,
                    "KeySchema": [
                        {"AttributeName": "tenant", "KeyType": "HASH"},
                        {"AttributeName": SORT_ATTR, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": GSI_BY_STATUS,
                    "KeySchema": [
                        {"AttributeName": "tenant_status", "KeyType": "HASH"},
                        {"AttributeName": SORT_ATTR, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
        )
    except ddb.exceptions.ResourceInUseException:
        return
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTR}
    )


def _create_keys_table(ddb: Any, name: str) -> None:
    """The API keys table (easel/apikeys.py), as infra/constructs/apikeys.py declares it."""
    with contextlib.suppress(ddb.exceptions.ResourceInUseException):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": apikeys.PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": "tenant", "AttributeType": "S"},
                {"AttributeName": "created_at", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": apikeys.PARTITION_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": apikeys.GSI_BY_TENANT,
                    "KeySchema": [
                        {"AttributeName": "tenant", "KeyType": "HASH"},
                        {"AttributeName": "created_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )


def _create_bucket(s3: Any, name: str, region: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(**kwargs)
