"""Cluster: EKS (``aws_eks_v2``) with a small system node group and the controllers the GPU pools need.

- **System node group** (managed, AL2023): runs Karpenter, KEDA, CoreDNS and the add-ons; GPU nodes come
  only from Karpenter, per runtime, through the runtime chart's NodePool/EC2NodeClass.
- **EKS Pod Identity** (the ``eks-pod-identity-agent`` add-on): every AWS identity in the cluster is a role
  associated with one service account; no OIDC provider, no node-role permissions for pods.
- **Karpenter** from its official OCI chart, with the controller policy, node role, access entry,
  interruption queue and EventBridge rules of Karpenter's getting-started CloudFormation template.
- **KEDA** from its official chart; the operator has its own Pod Identity role, which may only assume the
  workload roles (the runtime chart's TriggerAuthentication uses ``identityOwner: workload``).
- **Mountpoint for Amazon S3 CSI driver** and **CloudWatch observability** add-ons, each with a Pod Identity
  role. The stack scopes the CSI role to the models bucket (read-only).

Chart versions are pinned in config (``cluster.keda_chart_version``, ``cluster.karpenter_chart_version``);
``infra/versions.py`` holds the compatibility tables that tie them to ``cluster.kubernetes_version``.
"""

from __future__ import annotations

import json
from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.lambda_layer_kubectl_v36 import KubectlV36Layer
from constructs import Construct

from easel.config import Cluster as ClusterConfig
from easel.naming import Names
from infra.constructs.compliance import acknowledge, nag_resource
from infra.versions import KUBECTL_LAYERS

# The kubectl/helm layer of the cluster's Kubernetes minor (infra/versions.py KUBECTL_LAYERS).
KubectlLayer = KubectlV36Layer
KARPENTER_REPOSITORY = "oci://public.ecr.aws/karpenter/karpenter"
KARPENTER_NAMESPACE = "kube-system"
KARPENTER_SERVICE_ACCOUNT = "karpenter"
KEDA_REPOSITORY = "https://kedacore.github.io/charts"
KEDA_NAMESPACE = "keda"
KEDA_SERVICE_ACCOUNT = "keda-operator"
S3_CSI_SERVICE_ACCOUNT = "s3-csi-driver-sa"
CLOUDWATCH_NAMESPACE = "amazon-cloudwatch"
CLOUDWATCH_SERVICE_ACCOUNT = "cloudwatch-agent"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
# Below the kubectl handler's 15-minute Lambda timeout.
CONTROLLER_INSTALL_TIMEOUT = cdk.Duration.minutes(10)

# (rule id, source, detail-type): the events Karpenter handles from its interruption queue.
INTERRUPTION_EVENTS: tuple[tuple[str, str, str], ...] = (
    ("ScheduledChange", "aws.health", "AWS Health Event"),
    ("SpotInterruption", "aws.ec2", "EC2 Spot Instance Interruption Warning"),
    ("Rebalance", "aws.ec2", "EC2 Instance Rebalance Recommendation"),
    ("InstanceStateChange", "aws.ec2", "EC2 Instance State-change Notification"),
)


def kubernetes_version(version: str) -> eks.KubernetesVersion:
    """The enum member for ``1.36`` (``V1_36``) if this aws-cdk-lib has it, else ``KubernetesVersion.of``."""
    member = getattr(eks.KubernetesVersion, "V" + version.replace(".", "_"), None)
    return member if isinstance(member, eks.KubernetesVersion) else eks.KubernetesVersion.of(version)


def pod_identity_role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    """A role EKS Pod Identity can assume for a service account (sts:AssumeRole + sts:TagSession)."""
    return iam.Role(
        scope,
        construct_id,
        description=description,
        assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL)),
    )


