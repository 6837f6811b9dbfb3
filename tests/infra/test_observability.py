"""Observability: the ADOT collector and the DCGM exporter releases, the collector's least-privilege Pod
Identity role, and the chart values that point the pools' agent and runtime at the collector."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.constructs.observability import (
    COLLECTOR_RELEASE,
    COLLECTOR_SERVICE_ACCOUNT,
    DCGM_RELEASE,
    GPU_METRICS,
    LOG_STREAM_ACTIONS,
    NAMESPACE,
    OTLP_HTTP_PORT,
    XRAY_ACTIONS,
    metrics_log_group_name,
)
from tests.infra.conftest import Synth, flat

pytestmark = [pytest.mark.infra, pytest.mark.slow]

HELM = "Custom::AWSCDK-EKS-HelmChart"


def _charts(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        v["Properties"]["Release"]: (k, v["Properties"])
        for k, v in synth.resources(synth.compute, HELM).items()
    }


def _values(chart: dict[str, Any]) -> dict[str, Any]:
    raw = chart["Values"]
    if isinstance(raw, dict):  # Fn::Join of literal JSON pieces and intrinsics
        raw = "".join(p if isinstance(p, str) else "TOKEN" for p in raw["Fn::Join"][1])
    values: dict[str, Any] = json.loads(raw)
    return values


def test_collector_is_a_pinned_adot_daemonset_with_otlp_on_the_node(synth: Synth) -> None:
    telemetry = synth.config.monitoring.telemetry
    _, chart = _charts(synth)[COLLECTOR_RELEASE]
    assert chart["Chart"] == "opentelemetry-collector"
    assert chart["Version"] == telemetry.collector_chart_version
    assert chart["Namespace"] == NAMESPACE
    values = _values(chart)
    assert values["mode"] == "daemonset"
    repository, tag = telemetry.collector_image.rsplit(":", 1)
    assert values["image"] == {"repository": repository, "tag": tag}
    assert "aws-otel-collector" in repository and tag != "latest"
    assert values["command"] == {"name": "awscollector"}
    assert values["ports"]["otlp-http"]["hostPort"] == OTLP_HTTP_PORT
    assert values["ports"]["otlp"]["hostPort"] == 4317
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    # Only pods are read by the scrape discovery.
    assert values["clusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]


def test_collector_sends_traces_to_xray_and_gpu_metrics_to_cloudwatch(synth: Synth) -> None:
    _, chart = _charts(synth)[COLLECTOR_RELEASE]
    config = _values(chart)["config"]
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["traces"]["exporters"] == ["awsxray"]
    assert pipelines["metrics"]["receivers"] == ["prometheus"]
    assert pipelines["metrics"]["exporters"] == ["awsemf"]
    assert "logs" not in pipelines  # the chart's default (OTLP to debug) stays; we add no log export
    emf = config["exporters"]["awsemf"]
    assert emf["namespace"] == synth.names.metrics_namespace
    assert emf["log_group_name"] == metrics_log_group_name(synth.names)
    (declaration,) = emf["metric_declarations"]
    assert declaration["dimensions"] == [["runtime"], ["runtime", "pod"]]
    assert declaration["metric_name_selectors"] == [f"^{m}$" for m in GPU_METRICS]
    (scrape,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert scrape["job_name"] == "dcgm-exporter"
    relabel = scrape["metric_relabel_configs"]
    runtime_rule = next(r for r in relabel if r.get("target_label") == "runtime")
    # <stack>-<runtime>-<replicaset hash>-<pod id> -> runtime
    for runtime in synth.config.runtimes:
        pod = f"{synth.names.release(runtime.name)}-7d9c6b5f4-x2k8p"
        assert re.fullmatch(runtime_rule["regex"], pod).group(1) == runtime.name  # type: ignore[union-attr]


def test_dcgm_exporter_runs_on_gpu_nodes_only(synth: Synth) -> None:
    _, chart = _charts(synth)[DCGM_RELEASE]
    assert chart["Chart"] == "dcgm-exporter"
    assert chart["Version"] == synth.config.monitoring.telemetry.dcgm_exporter_chart_version
    values = _values(chart)
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "easel.dev/runtime", "operator": "Exists"}]}
    ]
    assert values["serviceMonitor"] == {"enabled": False}


def test_collector_role_is_least_privilege(synth: Synth) -> None:
    associations = [
        v["Properties"]
        for v in synth.resources(synth.compute, "AWS::EKS::PodIdentityAssociation").values()
        if v["Properties"]["Namespace"] == NAMESPACE
    ]
    assert [a["ServiceAccount"] for a in associations] == [COLLECTOR_SERVICE_ACCOUNT]
    role_id = associations[0]["RoleArn"]["Fn::GetAtt"][0]
    policies = [
        v["Properties"]
        for v in synth.resources(synth.compute, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in v["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {"XRayWrite", "MetricsLogStreams"}
    assert sorted(by_sid["XRayWrite"]["Action"]) == sorted(XRAY_ACTIONS)
    assert by_sid["XRayWrite"]["Resource"] == "*"  # X-Ray has no resource-level permissions
    logs = by_sid["MetricsLogStreams"]
    assert sorted(logs["Action"]) == sorted(LOG_STREAM_ACTIONS)
    group = metrics_log_group_name(synth.names)
    (group_id,) = [
        k
        for k, v in synth.resources(synth.compute, "AWS::Logs::LogGroup").items()
        if v["Properties"].get("LogGroupName") == group
    ]
    resources = sorted(flat(r) for r in logs["Resource"])
    assert [r.split(":log-group:")[1] for r in resources] == [f"<{group_id}>", f"<{group_id}>:log-stream:*"]
    assert all(r.startswith("arn:") and ":logs:" in r for r in resources), resources
    # No other identity: no managed policies on the collector role.
    role = synth.resources(synth.compute, "AWS::IAM::Role")[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    retention = synth.resources(synth.compute, "AWS::Logs::LogGroup")[group_id]["Properties"][
        "RetentionInDays"
    ]
    assert retention == synth.config.monitoring.telemetry.metrics_log_retention_days


def test_collector_waits_for_pod_identity(synth: Synth) -> None:
    charts = _charts(synth)
    resources = synth.template_json(synth.compute)["Resources"]
    agent = next(
        k
        for k, v in resources.items()
        if v["Type"] == "AWS::EKS::Addon" and v["Properties"]["AddonName"] == "eks-pod-identity-agent"
    )
    for release in (COLLECTOR_RELEASE, DCGM_RELEASE):
        logical_id, _ = charts[release]
        assert agent in resources[logical_id].get("DependsOn", []), release


def test_runtime_releases_export_traces_to_the_collector(synth: Synth) -> None:
    charts = _charts(synth)
    for runtime in synth.config.runtimes:
        _, chart = charts[synth.names.release(runtime.name)]
        telemetry = _values(chart)["telemetry"]
        assert telemetry == {
            "enabled": True,
            "otlpEndpoint": "",
            "samplingRatio": synth.config.monitoring.telemetry.trace_sampling_ratio,
            "resourceAttributes": {"deployment.environment": synth.names.prefix},
        }
