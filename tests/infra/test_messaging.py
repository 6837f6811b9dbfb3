"""Messaging in the synthesized core stack matches easel.routing and the local stack's shapes."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from easel.naming import LANES
from easel.routing import lane_filter_policy, unroutable_filter_policy
from tests.infra.conftest import Synth

pytestmark = [pytest.mark.infra, pytest.mark.slow]


def _queue_logical_id(synth: Synth, name: str) -> str:
    queues = synth.resources(synth.core, "AWS::SQS::Queue")
    matches = [k for k, v in queues.items() if v["Properties"].get("QueueName") == name]
    assert len(matches) == 1, f"queue {name}: {matches}"
    return matches[0]


def _subscription_of(synth: Synth, queue_id: str) -> dict[str, Any]:
    subs = [
        v["Properties"]
        for v in synth.resources(synth.core, "AWS::SNS::Subscription").values()
        if v["Properties"]["Endpoint"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    assert len(subs) == 1, f"subscriptions of {queue_id}: {subs}"
    return subs[0]


def test_every_lane_queue_is_subscribed_with_the_routing_filter_policy(synth: Synth) -> None:
    tasks_topic = _topic_logical_id(synth, synth.names.tasks_topic)
    for runtime in synth.config.runtimes:
        for lane in LANES:
            queue_id = _queue_logical_id(synth, synth.names.lane_queue(runtime.name, lane))
            sub = _subscription_of(synth, queue_id)
            assert sub["Protocol"] == "sqs"
            assert sub["TopicArn"] == {"Ref": tasks_topic}
            assert sub["RawMessageDelivery"] is True
            assert sub["FilterPolicyScope"] == "MessageAttributes"
            assert sub["FilterPolicy"] == lane_filter_policy(runtime.name, lane)


def test_unroutable_queue_catches_every_runtime_nobody_serves(synth: Synth) -> None:
    queue_id = _queue_logical_id(synth, synth.names.unroutable_queue)
    sub = _subscription_of(synth, queue_id)
    assert sub["RawMessageDelivery"] is True
    assert sub["FilterPolicy"] == unroutable_filter_policy([r.name for r in synth.config.runtimes])
    # Exactly one subscription per lane plus the unroutable one on the tasks topic: no unfiltered catch-all.
    tasks_topic = {"Ref": _topic_logical_id(synth, synth.names.tasks_topic)}
    subs = {
        k: v
        for k, v in synth.resources(synth.core, "AWS::SNS::Subscription").items()
        if v["Properties"]["TopicArn"] == tasks_topic
    }
    assert len(subs) == 2 * len(synth.config.runtimes) + 1
    assert all("FilterPolicy" in s["Properties"] for s in subs.values())


def test_lane_queues_redrive_to_their_own_dlq_with_the_runtime_settings(synth: Synth) -> None:
    queues = synth.resources(synth.core, "AWS::SQS::Queue")
    for runtime in synth.config.runtimes:
        for lane in LANES:
            queue = queues[_queue_logical_id(synth, synth.names.lane_queue(runtime.name, lane))]["Properties"]
            dlq_id = _queue_logical_id(synth, synth.names.lane_dlq(runtime.name, lane))
            assert queue["RedrivePolicy"] == {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                "maxReceiveCount": runtime.max_receive_count,
            }
            assert queue["VisibilityTimeout"] == runtime.visibility_timeout_seconds
            assert "RedrivePolicy" not in queues[dlq_id]["Properties"]


def test_two_runtimes_keep_their_own_receive_counts(two_runtimes_synth: Synth) -> None:
    queues = two_runtimes_synth.resources(two_runtimes_synth.core, "AWS::SQS::Queue")
    counts = {
        v["Properties"]["QueueName"]: v["Properties"]["RedrivePolicy"]["maxReceiveCount"]
        for v in queues.values()
        if "RedrivePolicy" in v["Properties"]
    }
    assert counts == {
        "easel2-sd15-high": 3,
        "easel2-sd15-normal": 3,
        "easel2-community-high": 5,
        "easel2-community-normal": 5,
    }


def test_topics_and_queues_are_kms_encrypted(synth: Synth) -> None:
    keys = synth.resources(synth.core, "AWS::KMS::Key")
    for topic in synth.resources(synth.core, "AWS::SNS::Topic").values():
        key = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
        assert keys[key]["Properties"]["EnableKeyRotation"] is True
    for queue in synth.resources(synth.core, "AWS::SQS::Queue").values():
        key = queue["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
        assert keys[key]["Properties"]["EnableKeyRotation"] is True


def test_sns_may_use_the_queue_key_only_for_the_tasks_topic(synth: Synth) -> None:
    tasks_topic = _topic_logical_id(synth, synth.names.tasks_topic)
    synth.core_template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "sns.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                                "Condition": {"ArnEquals": {"aws:SourceArn": {"Ref": tasks_topic}}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_queues_and_topics_refuse_plain_http(synth: Synth) -> None:
    deny_http = Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    queue_policies = synth.resources(synth.core, "AWS::SQS::QueuePolicy")
    covered = set()
    for policy in queue_policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        if any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ):
            covered.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert covered == set(synth.resources(synth.core, "AWS::SQS::Queue"))
    synth.core_template.resource_properties_count_is(
        "AWS::SNS::TopicPolicy",
        {"PolicyDocument": {"Statement": Match.array_with([deny_http])}},
        len(synth.resources(synth.core, "AWS::SNS::Topic")),
    )


def test_names_come_from_easel_naming(example_synth: Synth) -> None:
    names = example_synth.names
    topics = {
        v["Properties"]["TopicName"]
        for v in example_synth.resources(example_synth.core, "AWS::SNS::Topic").values()
    }
    assert topics == {names.tasks_topic, names.results_topic, names.alarms_topic}
    queues = {
        v["Properties"]["QueueName"]
        for v in example_synth.resources(example_synth.core, "AWS::SQS::Queue").values()
    }
    assert queues == {
        "easel-sd15-high",
        "easel-sd15-high-dlq",
        "easel-sd15-normal",
        "easel-sd15-normal-dlq",
        "easel-unroutable",
        names.webhooks_failure_queue,
    }


def _topic_logical_id(synth: Synth, name: str) -> str:
    topics = synth.resources(synth.core, "AWS::SNS::Topic")
    matches = [k for k, v in topics.items() if v["Properties"].get("TopicName") == name]
    assert len(matches) == 1
    return matches[0]
