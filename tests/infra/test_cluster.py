"""Cluster: EKS version, system node group, Pod Identity, pinned KEDA/Karpenter charts, Karpenter's plumbing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.constructs.cluster import INTERRUPTION_EVENTS
from infra.constructs.network import KARPENTER_DISCOVERY_TAG
from tests.infra.conftest import Synth, flat

pytestmark = [pytest.mark.infra, pytest.mark.slow]

HELM = "Custom::AWSCDK-EKS-HelmChart"


def _charts(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        v["Properties"]["Release"]: v["Properties"] for v in synth.resources(synth.compute, HELM).values()
    }


def _values(synth: Synth, chart: dict[str, Any]) -> dict[str, Any]:
    """Helm values of a chart resource, with tokens rendered as `<token>`-free placeholders."""
    raw = chart["Values"]
    if isinstance(raw, dict):  # Fn::Join of literal JSON pieces and intrinsics
        raw = "".join(p if isinstance(p, str) else "TOKEN" for p in raw["Fn::Join"][1])
    values: dict[str, Any] = json.loads(raw)
    return values


def test_cluster_version_logging_and_secrets_encryption(synth: Synth) -> None:
    synth.compute_template.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Name": synth.names.cluster,
            "Version": synth.config.cluster.kubernetes_version,
            "AccessConfig": Match.object_like({"AuthenticationMode": "API"}),
            "EncryptionConfig": [Match.object_like({"Resources": ["secrets"]})],
            "Logging": {
                "ClusterLogging": {
                    "EnabledTypes": [
                        {"Type": t}
                        for t in ("api", "audit", "authenticator", "controllerManager", "scheduler")
                    ]
                }
            },
        },
    )


def test_small_system_node_group(synth: Synth) -> None:
    cfg = synth.config.cluster
    synth.compute_template.resource_count_is("AWS::EKS::Nodegroup", 1)
    synth.compute_template.has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "AmiType": "AL2023_x86_64_STANDARD",
            "InstanceTypes": cfg.system_instance_types,
            "ScalingConfig": {
                "MinSize": cfg.system_nodes,
                "DesiredSize": cfg.system_nodes,
                "MaxSize": cfg.system_nodes + 1,
            },
            "Labels": {"easel.io/pool": "system"},
        },
    )


def test_keda_and_karpenter_charts_are_pinned_from_config(synth: Synth) -> None:
    charts = _charts(synth)
    cfg = synth.config.cluster
    assert charts["keda"]["Chart"] == "keda"
    assert charts["keda"]["Repository"] == "https://kedacore.github.io/charts"
    assert charts["keda"]["Version"] == cfg.keda_chart_version
    assert charts["karpenter"]["Chart"] == "karpenter"
    assert charts["karpenter"]["Repository"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert charts["karpenter"]["Version"] == cfg.karpenter_chart_version
    assert charts["karpenter"]["Namespace"] == "kube-system"
    # Controllers are ready (webhooks serving) before any workload release creates their objects.
    for release in ("keda", "karpenter"):
        assert charts[release]["Wait"] is True


def test_karpenter_settings_and_keda_pod_identity_values(synth: Synth) -> None:
    charts = _charts(synth)
    karpenter = charts["karpenter"]
    values = _values(synth, karpenter)
    assert values["settings"]["clusterName"] == synth.names.cluster
    assert values["serviceAccount"]["name"] == "karpenter"
    queue_ref = next(p for p in karpenter["Values"]["Fn::Join"][1] if isinstance(p, dict))
    queue_id = queue_ref["Fn::GetAtt"][0]
    assert queue_ref == {"Fn::GetAtt": [queue_id, "QueueName"]}
    assert (
        synth.resources(synth.compute, "AWS::SQS::Queue")[queue_id]["Properties"]["SqsManagedSseEnabled"]
        is True
    )

    keda = _values(synth, charts["keda"])
    assert keda["serviceAccount"]["operator"]["name"] == "keda-operator"
    assert keda["podIdentity"]["aws"]["irsa"]["enabled"] is False


def test_pod_identity_agent_and_associations(synth: Synth) -> None:
    synth.compute_template.has_resource_properties("AWS::EKS::Addon", {"AddonName": "eks-pod-identity-agent"})
    associations = {
        (p["Properties"]["Namespace"], p["Properties"]["ServiceAccount"])
        for p in synth.resources(synth.compute, "AWS::EKS::PodIdentityAssociation").values()
    }
    namespace = synth.config.cluster.namespace
    # The ADOT collector (infra/constructs/observability.py) writes traces and GPU metrics.
    expected = {
        ("kube-system", "karpenter"),
        ("keda", "keda-operator"),
        ("observability", "adot-collector"),
    } | {
        pair
        for r in synth.config.runtimes
        # The workload, and the release's cost guard (its ops service account).
        for pair in (
            (namespace, synth.names.service_account(r.name)),
            (namespace, f"{synth.names.release(r.name)}-ops"),
        )
    }
    assert associations == expected


def test_interruption_queue_receives_the_four_event_kinds(synth: Synth) -> None:
    rules = synth.resources(synth.compute, "AWS::Events::Rule")
    patterns = {
        (r["Properties"]["EventPattern"]["source"][0], r["Properties"]["EventPattern"]["detail-type"][0])
        for r in rules.values()
    }
    assert patterns == {(source, detail) for _, source, detail in INTERRUPTION_EVENTS}
    targets = {json.dumps(r["Properties"]["Targets"][0]["Arn"]) for r in rules.values()}
    assert len(targets) == 1 and "InterruptionQueue" in targets.pop()


def test_karpenter_controller_policy_is_scoped_to_the_cluster(synth: Synth) -> None:
    cluster = synth.names.cluster
    policy = next(
        v["Properties"]["PolicyDocument"]["Statement"]
        for k, v in synth.resources(synth.compute, "AWS::IAM::Policy").items()
        if k.startswith("ClusterKarpenterControllerPolicy")
    )
    by_sid = {s["Sid"]: s for s in policy}
    assert by_sid["AllowScopedDeletion"]["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"
    }
    assert by_sid["AllowPassingInstanceRole"]["Resource"]["Fn::GetAtt"][0].startswith(
        "ClusterKarpenterNodeRole"
    )
    assert by_sid["AllowInterruptionQueueActions"]["Resource"]["Fn::GetAtt"][0].startswith(
        "ClusterInterruptionQueue"
    )
    assert set(by_sid["AllowRegionalReadActions"]["Condition"]["StringEquals"]) == {"aws:RequestedRegion"}
    assert all(
        "*" not in a for s in policy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )


def test_karpenter_nodes_join_through_an_ec2_linux_access_entry(synth: Synth) -> None:
    synth.compute_template.has_resource_properties(
        "AWS::EKS::AccessEntry",
        {
            "Type": "EC2_LINUX",
            "PrincipalArn": {"Fn::GetAtt": [Match.string_like_regexp("KarpenterNodeRole"), "Arn"]},
        },
    )


def test_addons_with_pod_identity_roles(synth: Synth) -> None:
    addons = {
        a["Properties"]["AddonName"]: a["Properties"]
        for a in synth.resources(synth.compute, "AWS::EKS::Addon").values()
    }
    assert set(addons) == {
        "eks-pod-identity-agent",
        "aws-mountpoint-s3-csi-driver",
        "amazon-cloudwatch-observability",
        "vpc-cni",
    }
    assert (
        addons["aws-mountpoint-s3-csi-driver"]["PodIdentityAssociations"][0]["ServiceAccount"]
        == "s3-csi-driver-sa"
    )
    assert (
        addons["amazon-cloudwatch-observability"]["PodIdentityAssociations"][0]["ServiceAccount"]
        == "cloudwatch-agent"
    )


def test_s3_csi_driver_role_reads_only_the_models_bucket(synth: Synth) -> None:
    csi_role = next(
        k for k in synth.resources(synth.compute, "AWS::IAM::Role") if k.startswith("ClusterS3CsiDriverRole")
    )
    policy = next(
        v["Properties"]["PolicyDocument"]["Statement"]
        for v in synth.resources(synth.compute, "AWS::IAM::Policy").values()
        if v["Properties"]["Roles"] == [{"Ref": csi_role}]
    )
    resources = {s["Action"]: flat(s["Resource"]).split(":s3:::")[1] for s in policy}
    models = f"<import:{synth.config.stack_name}-models-bucket>"
    assert resources == {"s3:ListBucket": models, "s3:GetObject": f"{models}/*"}


def test_private_subnets_are_tagged_for_karpenter(synth: Synth) -> None:
    subnets = synth.resources(synth.compute, "AWS::EC2::Subnet")
    tagged = [
        s
        for s in subnets.values()
        if {"Key": KARPENTER_DISCOVERY_TAG, "Value": synth.names.cluster} in s["Properties"]["Tags"]
    ]
    private = [s for s in subnets.values() if s["Properties"]["MapPublicIpOnLaunch"] is False]
    assert tagged == private
    assert len(private) == synth.config.network.max_azs


def test_availability_zones_are_resolved_at_deploy_time(synth: Synth) -> None:
    for subnet in synth.resources(synth.compute, "AWS::EC2::Subnet").values():
        assert "Fn::GetAZs" in json.dumps(subnet["Properties"]["AvailabilityZone"])


def test_network_policies_are_enforced_by_the_vpc_cni(synth: Synth) -> None:
    """The chart's NetworkPolicy means nothing unless the CNI enforces it: the managed vpc-cni add-on has its
    network policy agent on, and every workload release waits for it."""
    [(key, cni)] = [
        (k, v)
        for k, v in synth.resources(synth.compute, "AWS::EKS::Addon").items()
        if v["Properties"]["AddonName"] == "vpc-cni"
    ]
    assert json.loads(cni["Properties"]["ConfigurationValues"]) == {"enableNetworkPolicy": "true"}
    assert cni["Properties"]["ResolveConflicts"] == "OVERWRITE"
    releases = [
        v for v in synth.resources(synth.compute, HELM).values() if v["Properties"]["Namespace"] == "easel"
    ]
    assert releases
    for release in releases:
        assert key in release.get("DependsOn", []), release["Properties"]["Release"]
