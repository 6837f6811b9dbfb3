"""Workloads: one Helm release of ``charts/easel-runtime`` per runtime, and its workload IAM role.

The chart directory ships as an S3 asset (``eks.HelmChart(chart_asset=...)``); its values come from
:func:`runtime_values`, a plain function of the config and the deployed names/ARNs (CDK tokens at synth,
plain strings in unit tests), which tests validate against ``charts/easel-runtime/values.schema.json``.

Each runtime's role is associated (EKS Pod Identity) with the release's service account
(``Names.service_account``) and is also trusted by the KEDA operator role, because the chart's
TriggerAuthentication uses ``identityOwner: workload``: KEDA reads the queue depth with the workload's own
role, not with a broad operator role. The role starts empty; the stack grants it exactly its two lanes,
the models bucket (read), ``tenants/*`` of the outputs bucket, item updates on the table and publishing to
the results topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from constructs import Construct

from easel.config import EaselConfig, RuntimeSpec
from easel.contract.tasks import Lane
from easel.naming import Names
from infra.constructs.cluster import POD_IDENTITY_PRINCIPAL
from infra.constructs.messaging import LaneQueues
from infra.constructs.network import KARPENTER_DISCOVERY_TAG

CHART_DIR = Path(__file__).resolve().parent.parent.parent / "charts" / "easel-runtime"
# The EKS-created cluster security group carries this tag (and only it does); Karpenter nodes join it.
CLUSTER_SG_TAG = "aws:eks:cluster-name"


@dataclass(frozen=True)
class RuntimeRefs:
    """Deployed names and ARNs a runtime's release needs (tokens in CDK, strings in unit tests)."""

    region: str
    high_queue_url: str
    normal_queue_url: str
    table_name: str
    outputs_bucket: str
    results_topic_arn: str
    models_bucket: str
    node_role_name: str
    cluster_name: str


def runtime_values(
    config: EaselConfig, runtime: RuntimeSpec, refs: RuntimeRefs, names: Names, *, role_arn: str
) -> dict[str, Any]:
    """The Helm values of ``runtime``'s release (Helm merges them over the chart's ``values.yaml``)."""
    scaling = runtime.scaling
    return {
        "fullnameOverride": names.release(runtime.name),
        "runtime": {
            "name": runtime.name,
            "kind": runtime.kind,
            "models": [{"name": m.name, "path": m.store_path} for m in config.models_of(runtime.name)],
            "dynamicModels": runtime.dynamic_models,
            "taskTimeoutSeconds": runtime.task_timeout_seconds,
            "visibilityTimeoutSeconds": runtime.visibility_timeout_seconds,
            "maxReceiveCount": runtime.max_receive_count,
            "gpus": runtime.gpus,
        },
        "images": {
            kind: {"repository": image.repository, "tag": image.tag, "digest": image.digest or ""}
            for kind, image in (("runtime", runtime.images.runtime), ("agent", runtime.images.agent))
        },
        "aws": {"region": refs.region},
        "queues": {"high": {"url": refs.high_queue_url}, "normal": {"url": refs.normal_queue_url}},
        "tasks": {
            "tableName": refs.table_name,
            "outputsBucket": refs.outputs_bucket,
            "resultsTopicArn": refs.results_topic_arn,
            "inputBuckets": [],
            "allowedHttpsHosts": list(config.inputs.allowed_https_hosts),
            "maxInputBytes": config.inputs.max_bytes,
            "maxInputPixels": config.inputs.max_pixels,
        },
        "modelsVolume": {"enabled": True, "bucketName": refs.models_bucket},
        "serviceAccount": {"create": True, "name": names.service_account(runtime.name), "roleArn": role_arn},
        "scaling": {
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "queueLength": scaling.queue_length,
            "activationQueueLength": scaling.activation_queue_length,
            "pollingInterval": scaling.polling_seconds,
            "cooldownPeriod": scaling.cooldown_seconds,
            "identityOwner": "workload",
        },
        "nodePool": {
            "enabled": True,
            "instanceTypes": list(runtime.instance_types),
            "capacityTypes": [str(c) for c in runtime.capacity_types],
            "role": refs.node_role_name,
            "clusterName": refs.cluster_name,
            "subnetSelectorTags": {KARPENTER_DISCOVERY_TAG: refs.cluster_name},
            "securityGroupSelectorTags": {CLUSTER_SG_TAG: refs.cluster_name},
        },
    }


