"""Observability of the GPU pools: an ADOT collector and NVIDIA's DCGM exporter, both Helm releases.

- **Collector** (OpenTelemetry's ``opentelemetry-collector`` chart, ``mode: daemonset``, the AWS Distro for
  OpenTelemetry image): one pod per node, reachable by the pods of that node on the host ports 4317 (OTLP
  gRPC) and 4318 (OTLP HTTP); the runtime chart points ``OTEL_EXPORTER_OTLP_ENDPOINT`` at the node's IP. It
  sends traces to X-Ray (``awsxray``) and metrics as EMF documents into one log group (``awsemf``), which
  CloudWatch turns into metrics of the ``Easel`` namespace.
- **DCGM exporter** (NVIDIA's chart): a DaemonSet on the GPU nodes only (they carry the ``nvidia.com/gpu``
  taint and the ``easel.dev/runtime`` label), serving GPU utilisation and memory per GPU with the pod that
  holds it. The collector scrapes the exporter pod of its own node and derives the ``runtime`` dimension
  from the pod name (``<stack>-<runtime>-<replicaset>-<pod>``).

The collector's identity is an EKS Pod Identity role with exactly what the two exporters call: the X-Ray
write and sampling actions (no resource-level permissions exist for them) and log-stream writes inside its
own log group. The DCGM exporter calls no AWS API.
"""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from easel.config import Telemetry
from easel.naming import Names
from infra.constructs.cluster import pod_identity_role
from infra.constructs.compliance import acknowledge, nag_resource

NAMESPACE = "observability"
COLLECTOR_RELEASE = "adot-collector"
COLLECTOR_SERVICE_ACCOUNT = "adot-collector"
COLLECTOR_REPOSITORY = "https://open-telemetry.github.io/opentelemetry-helm-charts"
DCGM_RELEASE = "dcgm-exporter"
DCGM_REPOSITORY = "https://nvidia.github.io/dcgm-exporter/helm-charts"
DCGM_PORT = 9400
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
SCRAPE_SECONDS = 30
# The DCGM fields the dashboard and the idle-GPU alarm read (percent; MiB).
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GPU_MEMORY_USED = "DCGM_FI_DEV_FB_USED"
GPU_MEMORY_FREE = "DCGM_FI_DEV_FB_FREE"
GPU_METRICS = (GPU_UTIL, GPU_MEMORY_USED, GPU_MEMORY_FREE)
XRAY_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
)
LOG_STREAM_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")
RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def metrics_log_group_name(names: Names) -> str:
    return f"/aws/easel/{names.prefix}/metrics"


def collector_config(*, names: Names, region: str, log_group: str) -> dict[str, Any]:
    """The collector pipelines, merged over the chart's default ``config``. The chart's unused defaults (its
    jaeger/zipkin receivers, its OTLP-to-debug logs pipeline) stay: the CDK drops ``null`` values, so they
    cannot be removed from here, and they export nothing anywhere."""
    pod_pattern = rf"{re.escape(names.prefix)}-(.+)-[a-z0-9]+-[a-z0-9]+"
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"${{env:MY_POD_IP}}:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"${{env:MY_POD_IP}}:{OTLP_HTTP_PORT}"},
                }
            },
            "prometheus": {
                "config": {
                    "scrape_configs": [
                        {
                            "job_name": "dcgm-exporter",
                            "scrape_interval": f"{SCRAPE_SECONDS}s",
                            # The exporter's own labels (pod, namespace, gpu, modelName) are the GPU's user.
                            "honor_labels": True,
                            "kubernetes_sd_configs": [
                                {
                                    "role": "pod",
                                    # Only the exporter pod of this collector's node.
                                    "selectors": [
                                        {"role": "pod", "field": "spec.nodeName=${env:K8S_NODE_NAME}"}
                                    ],
                                }
                            ],
                            "relabel_configs": [
                                {
                                    "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                                    "regex": "dcgm-exporter",
                                    "action": "keep",
                                },
                                {
                                    "source_labels": ["__meta_kubernetes_pod_ip"],
                                    "regex": "(.+)",
                                    "replacement": f"$${{1}}:{DCGM_PORT}",
                                    "target_label": "__address__",
                                },
                            ],
                            "metric_relabel_configs": [
                                {
                                    "source_labels": ["__name__"],
                                    "regex": "|".join(GPU_METRICS),
                                    "action": "keep",
                                },
                                # The runtime from the pod that holds the GPU: <stack>-<runtime>-<rs>-<id>.
                                {
                                    "source_labels": ["pod"],
                                    "regex": pod_pattern,
                                    "replacement": "$${1}",
                                    "target_label": "runtime",
                                },
                            ],
                        }
                    ]
                }
            },
        },
        "processors": {
            "batch": {"timeout": "10s"},
            "resource/cluster": {
                "attributes": [{"key": "ClusterName", "value": names.cluster, "action": "upsert"}]
            },
        },
        "exporters": {
            "awsxray": {"region": region, "indexed_attributes": ["easel.task_id", "easel.tenant"]},
            "awsemf": {
                "region": region,
                "namespace": names.metrics_namespace,
                "log_group_name": log_group,
                "log_stream_name": "${env:K8S_NODE_NAME}",
                "resource_to_telemetry_conversion": {"enabled": True},
                "dimension_rollup_option": "NoDimensionRollup",
                "metric_declarations": [
                    {
                        "dimensions": [["runtime"], ["runtime", "pod"]],
                        "metric_name_selectors": [f"^{m}$" for m in GPU_METRICS],
                    }
                ],
            },
        },
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "resource/cluster", "batch"],
                    "exporters": ["awsxray"],
                },
                "metrics": {
                    "receivers": ["prometheus"],
                    "processors": ["memory_limiter", "resource/cluster", "batch"],
                    "exporters": ["awsemf"],
                },
            }
        },
    }


