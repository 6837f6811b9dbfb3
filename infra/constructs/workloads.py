"""Workloads: one Helm release of ``charts/easel-runtime`` per runtime, and its workload IAM role.

The chart directory ships as an S3 asset (``eks.HelmChart(chart_asset=...)``); its values come from
:func:`runtime_values`, a plain function of the config and the deployed names/ARNs (CDK tokens at synth,
plain strings in unit tests), which tests validate against ``charts/easel-runtime/values.schema.json``.

Each runtime's role is associated (EKS Pod Identity) with the release's service account
(``Names.service_account``) and is also trusted by the KEDA operator role, because the chart's
TriggerAuthentication names it (``podIdentity.roleArn``): the operator assumes it with its own Pod Identity
credentials and reads the queue depth as the workload, not with a broad operator role. No IRSA anywhere: the
cluster has no OIDC provider. The images are Docker image assets built by ``cdk deploy`` unless config names
prebuilt ones. A second, tiny role serves the release's cost guard. The workload role starts empty; the
stack grants it exactly its two lanes, the models bucket (read), ``tenants/*`` of the outputs bucket, item
updates on the table and publishing to the results topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
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
from infra.constructs.compliance import acknowledge
from infra.constructs.messaging import LaneQueues
from infra.constructs.network import KARPENTER_DISCOVERY_TAG

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CHART_DIR = REPO_ROOT / "charts" / "easel-runtime"
# The EKS-created cluster security group carries this tag (and only it does); Karpenter nodes join it.
CLUSTER_SG_TAG = "aws:eks:cluster-name"


# Seconds the chart's pre-delete drain may take, and the helm timeout around it: both inside the kubectl
# handler Lambda's 15 minutes, or `cdk destroy` would go on while nodes still run.
DRAIN_TIMEOUT_SECONDS = 600
RELEASE_TIMEOUT = cdk.Duration.seconds(DRAIN_TIMEOUT_SECONDS + 180)
# The cost guard's CloudWatch metric (charts/easel-runtime/templates/cost-guard.yaml, easel.deploy.guard).
GUARD_METRIC_NAMESPACE = "Easel"
GUARD_METRIC = "PoolNotReady"
# The system node group's label (infra/constructs/cluster.py): the guard and drain pods run there.
SYSTEM_NODES = {"easel.io/pool": "system"}
# What each image's Dockerfile copies (the rest of the repository stays out of the build context and out of
# the asset hash, so unrelated edits do not rebuild an image).
IMAGE_SOURCES = {
    "runtime": ("runtime_image/Dockerfile", ("pyproject.toml", "README.md", "easel/", "runtime_image/")),
    "agent": ("queue_agent/Dockerfile", ("pyproject.toml", "README.md", "easel/", "queue_agent/")),
}


@dataclass(frozen=True)
class ImageRef:
    """An image as the chart takes it (tokens for a CDK asset)."""

    repository: str
    tag: str
    digest: str = ""


def image_assets(scope: Construct, repo_root: Path) -> dict[str, ImageRef]:
    """The runtime and agent images as Docker image assets: `cdk deploy` builds and pushes them."""
    refs = {}
    for kind, (dockerfile, sources) in IMAGE_SOURCES.items():
        asset = ecr_assets.DockerImageAsset(
            scope,
            f"{kind.capitalize()}Image",
            directory=str(repo_root),
            file=dockerfile,
            platform=ecr_assets.Platform.LINUX_AMD64,
            ignore_mode=cdk.IgnoreMode.DOCKER,
            exclude=["*", *(f"!{s}" for s in sources), "**/__pycache__", "**/*.pyc"],
        )
        refs[kind] = ImageRef(repository=asset.repository.repository_uri, tag=asset.image_tag)
    return refs


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
    config: EaselConfig,
    runtime: RuntimeSpec,
    refs: RuntimeRefs,
    names: Names,
    *,
    role_arn: str,
    built_images: Mapping[str, ImageRef] | None = None,
) -> dict[str, Any]:
    """The Helm values of ``runtime``'s release (Helm merges them over the chart's ``values.yaml``).

    Images: ``runtime.images`` from config when set, else ``built_images`` (the app's Docker image assets).
    """
    scaling = runtime.scaling
    if runtime.images is not None:
        images = {
            kind: ImageRef(image.repository, image.tag, image.digest or "")
            for kind, image in (("runtime", runtime.images.runtime), ("agent", runtime.images.agent))
        }
    elif built_images is not None:
        images = dict(built_images)
    else:
        raise ValueError(f"runtimes.{runtime.name}.images: unset, and no built images were given")
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
            "batching": {
                "enabled": runtime.batching.enabled,
                "maxImages": runtime.batching.max_images,
                "maxWaitSeconds": runtime.batching.max_wait_seconds,
            },
            # What the kind runs and how it is probed (easel/kinds.py); empty lists keep the chart's defaults.
            "healthPath": runtime.profile.health_path,
            "startupTimeoutSeconds": runtime.startup_allowance_seconds,
            "command": list(runtime.command or []),
            "args": list(runtime.args or []),
            "modelMounts": [
                {"subPath": m.sub_path, "mountPath": m.mount_path} for m in runtime.profile.mounts
            ],
            # Stock images write next to their code; the Easel runtime runs on a read-only root.
            "readOnlyRootFilesystem": runtime.profile.read_only_root,
        },
        # Recovery (config `runtimes[].drain`): short held visibility, drain deadline per capacity type.
        "agent": {
            "shutdownGraceSeconds": runtime.drain_deadline_seconds,
            "receiveVisibilitySeconds": runtime.drain.receive_visibility_seconds,
        },
        "images": {
            kind: {"repository": image.repository, "tag": image.tag, "digest": image.digest}
            for kind, image in images.items()
        },
        "aws": {"region": refs.region},
        # Spans of the agent and runtime go to the node's ADOT collector (infra/constructs/observability.py).
        "telemetry": {
            "enabled": config.monitoring.telemetry.enabled,
            "otlpEndpoint": "",
            "samplingRatio": config.monitoring.telemetry.trace_sampling_ratio,
            "resourceAttributes": {"deployment.environment": names.prefix},
        },
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
        # EKS Pod Identity only: no IRSA annotation (the cluster has no OIDC provider, and the SDKs would
        # prefer that web identity to the Pod Identity credentials).
        "serviceAccount": {"create": True, "name": names.service_account(runtime.name), "roleArn": ""},
        "scaling": {
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "queueLength": scaling.queue_length,
            "activationQueueLength": scaling.activation_queue_length,
            "pollingInterval": scaling.polling_seconds,
            "cooldownPeriod": scaling.cooldown_seconds,
            # KEDA's operator assumes the workload role with its own Pod Identity credentials.
            "roleArn": role_arn,
            "identityOwner": "keda",
        },
        "ops": {
            "serviceAccountName": ops_service_account(names, runtime),
            "nodeSelector": dict(SYSTEM_NODES),
        },
        "costGuard": {
            "enabled": True,
            "notReadySeconds": config.monitoring.pool_not_ready_seconds,
            "metricNamespace": GUARD_METRIC_NAMESPACE,
        },
        "drain": {"enabled": True, "timeoutSeconds": DRAIN_TIMEOUT_SECONDS},
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


def ops_service_account(names: Names, runtime: RuntimeSpec) -> str:
    """The service account of the release's cost guard and drain hook (the chart's default name)."""
    return f"{names.release(runtime.name)}-ops"


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
        built_images: Mapping[str, ImageRef] | None = None,
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
        # The cost guard's identity: it may only put its own metric.
        self.ops_role = iam.Role(
            self,
            "OpsRole",
            description=f"Easel {release_name} cost guard: its CloudWatch metric only",
            assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL)),
        )
        self.ops_role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": GUARD_METRIC_NAMESPACE}},
            )
        )
        acknowledge(
            self.ops_role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; the statement is limited to the "
            f"{GUARD_METRIC_NAMESPACE} namespace by its cloudwatch:namespace condition.",
        )
        self.ops_pod_identity = eks.CfnPodIdentityAssociation(
            self,
            "OpsPodIdentity",
            cluster_name=cluster.cluster_name,
            namespace=config.cluster.namespace,
            service_account=ops_service_account(names, runtime),
            role_arn=self.ops_role.role_arn,
        )
        self.values = runtime_values(
            config, runtime, refs, names, role_arn=self.role.role_arn, built_images=built_images
        )
        self.release = eks.HelmChart(
            self,
            "Release",
            cluster=cluster,
            chart_asset=chart_asset,
            release=release_name,
            namespace=config.cluster.namespace,
            create_namespace=True,
            values=self.values,
            # helm uninstall waits for the pre-delete drain hook up to this long (helm's default is 5m).
            timeout=RELEASE_TIMEOUT,
        )
        self.release.node.add_dependency(self.pod_identity)
        self.release.node.add_dependency(self.ops_pod_identity)


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
        repo_root: Path = REPO_ROOT,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (chart_dir / "Chart.yaml").is_file():
            raise FileNotFoundError(f"the runtime chart is missing: {chart_dir / 'Chart.yaml'}")
        self.chart_asset = s3_assets.Asset(
            self, "Chart", path=str(chart_dir), exclude=["__pycache__", "*.pyc"]
        )
        # Built once for every runtime without prebuilt images in config.
        self.built_images: dict[str, ImageRef] | None = None
        if any(r.images is None for r in config.runtimes):
            self.built_images = image_assets(self, repo_root)
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
                built_images=self.built_images,
            )
            for dependency in depends_on:
                workload.release.node.add_dependency(dependency)
            self.runtimes[runtime.name] = workload