class RuntimeWorkload(Construct):
    """``role`` (Pod Identity), ``pod_identity`` (the association), ``values`` and ``release`` (Helm)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EaselConfig,
        names: Names,
        runtime: RuntimeSpec,
        refs: RuntimeRefs,
        cluster: eks.ICluster,
        chart_asset: s3_assets.Asset,
        keda_operator_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        release_name = names.release(runtime.name)
        self.role = iam.Role(
            self,
            "Role",
            description=f"Easel workload {release_name}: its two lanes, models, outputs, table, results",
            assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL)),
        )
        # KEDA (identityOwner: workload) assumes this role from its own Pod Identity session, whose session
        # tags are transitive, hence sts:TagSession too.
        assert self.role.assume_role_policy is not None
        self.role.assume_role_policy.add_statements(
            iam.PolicyStatement(
                actions=["sts:AssumeRole", "sts:TagSession"],
                principals=[iam.ArnPrincipal(keda_operator_role.role_arn)],
            )
        )
        self.pod_identity = eks.CfnPodIdentityAssociation(
            self,
            "PodIdentity",
            cluster_name=cluster.cluster_name,
            namespace=config.cluster.namespace,
            service_account=names.service_account(runtime.name),
            role_arn=self.role.role_arn,
        )
        self.values = runtime_values(config, runtime, refs, names, role_arn=self.role.role_arn)
        self.release = eks.HelmChart(
            self,
            "Release",
            cluster=cluster,
            chart_asset=chart_asset,
            release=release_name,
            namespace=config.cluster.namespace,
            create_namespace=True,
            values=self.values,
        )
        self.release.node.add_dependency(self.pod_identity)


class Workloads(Construct):
    """``chart_asset`` (the chart directory) and ``runtimes`` (name -> :class:`RuntimeWorkload`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EaselConfig,
        names: Names,
        cluster: eks.ICluster,
        keda_operator_role: iam.IRole,
        node_role: iam.IRole,
        lanes: Mapping[str, Mapping[Lane, LaneQueues]],
        table: dynamodb.ITable,
        outputs_bucket: s3.IBucket,
        models_bucket: s3.IBucket,
        results_topic: sns.ITopic,
        depends_on: Sequence[Construct] = (),
        chart_dir: Path = CHART_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (chart_dir / "Chart.yaml").is_file():
            raise FileNotFoundError(f"the runtime chart is missing: {chart_dir / 'Chart.yaml'}")
        self.chart_asset = s3_assets.Asset(
            self, "Chart", path=str(chart_dir), exclude=["__pycache__", "*.pyc"]
        )
        self.runtimes: dict[str, RuntimeWorkload] = {}
        for runtime in config.runtimes:
            refs = RuntimeRefs(
                region=cdk.Stack.of(self).region,
                high_queue_url=lanes[runtime.name][Lane.HIGH].queue.queue_url,
                normal_queue_url=lanes[runtime.name][Lane.NORMAL].queue.queue_url,
                table_name=table.table_name,
                outputs_bucket=outputs_bucket.bucket_name,
                results_topic_arn=results_topic.topic_arn,
                models_bucket=models_bucket.bucket_name,
                node_role_name=node_role.role_name,
                cluster_name=names.cluster,
            )
            workload = RuntimeWorkload(
                self,
                runtime.name,
                config=config,
                names=names,
                runtime=runtime,
                refs=refs,
                cluster=cluster,
                chart_asset=self.chart_asset,
                keda_operator_role=keda_operator_role,
            )
            for dependency in depends_on:
                workload.release.node.add_dependency(dependency)
            self.runtimes[runtime.name] = workload
