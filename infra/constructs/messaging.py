"""Messaging: the tasks and results topics, the per-runtime lane queues and the unroutable catch-all.

The shapes match ``infra/local/provision.py`` one for one: per runtime a ``high`` and a ``normal`` lane
queue, each with its own DLQ (``maxReceiveCount`` from the runtime), subscribed to the tasks topic with raw
delivery and the filter policies of :mod:`easel.routing` on the message attributes; an ``unroutable`` queue
takes every runtime nobody serves. Topics and queues are encrypted with customer-managed keys (not the
AWS-managed SNS/SQS keys): SNS must be allowed in the queues' key policy to deliver into them, and
AWS-managed key policies cannot be changed. Topics and queues use two keys because the queue key's policy
names the tasks topic (``aws:SourceArn``) and a topic encrypted under that same key would be a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from easel.config import RuntimeSpec
from easel.contract.tasks import Lane
from easel.naming import LANES, Names
from easel.routing import lane_filter_policy, unroutable_filter_policy
from infra.constructs.compliance import acknowledge

# Lane messages wait while pools scale from zero; DLQ and unroutable messages wait for an operator.
LANE_RETENTION = cdk.Duration.days(4)
PARKED_RETENTION = cdk.Duration.days(14)


@dataclass(frozen=True)
class LaneQueues:
    """One lane of one runtime: the queue the agent receives from and its dead-letter queue."""

    queue: sqs.Queue
    dlq: sqs.Queue


class Messaging(Construct):
    """Topics (under ``topic_key``), lane queues (``lanes[runtime][lane]``) and the unroutable queue
    (under ``queue_key``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        runtimes: Sequence[RuntimeSpec],
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic_key = self._key("TopicKey", f"{names.prefix}: tasks and results topics")
        self.queue_key = self._key("QueueKey", f"{names.prefix}: lane, dead-letter and unroutable queues")
        self.tasks_topic = self._topic("TasksTopic", names.tasks_topic)
        self.results_topic = self._topic("ResultsTopic", names.results_topic)

        self.lanes: dict[str, dict[Lane, LaneQueues]] = {}
        for runtime in runtimes:
            self.lanes[runtime.name] = {}
            for lane in LANES:
                self.lanes[runtime.name][lane] = self._lane(names, runtime, lane)

        self.unroutable_queue = self._queue(
            "Unroutable", names.unroutable_queue, retention_period=PARKED_RETENTION
        )
        acknowledge(
            self.unroutable_queue,
            "AwsSolutions-SQS3",
            "The unroutable queue is itself a terminal parking queue: nothing consumes it, an alarm fires on "
            "its first message and an operator inspects it, so a DLQ behind it would never receive anything.",
        )
        self._subscribe(self.unroutable_queue, unroutable_filter_policy([r.name for r in runtimes]))

    # -- building blocks ---------------------------------------------------------------------------------
    def _key(self, construct_id: str, description: str) -> kms.Key:
        return kms.Key(
            self,
            construct_id,
            description=description,
            enable_key_rotation=True,
            # Queues and topics hold only in-flight work: nothing under these keys outlives the stack.
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )

    def _topic(self, construct_id: str, name: str) -> sns.Topic:
        return sns.Topic(self, construct_id, topic_name=name, master_key=self.topic_key, enforce_ssl=True)

    def _queue(
        self,
        construct_id: str,
        name: str,
        *,
        retention_period: cdk.Duration,
        visibility_timeout: cdk.Duration | None = None,
        dead_letter_queue: sqs.DeadLetterQueue | None = None,
    ) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            queue_name=name,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            enforce_ssl=True,
            retention_period=retention_period,
            visibility_timeout=visibility_timeout,
            dead_letter_queue=dead_letter_queue,
        )

    def _lane(self, names: Names, runtime: RuntimeSpec, lane: Lane) -> LaneQueues:
        base = f"{_pascal(runtime.name)}{_pascal(str(lane))}"
        dlq = self._queue(f"{base}Dlq", names.lane_dlq(runtime.name, lane), retention_period=PARKED_RETENTION)
        queue = self._queue(
            f"{base}Queue",
            names.lane_queue(runtime.name, lane),
            visibility_timeout=cdk.Duration.seconds(runtime.visibility_timeout_seconds),
            retention_period=LANE_RETENTION,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=runtime.max_receive_count),
        )
        self._subscribe(queue, lane_filter_policy(runtime.name, lane))
        return LaneQueues(queue=queue, dlq=dlq)

    def _subscribe(self, queue: sqs.Queue, policy: dict[str, list[object]]) -> None:
        # SqsSubscription adds the queue policy (sns:SendMessage from this topic only) and the key-policy
        # statement that lets SNS encrypt into the queue. The filter policy itself is set on the L1 resource,
        # verbatim from easel.routing, so the deployed policy is byte-for-byte the one local mode uses.
        subscription = self.tasks_topic.add_subscription(
            subscriptions.SqsSubscription(queue, raw_message_delivery=True)
        )
        cfn = subscription.node.default_child
        assert isinstance(cfn, sns.CfnSubscription)
        cfn.filter_policy = policy
        cfn.filter_policy_scope = "MessageAttributes"


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