def collector_values(*, names: Names, config: Telemetry, region: str, log_group: str) -> dict[str, Any]:
    repository, tag = config.collector_image.rsplit(":", 1)
    return {
        "mode": "daemonset",
        "image": {"repository": repository, "tag": tag},
        # The ADOT image's binary (the chart runs /<command.name>).
        "command": {"name": "awscollector"},
        "serviceAccount": {"create": True, "name": COLLECTOR_SERVICE_ACCOUNT},
        # The Prometheus receiver discovers the exporter pod of its node: read pods, nothing else.
        "clusterRole": {
            "create": True,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        # GPU nodes carry the nvidia.com/gpu taint; their pods are the ones that send spans.
        "tolerations": [GPU_TOLERATION],
        "ports": {
            "otlp": {
                "enabled": True,
                "containerPort": OTLP_GRPC_PORT,
                "servicePort": OTLP_GRPC_PORT,
                "hostPort": OTLP_GRPC_PORT,
                "protocol": "TCP",
            },
            "otlp-http": {
                "enabled": True,
                "containerPort": OTLP_HTTP_PORT,
                "servicePort": OTLP_HTTP_PORT,
                "hostPort": OTLP_HTTP_PORT,
                "protocol": "TCP",
            },
            "jaeger-compact": {"enabled": False},
            "jaeger-thrift": {"enabled": False},
            "jaeger-grpc": {"enabled": False},
            "zipkin": {"enabled": False},
        },
        "extraEnvs": [
            {"name": "AWS_REGION", "value": region},
            {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "config": collector_config(names=names, region=region, log_group=log_group),
    }


def dcgm_values() -> dict[str, Any]:
    return {
        # GPU nodes only: Karpenter's GPU pools label them with the runtime they serve.
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "easel.dev/runtime", "operator": "Exists"}]}
                    ]
                }
            }
        },
        "tolerations": [GPU_TOLERATION],
        # The collector scrapes the pod directly; no Prometheus Operator in the cluster.
        "serviceMonitor": {"enabled": False},
        "kubernetes": {"enablePodLabels": False},
    }


class Observability(Construct):
    """``metrics_log_group``, ``collector_role`` (Pod Identity), ``collector_chart``, ``dcgm_chart``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        config: Telemetry,
        cluster: eks.ICluster,
        depends_on: list[Construct],
    ) -> None:
        super().__init__(scope, construct_id)
        region = cdk.Stack.of(self).region
        self.metrics_log_group = logs.LogGroup(
            self,
            "MetricsLogGroup",
            log_group_name=metrics_log_group_name(names),
            retention=RETENTION[config.metrics_log_retention_days],
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # The group's GetAtt Arn ends in ":*"; spell the group and its streams out instead.
        group_arn = cdk.Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name=self.metrics_log_group.log_group_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        streams_arn = f"{group_arn}:log-stream:*"
        self.collector_role = pod_identity_role(
            self, "CollectorRole", f"{names.cluster}: ADOT collector (X-Ray traces, GPU metrics)"
        )
        self.collector_policy = iam.Policy(
            self,
            "CollectorPolicy",
            statements=[
                iam.PolicyStatement(sid="XRayWrite", actions=list(XRAY_ACTIONS), resources=["*"]),
                iam.PolicyStatement(
                    sid="MetricsLogStreams",
                    actions=list(LOG_STREAM_ACTIONS),
                    resources=[group_arn, streams_arn],
                ),
            ],
        )
        self.collector_policy.attach_to_role(self.collector_role)
        self.collector_pod_identity = eks.CfnPodIdentityAssociation(
            self,
            "CollectorPodIdentity",
            cluster_name=cluster.cluster_name,
            namespace=NAMESPACE,
            service_account=COLLECTOR_SERVICE_ACCOUNT,
            role_arn=self.collector_role.role_arn,
        )
        self.collector_chart = eks.HelmChart(
            self,
            "CollectorChart",
            cluster=cluster,
            chart="opentelemetry-collector",
            repository=COLLECTOR_REPOSITORY,
            version=config.collector_chart_version,
            release=COLLECTOR_RELEASE,
            namespace=NAMESPACE,
            create_namespace=True,
            values=collector_values(
                names=names,
                config=config,
                region=region,
                log_group=metrics_log_group_name(names),
            ),
        )
        self.dcgm_chart = eks.HelmChart(
            self,
            "DcgmExporterChart",
            cluster=cluster,
            chart="dcgm-exporter",
            repository=DCGM_REPOSITORY,
            version=config.dcgm_exporter_chart_version,
            release=DCGM_RELEASE,
            namespace=NAMESPACE,
            create_namespace=True,
            values=dcgm_values(),
        )
        # The collector's credentials come from the Pod Identity agent; both need the system nodes.
        deps = (*depends_on, self.collector_pod_identity, self.collector_policy, self.metrics_log_group)
        for dependency in deps:
            self.collector_chart.node.add_dependency(dependency)
        for dependency in depends_on:
            self.dcgm_chart.node.add_dependency(dependency)
        acknowledge(
            self.collector_policy,
            [
                "AwsSolutions-IAM5[Resource::*]",
                f"AwsSolutions-IAM5[Resource::{nag_resource(self, streams_arn)}]",
            ],
            "X-Ray's trace and sampling actions have no resource-level permissions; the log-stream wildcard "
            "stays inside the collector's own metrics log group (one stream per node).",
        )
