"""Monitoring: alarms on dead letters, unroutable tasks, stale lanes and API 5XX, to an encrypted topic."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from easel.config import load_config
from easel.naming import LANES
from infra.app import cdk_json_context
from infra.stacks.core import CoreStack
from tests.conftest import EXAMPLE_CONFIG
from tests.infra.conftest import Synth

pytestmark = [pytest.mark.infra, pytest.mark.slow]


def _alarms(synth: Synth) -> dict[str, dict[str, object]]:
    return {
        str(v["Properties"]["AlarmName"]): v["Properties"]
        for v in synth.resources(synth.core, "AWS::CloudWatch::Alarm").values()
    }


def test_alarm_set(synth: Synth) -> None:
    prefix = synth.names.prefix
    expected = (
        {f"{prefix}-unroutable", f"{prefix}-api-5xx", f"{prefix}-webhooks-dlq"}
        | ({f"{prefix}-key-api-5xx"} if synth.config.key_tenants else set())
        | {
            f"{prefix}-{r.name}-{lane}-{kind}"
            for r in synth.config.runtimes
            for lane in LANES
            for kind in ("dlq", "oldest")
        }
        | {
            f"{prefix}-{r.name}-{kind}"
            for r in synth.config.runtimes
            for kind in ("failure-ratio", "cold-start", "gpu-idle-backlog")
        }
    )
    assert set(_alarms(synth)) == expected


def test_thresholds(synth: Synth) -> None:
    alarms = _alarms(synth)
    prefix = synth.names.prefix
    for name, alarm in alarms.items():
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        if name.endswith(("-dlq", "-unroutable")):
            assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
            assert alarm["Threshold"] == 0
        elif name.endswith("-oldest"):
            assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
            assert alarm["Threshold"] == synth.config.monitoring.oldest_message_alarm_seconds
    assert alarms[f"{prefix}-api-5xx"]["MetricName"] == "5XXError"
    monitoring = synth.config.monitoring
    for runtime in synth.config.runtimes:
        cold = alarms[f"{prefix}-{runtime.name}-cold-start"]
        assert cold["MetricName"] == "cold_start_seconds"
        assert cold["Namespace"] == "Easel"
        assert cold["Threshold"] == monitoring.cold_start_alarm_seconds
        ratio = alarms[f"{prefix}-{runtime.name}-failure-ratio"]
        assert ratio["Threshold"] == monitoring.failure_ratio_alarm
        assert ratio["EvaluationPeriods"] == 3
        expression = next(q["Expression"] for q in ratio["Metrics"] if "Expression" in q)
        assert expression == "FILL(f, 0) / (FILL(s, 0) + FILL(f, 0) + FILL(c, 0))"
        stats = {
            q["MetricStat"]["Metric"]["Dimensions"][1]["Value"] for q in ratio["Metrics"] if "MetricStat" in q
        }
        assert stats == {"succeeded", "failed", "canceled"}
        idle = alarms[f"{prefix}-{runtime.name}-gpu-idle-backlog"]
        expression = next(q["Expression"] for q in idle["Metrics"] if "Expression" in q)
        assert f"gpu < {monitoring.gpu_idle_percent:g}" in expression and "> 0 AND" in expression
        metric_names = {q["MetricStat"]["Metric"]["MetricName"] for q in idle["Metrics"] if "MetricStat" in q}
        assert metric_names == {"ApproximateNumberOfMessagesVisible", "DCGM_FI_DEV_GPU_UTIL"}


def test_alarms_notify_the_encrypted_alarms_topic(synth: Synth) -> None:
    topics = synth.resources(synth.core, "AWS::SNS::Topic")
    alarms_topic = next(
        k for k, v in topics.items() if v["Properties"]["TopicName"] == synth.names.alarms_topic
    )
    assert "KmsMasterKeyId" in topics[alarms_topic]["Properties"]
    for alarm in _alarms(synth).values():
        assert alarm["AlarmActions"] == [{"Ref": alarms_topic}]
    synth.core_template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [Match.object_like({"Principal": {"Service": "cloudwatch.amazonaws.com"}})]
                )
            }
        },
    )


def test_dashboard_covers_lanes_dead_letters_outcomes_and_api(example_synth: Synth) -> None:
    dashboard = next(iter(example_synth.resources(example_synth.core, "AWS::CloudWatch::Dashboard").values()))
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "TasksSubmitted",
        "5XXError",
        "4XXError",
        "Latency",
        "Easel",
        # per runtime: latency, model switches, throughput, cold starts, GPU and cost widgets
        "queue_seconds",
        "predict_seconds",
        "model_switch_seconds",
        "model_switches",
        "images",
        "cold_start_seconds",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "gpu_seconds",
        "tenant",
    ):
        assert metric in body, metric
    for runtime in example_synth.config.runtimes:
        for title in (
            "queue wait (s)",
            "generation (s)",
            "model switches (s) and cache hit ratio (%)",
            "images per second and cold starts (s)",
            "GPU utilisation per pod (%)",
            "GPU memory used per pod (MiB)",
            "GPU-seconds per tenant",
        ):
            assert f"{runtime.name}: {title}" in body, title
    # Every queue (lanes, DLQs, unroutable) is graphed; queue names appear as Fn::GetAtt of the queues.
    for queue_id in example_synth.resources(example_synth.core, "AWS::SQS::Queue"):
        assert f'["{queue_id}", "QueueName"]' in body, queue_id


def test_alarm_email_is_subscribed_when_configured(tmp_path: Path) -> None:
    config = load_config(EXAMPLE_CONFIG)
    config = config.model_copy(
        update={"monitoring": config.monitoring.model_copy(update={"alarm_email": "ops@example.com"})}
    )
    app = cdk.App(outdir=str(tmp_path), context=cdk_json_context())
    core = CoreStack(app, "easel", config=config)
    Template.from_stack(core).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