class Cluster(Construct):
    """``cluster``, ``system_nodegroup``, the controllers' roles and charts, ``karpenter_node_role``,
    ``interruption_queue``, ``s3_csi_role``, and ``controllers`` (what workload releases must wait for)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        config: ClusterConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        admin_principal_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster_name = names.cluster
        self.secrets_key = kms.Key(
            self,
            "SecretsKey",
            description=f"{names.cluster}: EKS secrets envelope encryption",
            enable_key_rotation=True,
        )
        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=names.cluster,
            version=kubernetes_version(config.kubernetes_version),
            vpc=vpc,
            vpc_subnets=[subnets],
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            # Public endpoint (IAM-authenticated through access entries) so operators and the kubectl
            # handler reach it without a VPN; nodes use the private endpoint.
            endpoint_access=eks.EndpointAccess.PUBLIC_AND_PRIVATE,
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
            ],
            secrets_encryption_key=self.secrets_key,
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=_kubectl_layer(self, config.kubernetes_version)
            ),
            output_config_command=False,
        )
        # jsii's typing of eks.Cluster misses one ICluster member; the object implements it.
        self.handle = cast(eks.ICluster, self.cluster)
        if admin_principal_arn:
            self.cluster.grant_access(
                "Admin",
                admin_principal_arn,
                [
                    eks.AccessPolicy.from_access_policy_name(
                        "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                    )
                ],
            )

        self.system_nodegroup = self.cluster.add_nodegroup_capacity(
            "System",
            nodegroup_name=f"{names.cluster}-system",
            instance_types=[ec2.InstanceType(t) for t in config.system_instance_types],
            ami_type=_ami_type(config.system_instance_types),
            min_size=config.system_nodes,
            desired_size=config.system_nodes,
            max_size=config.system_nodes + 1,
            disk_size=50,
            subnets=subnets,
            labels={"easel.io/pool": "system"},
        )

        self.pod_identity_agent = eks.Addon(
            self, "PodIdentityAgent", cluster=self.handle, addon_name="eks-pod-identity-agent"
        )
        self.pod_identity_agent.node.add_dependency(self.system_nodegroup)

        self._karpenter(config)
        self._keda(config)
        self._addons()
        # Workload releases need the CRDs (Karpenter NodePool, KEDA ScaledObject), the CSI driver and
        # working Pod Identity before they install.
        self.controllers: list[Construct] = [
            self.karpenter_chart,
            self.keda_chart,
            self.s3_csi_addon,
            self.pod_identity_agent,
            self.vpc_cni_addon,
        ]
        self._acknowledge()

    # -- Karpenter ------------------------------------------------------------------------------------------
    def _karpenter(self, config: ClusterConfig) -> None:
        name = self.cluster_name
        self.karpenter_node_role = iam.Role(
            self,
            "KarpenterNodeRole",
            description=f"{name}: nodes launched by Karpenter",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(p)
                for p in (
                    "AmazonEKSWorkerNodePolicy",
                    "AmazonEKS_CNI_Policy",
                    "AmazonEC2ContainerRegistryPullOnly",
                    "AmazonSSMManagedInstanceCore",
                )
            ],
        )
        # Nodes join through an EC2_LINUX access entry (API authentication mode; no aws-auth ConfigMap).
        self.karpenter_node_access = eks.AccessEntry(
            self,
            "KarpenterNodeAccess",
            cluster=self.handle,
            principal=self.karpenter_node_role.role_arn,
            access_entry_type=eks.AccessEntryType.EC2_LINUX,
            access_policies=[],
        )

        self.interruption_queue = sqs.Queue(
            self,
            "InterruptionQueue",
            retention_period=cdk.Duration.minutes(5),
            # EventBridge cannot deliver into a queue under a customer-managed key without extra key policy;
            # SQS-managed SSE is what Karpenter's reference template uses.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.interruption_rules: list[events.Rule] = []
        for rule_id, source, detail_type in INTERRUPTION_EVENTS:
            rule = events.Rule(
                self,
                f"{rule_id}Rule",
                description=f"{name}: {detail_type} -> Karpenter interruption queue",
                event_pattern=events.EventPattern(source=[source], detail_type=[detail_type]),
            )
            rule.add_target(targets.SqsQueue(self.interruption_queue))
            self.interruption_rules.append(rule)

        self.karpenter_role = pod_identity_role(
            self, "KarpenterControllerRole", f"{name}: Karpenter controller"
        )
        self.karpenter_policy = iam.Policy(
            self,
            "KarpenterControllerPolicy",
            statements=karpenter_controller_statements(
                cluster_name=name,
                interruption_queue_arn=self.interruption_queue.queue_arn,
                node_role_arn=self.karpenter_node_role.role_arn,
            ),
        )
        self.karpenter_policy.attach_to_role(self.karpenter_role)
        self.karpenter_pod_identity = eks.CfnPodIdentityAssociation(
            self,
            "KarpenterPodIdentity",
            cluster_name=self.cluster.cluster_name,
            namespace=KARPENTER_NAMESPACE,
            service_account=KARPENTER_SERVICE_ACCOUNT,
            role_arn=self.karpenter_role.role_arn,
        )

        self.karpenter_chart = eks.HelmChart(
            self,
            "KarpenterChart",
            cluster=self.handle,
            chart="karpenter",
            repository=KARPENTER_REPOSITORY,
            version=config.karpenter_chart_version,
            release="karpenter",
            namespace=KARPENTER_NAMESPACE,
            create_namespace=False,
            # Wait for the controller to be ready: workload releases create NodePools right after.
            wait=True,
            timeout=CONTROLLER_INSTALL_TIMEOUT,
            values={
                "settings": {
                    "clusterName": name,
                    "interruptionQueue": self.interruption_queue.queue_name,
                },
                "serviceAccount": {"create": True, "name": KARPENTER_SERVICE_ACCOUNT},
                # The chart spreads replicas over nodes with a required anti-affinity.
                "replicas": min(2, config.system_nodes),
                # Karpenter must not run on nodes it manages.
                "nodeSelector": {"easel.io/pool": "system"},
            },
        )
        # The controller's credentials come from the Pod Identity agent: started before it, it has none.
        for dependency in (
            self.system_nodegroup,
            self.karpenter_pod_identity,
            self.karpenter_policy,
            self.pod_identity_agent,
        ):
            self.karpenter_chart.node.add_dependency(dependency)

    # -- KEDA -----------------------------------------------------------------------------------------------
    def _keda(self, config: ClusterConfig) -> None:
        self.keda_operator_role = pod_identity_role(
            self, "KedaOperatorRole", f"{self.cluster_name}: KEDA operator (assumes workload roles)"
        )
        self.keda_pod_identity = eks.CfnPodIdentityAssociation(
            self,
            "KedaPodIdentity",
            cluster_name=self.cluster.cluster_name,
            namespace=KEDA_NAMESPACE,
            service_account=KEDA_SERVICE_ACCOUNT,
            role_arn=self.keda_operator_role.role_arn,
        )
        self.keda_chart = eks.HelmChart(
            self,
            "KedaChart",
            cluster=self.handle,
            chart="keda",
            repository=KEDA_REPOSITORY,
            version=config.keda_chart_version,
            release="keda",
            namespace=KEDA_NAMESPACE,
            create_namespace=True,
            # Wait for KEDA's admission webhook: a ScaledObject created before it serves would be refused.
            wait=True,
            timeout=CONTROLLER_INSTALL_TIMEOUT,
            values={
                # The operator's credentials come from EKS Pod Identity (the association above names this
                # service account); IRSA stays off so the SA carries no role-arn annotation of its own.
                "serviceAccount": {"operator": {"create": True, "name": KEDA_SERVICE_ACCOUNT}},
                "podIdentity": {"aws": {"irsa": {"enabled": False}}},
                "nodeSelector": {"easel.io/pool": "system"},
            },
        )
        for dependency in (self.system_nodegroup, self.keda_pod_identity, self.pod_identity_agent):
            self.keda_chart.node.add_dependency(dependency)

    # -- add-ons --------------------------------------------------------------------------------------------
    def _addons(self) -> None:
        # The runtime chart ships a deny-all-ingress NetworkPolicy (no other pod reaches the runtime or the
        # agent's /drain); EKS accepts NetworkPolicy objects but enforces them only once the VPC CNI's
        # network policy agent is on. Taking the CNI over as a managed add-on turns it on.
        self.vpc_cni_addon = eks.CfnAddon(
            self,
            "VpcCni",
            addon_name="vpc-cni",
            cluster_name=self.cluster.cluster_name,
            resolve_conflicts="OVERWRITE",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
        )
        self.vpc_cni_addon.node.add_dependency(self.system_nodegroup)
        self.s3_csi_role = pod_identity_role(
            self, "S3CsiDriverRole", f"{self.cluster_name}: Mountpoint for Amazon S3 CSI driver"
        )
        self.s3_csi_addon = eks.CfnAddon(
            self,
            "S3CsiDriver",
            addon_name="aws-mountpoint-s3-csi-driver",
            cluster_name=self.cluster.cluster_name,
            resolve_conflicts="OVERWRITE",
            pod_identity_associations=[
                eks.CfnAddon.PodIdentityAssociationProperty(
                    role_arn=self.s3_csi_role.role_arn, service_account=S3_CSI_SERVICE_ACCOUNT
                )
            ],
        )
        self.cloudwatch_role = pod_identity_role(
            self, "CloudWatchAgentRole", f"{self.cluster_name}: CloudWatch agent (Container Insights)"
        )
        for policy in ("CloudWatchAgentServerPolicy", "AWSXrayWriteOnlyAccess"):
            self.cloudwatch_role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(policy))
        self.cloudwatch_addon = eks.CfnAddon(
            self,
            "CloudWatchObservability",
            addon_name="amazon-cloudwatch-observability",
            cluster_name=self.cluster.cluster_name,
            resolve_conflicts="OVERWRITE",
            pod_identity_associations=[
                eks.CfnAddon.PodIdentityAssociationProperty(
                    role_arn=self.cloudwatch_role.role_arn, service_account=CLOUDWATCH_SERVICE_ACCOUNT
                )
            ],
        )
        # Add-ons report ACTIVE only once their pods run, which needs nodes and Pod Identity.
        for addon in (self.s3_csi_addon, self.cloudwatch_addon):
            addon.node.add_dependency(self.system_nodegroup)
            addon.node.add_dependency(self.pod_identity_agent)

    # -- cdk-nag --------------------------------------------------------------------------------------------
    def _acknowledge(self) -> None:
        acknowledge(
            self.cluster,
            [
                _managed("AmazonEKSClusterPolicy"),
                _managed("AmazonEKSWorkerNodePolicy"),
                _managed("AmazonEKS_CNI_Policy"),
                _managed("AmazonEC2ContainerRegistryReadOnly"),
            ],
            "EKS requires these AWS managed policies on the cluster role and on managed node group roles; "
            "they are maintained by AWS alongside the EKS versions, which a hand-written copy would not be.",
        )
        provider = self.cluster.kubectl_provider
        assert isinstance(provider, Construct)
        handler = provider.node.find_child("Handler")
        assert isinstance(handler, lambda_.Function)
        has_ecr_public = handler.node.try_find_child("HasEcrPublic")
        assert isinstance(has_ecr_public, cdk.CfnCondition)
        acknowledge(
            provider,
            [
                _managed("service-role/AWSLambdaBasicExecutionRole"),
                _managed("service-role/AWSLambdaVPCAccessExecutionRole"),
                _conditional_ecr_public(provider, has_ecr_public),
                f"AwsSolutions-IAM5[Resource::{nag_resource(self, handler.function_arn + ':*')}]",
            ],
            "These are the CDK kubectl provider's own Lambda roles (logs, VPC networking, image and chart "
            "pulls, invoking its handler); aws_eks_v2 creates them and they only serve cluster provisioning.",
        )
        acknowledge(
            handler,
            "AwsSolutions-L1",
            "The kubectl handler's runtime is chosen by aws-cdk-lib to match its bundled kubectl layer; it "
            "runs only during deployments and moves forward with aws-cdk-lib upgrades.",
        )
        acknowledge(
            self.karpenter_node_role,
            [
                _managed(p)
                for p in (
                    "AmazonEKSWorkerNodePolicy",
                    "AmazonEKS_CNI_Policy",
                    "AmazonEC2ContainerRegistryPullOnly",
                    "AmazonSSMManagedInstanceCore",
                )
            ],
            "Karpenter's reference node role attaches exactly these AWS managed policies so nodes can join "
            "the cluster, run the VPC CNI, pull images and be reached through SSM instead of SSH.",
        )
        wildcard_resources = sorted(
            {
                nag_resource(self, resource)
                for statement in karpenter_controller_statements(
                    cluster_name=self.cluster_name,
                    interruption_queue_arn=self.interruption_queue.queue_arn,
                    node_role_arn=self.karpenter_node_role.role_arn,
                )
                for resource in statement.resources
                if "*" in nag_resource(self, resource)
            }
        )
        acknowledge(
            self.karpenter_policy,
            [f"AwsSolutions-IAM5[Resource::{r}]" for r in wildcard_resources],
            "This is Karpenter's published controller policy: instance, fleet and launch-template ARNs are "
            "unknown before launch, so it scopes them by region and by the cluster's ownership tags instead, "
            "and its Describe and pricing reads have no resource-level permissions.",
        )
        acknowledge(
            self.interruption_queue,
            "AwsSolutions-SQS3",
            "The interruption queue carries short-lived EC2 events (five-minute retention) that Karpenter "
            "consumes or drops; a stale event has no value, so there is nothing a DLQ would preserve.",
        )
        acknowledge(
            self.cloudwatch_role,
            [_managed("CloudWatchAgentServerPolicy"), _managed("AWSXrayWriteOnlyAccess")],
            "The CloudWatch observability add-on documents these AWS managed policies for its agent; they "
            "only allow publishing metrics, logs and traces, never reading application data.",
        )


def karpenter_controller_statements(
    *, cluster_name: str, interruption_queue_arn: str, node_role_arn: str
) -> list[iam.PolicyStatement]:
    """The controller policy of Karpenter's getting-started CloudFormation template (v1), scoped to
    ``cluster_name`` by resource tags, to this region, and to the given queue and node role."""
    partition, region, account = cdk.Aws.PARTITION, cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID
    ec2_arn = f"arn:{partition}:ec2:{region}"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    request_owned = {
        f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned",
        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
    }
    tagged_resources = [
        f"{ec2_arn}:*:{kind}/*"
        for kind in (
            "fleet",
            "instance",
            "volume",
            "network-interface",
            "launch-template",
            "spot-instances-request",
        )
    ]
    instance_profiles = f"arn:{partition}:iam::{account}:instance-profile/*"
    return [
        iam.PolicyStatement(
            sid="AllowScopedEC2InstanceAccessActions",
            actions=["ec2:RunInstances", "ec2:CreateFleet"],
            resources=[
                f"{ec2_arn}::image/*",
                f"{ec2_arn}::snapshot/*",
                f"{ec2_arn}:*:security-group/*",
                f"{ec2_arn}:*:subnet/*",
                f"{ec2_arn}:*:capacity-reservation/*",
            ],
        ),
        iam.PolicyStatement(
            sid="AllowScopedEC2LaunchTemplateAccessActions",
            actions=["ec2:RunInstances", "ec2:CreateFleet"],
            resources=[f"{ec2_arn}:*:launch-template/*"],
            conditions={
                "StringEquals": owned,
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedEC2InstanceActionsWithTags",
            actions=["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            resources=[*tagged_resources, f"{ec2_arn}:*:capacity-reservation/*"],
            conditions={
                "StringEquals": request_owned,
                "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedResourceCreationTagging",
            actions=["ec2:CreateTags"],
            resources=tagged_resources,
            conditions={
                "StringEquals": {
                    **request_owned,
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
                "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedResourceTagging",
            actions=["ec2:CreateTags"],
            resources=[f"{ec2_arn}:*:instance/*"],
            conditions={
                "StringEquals": owned,
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                },
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedDeletion",
            actions=["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            resources=[f"{ec2_arn}:*:instance/*", f"{ec2_arn}:*:launch-template/*"],
            conditions={
                "StringEquals": owned,
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
            },
        ),
        iam.PolicyStatement(
            sid="AllowRegionalReadActions",
            actions=[
                "ec2:DescribeCapacityReservations",
                "ec2:DescribeImages",
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSpotPriceHistory",
                "ec2:DescribeSubnets",
            ],
            resources=["*"],
            conditions={"StringEquals": {"aws:RequestedRegion": region}},
        ),
        iam.PolicyStatement(
            sid="AllowSSMReadActions",
            actions=["ssm:GetParameter"],
            resources=[
                f"arn:{partition}:ssm:{region}::parameter/aws/service/*",
                f"arn:{partition}:ssm:{region}:{account}:parameter/imagebuilder/*",
            ],
        ),
        iam.PolicyStatement(sid="AllowPricingReadActions", actions=["pricing:GetProducts"], resources=["*"]),
        iam.PolicyStatement(
            sid="AllowInterruptionQueueActions",
            actions=["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            resources=[interruption_queue_arn],
        ),
        iam.PolicyStatement(
            sid="AllowPassingInstanceRole",
            actions=["iam:PassRole"],
            resources=[node_role_arn],
            conditions={
                "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedInstanceProfileCreationActions",
            actions=["iam:CreateInstanceProfile"],
            resources=[instance_profiles],
            conditions={
                "StringEquals": {**request_owned, "aws:RequestTag/topology.kubernetes.io/region": region},
                "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedInstanceProfileTagActions",
            actions=["iam:TagInstanceProfile"],
            resources=[instance_profiles],
            conditions={
                "StringEquals": {
                    **owned,
                    "aws:ResourceTag/topology.kubernetes.io/region": region,
                    **request_owned,
                    "aws:RequestTag/topology.kubernetes.io/region": region,
                },
                "StringLike": {
                    "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                    "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*",
                },
            },
        ),
        iam.PolicyStatement(
            sid="AllowScopedInstanceProfileActions",
            actions=[
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            resources=[instance_profiles],
            conditions={
                "StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region},
                "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
            },
        ),
        iam.PolicyStatement(
            sid="AllowInstanceProfileReadActions",
            actions=["iam:GetInstanceProfile"],
            resources=[instance_profiles],
        ),
        iam.PolicyStatement(
            sid="AllowAPIServerEndpointDiscovery",
            actions=["eks:DescribeCluster"],
            resources=[f"arn:{partition}:eks:{region}:{account}:cluster/{cluster_name}"],
        ),
    ]


def _kubectl_layer(scope: Construct, version: str) -> lambda_.ILayerVersion:
    if KUBECTL_LAYERS.get(version) != KubectlLayer.__module__:
        raise ValueError(
            f"cluster.kubernetes_version: {version} needs its kubectl layer package "
            f"(this app ships {KubectlLayer.__module__}; see infra/versions.py)"
        )
    return KubectlLayer(scope, "KubectlLayer")


def _managed(policy: str) -> str:
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]"


def _conditional_ecr_public(scope: Construct, condition: cdk.CfnCondition) -> str:
    """The kubectl handler's ECR Public policy is attached through Fn::If (not in every partition)."""
    policy_arn = {
        "Fn::If": [
            cdk.Stack.of(scope).resolve(condition.logical_id),
            {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly",
                    ],
                ]
            },
            {"Ref": "AWS::NoValue"},
        ]
    }
    return f"AwsSolutions-IAM4[Policy::{json.dumps(policy_arn, separators=(',', ':'))}]"


def _ami_type(instance_types: list[str]) -> eks.NodegroupAmiType:
    arm = [ec2.InstanceType(t).architecture == ec2.InstanceArchitecture.ARM_64 for t in instance_types]
    if all(arm):
        return eks.NodegroupAmiType.AL2023_ARM_64_STANDARD
    if any(arm):
        raise ValueError(f"cluster.system_instance_types mixes arm64 and x86_64 types: {instance_types}")
    return eks.NodegroupAmiType.AL2023_X86_64_STANDARD
