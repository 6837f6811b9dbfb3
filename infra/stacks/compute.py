"""The compute stack: VPC, EKS cluster with its controllers, and one GPU pool (Helm release) per runtime.

It grants the workload roles exactly what the queue agent does with the core stack's resources. Buckets,
the table, queues, the results topic and their KMS keys are cross-stack references (the retained buckets and
table have generated names). The stack depends on the core stack.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from easel.config import EaselConfig
from easel.naming import Names
from infra.constructs.cluster import Cluster
from infra.constructs.compliance import acknowledge, nag_resource
from infra.constructs.grants import (
    OBJECT_READ,
    OBJECT_READ_WRITE_DELETE,
    grant_assume,
    grant_list,
    grant_objects,
    grant_publish,
)
from infra.constructs.network import Network, deploy_time_availability_zones
from infra.constructs.observability import Observability
from infra.constructs.workloads import GUARD_METRIC, GUARD_METRIC_NAMESPACE, Workloads
from infra.stacks.core import CoreStack, export_name

# The queue agent's table access: read a task (cancel check) and move its status (conditional updates).
# PutItem: the agent creates the record of a task published straight to the tasks topic (conditional put).
WORKLOAD_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
OUTPUTS_PREFIX = "tenants/"


class ComputeStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EaselConfig,
        core: CoreStack,
        admin_principal_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._max_azs = config.network.max_azs
        names = Names.of(config, account=self.account, region=self.region)
        messaging = core.messaging
        self.add_stack_dependency(core)

        # The core stack's retained storage (generated names), imported by export name.
        def imported(export: str) -> str:
            return cdk.Fn.import_value(export_name(core.stack_name, export))

        models_bucket = s3.Bucket.from_bucket_name(self, "ModelsBucket", imported("models-bucket"))
        outputs_bucket = s3.Bucket.from_bucket_name(self, "OutputsBucket", imported("outputs-bucket"))
        table = dynamodb.Table.from_table_name(self, "TasksTable", imported("tasks-table"))

        self.network = Network(self, "Network", config=config.network, cluster_name=names.cluster)
        self.cluster = Cluster(
            self,
            "Cluster",
            names=names,
            config=config.cluster,
            vpc=self.network.vpc,
            subnets=self.network.private_subnets,
            admin_principal_arn=admin_principal_arn,
        )
        self.observability: Observability | None = None
        if config.monitoring.telemetry.enabled:
            self.observability = Observability(
                self,
                "Observability",
                names=names,
                config=config.monitoring.telemetry,
                cluster=self.cluster.handle,
                depends_on=[self.cluster.system_nodegroup, self.cluster.pod_identity_agent],
            )
        self.workloads = Workloads(
            self,
            "Workloads",
            config=config,
            names=names,
            cluster=self.cluster.handle,
            keda_operator_role=self.cluster.keda_operator_role,
            node_role=self.cluster.karpenter_node_role,
            lanes=messaging.lanes,
            table=table,
            outputs_bucket=outputs_bucket,
            models_bucket=models_bucket,
            results_topic=messaging.results_topic,
            depends_on=self.cluster.controllers,
        )

        # Mountpoint (driver identity): read-only on the models bucket.
        grant_list(models_bucket, self.cluster.s3_csi_role)
        grant_objects(models_bucket, self.cluster.s3_csi_role, key_pattern="*", actions=OBJECT_READ)

        for name, workload in self.workloads.runtimes.items():
            self._cost_guard_alarm(names, name, core)
            role = workload.role
            for lane in messaging.lanes[name].values():
                lane.queue.grant_consume_messages(role)
            grant_list(models_bucket, role)
            grant_objects(models_bucket, role, key_pattern="*", actions=OBJECT_READ)
            grant_list(outputs_bucket, role, prefix=OUTPUTS_PREFIX)
            grant_objects(
                outputs_bucket, role, key_pattern=f"{OUTPUTS_PREFIX}*", actions=OBJECT_READ_WRITE_DELETE
            )
            table.grant(role, *WORKLOAD_TABLE_ACTIONS)
            grant_publish(messaging.results_topic, role)
            grant_assume(role, self.cluster.keda_operator_role)
            acknowledge(
                role,
                [
                    f"AwsSolutions-IAM5[Resource::{nag_resource(self, models_bucket.arn_for_objects('*'))}]",
                    "AwsSolutions-IAM5[Resource::"
                    f"{nag_resource(self, outputs_bucket.arn_for_objects(OUTPUTS_PREFIX + '*'))}]",
                ],
                "The runtime reads any model in the models bucket (its store paths come from config) and "
                "writes results under tenants/<tenant>/ for whichever tenant submitted the task; the object "
                "wildcards stay inside those two locations and the actions are named one by one.",
            )
        acknowledge(
            self.cluster.s3_csi_role,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, models_bucket.arn_for_objects('*'))}]",
            "Mountpoint mounts the whole models bucket read-only (GetObject and ListBucket only), so its "
            "object permission has to cover every key of that one bucket.",
        )
        # The kubectl handler downloads the runtime chart asset from the CDK assets bucket.
        acknowledge(
            self.cluster.cluster.kubectl_provider or self.cluster.cluster,
            [
                "AwsSolutions-IAM5[Action::s3:GetBucket*]",
                "AwsSolutions-IAM5[Action::s3:GetObject*]",
                "AwsSolutions-IAM5[Action::s3:List*]",
                "AwsSolutions-IAM5[Resource::"
                f"{nag_resource(self, self.workloads.chart_asset.bucket.arn_for_objects('*'))}]",
            ],
            "CDK's HelmChart grants the kubectl handler read access to the bootstrap assets bucket so it "
            "can download the runtime chart asset; the bucket holds only this app's deployment assets.",
        )

        cluster_name = self.cluster.cluster.cluster_name
        cdk.CfnOutput(self, "ClusterName", value=cluster_name, description="EKS cluster")
        cdk.CfnOutput(
            self,
            "KubeconfigCommand",
            value=f"aws eks update-kubeconfig --region {self.region} --name {cluster_name}",
            description="Point kubectl at the cluster (needs an access entry: -c adminRoleArn=...)",
        )

    def _cost_guard_alarm(self, names: Names, runtime: str, core: CoreStack) -> None:
        """Alarm when the pool's cost guard reports pods not Ready past its deadline (it has then paused the
        pool at zero replicas: somebody has to fix the cause and resume it, docs/deploy.md)."""
        metric = cloudwatch.Metric(
            namespace=GUARD_METRIC_NAMESPACE,
            metric_name=GUARD_METRIC,
            dimensions_map={"Release": names.release(runtime), "Runtime": runtime},
            statistic="Maximum",
            period=cdk.Duration.minutes(5),
        )
        alarm = metric.create_alarm(
            self,
            f"PoolNotReady{runtime.title().replace('-', '')}",
            alarm_description=(
                f"{names.release(runtime)}: pods stayed not Ready past the cost guard's deadline; the pool "
                "is paused at zero replicas (see docs/deploy.md, Cost guard)"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(core.monitoring.alarms_topic))

    @property
    def availability_zones(self) -> list[str]:
        """The first ``network.max_azs`` AZs, resolved at deploy time (synth makes no AWS call)."""
        return deploy_time_availability_zones(self._max_azs)
