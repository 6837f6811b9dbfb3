"""Network: the VPC the cluster runs in.

Public subnets hold only the NAT gateway(s); nodes (system node group and Karpenter GPU nodes) live in the
private subnets, which carry the ``karpenter.sh/discovery`` tag the runtime chart's EC2NodeClass selects.
S3 and DynamoDB gateway endpoints are always on (free, and model downloads through a NAT gateway would be
billed per GB); interface endpoints for the services the pods call are optional
(``network.interface_endpoints``, and always on without NAT gateways).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from easel.config import Network as NetworkConfig

KARPENTER_DISCOVERY_TAG = "karpenter.sh/discovery"
VPC_CIDR = "10.0.0.0/16"

# Interface endpoints the pods and Karpenter use: queues, results topic, image pulls, credentials (STS and the
# EKS Pod Identity agent's eks-auth), and the EC2 API Karpenter launches nodes through.
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "EksAuth": ec2.InterfaceVpcEndpointAwsService.EKS_AUTH,
    "Ec2": ec2.InterfaceVpcEndpointAwsService.EC2,
}


class Network(Construct):
    """VPC with private node subnets, gateway endpoints, optional interface endpoints and a flow log."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: NetworkConfig, cluster_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        private_type = (
            ec2.SubnetType.PRIVATE_WITH_EGRESS if config.nat_gateways > 0 else ec2.SubnetType.PRIVATE_ISOLATED
        )
        subnets = [ec2.SubnetConfiguration(name="nodes", subnet_type=private_type, cidr_mask=19)]
        if config.nat_gateways > 0:
            subnets.insert(
                0, ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            )

        self.flow_log_group = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            nat_gateways=config.nat_gateways,
            subnet_configuration=subnets,
            # Rejected traffic is what an operator debugs with; accepted traffic would multiply the log bill.
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
            max_azs=config.max_azs,
        )
        self.private_subnets = ec2.SubnetSelection(subnet_type=private_type)
        for subnet in self.vpc.select_subnets(subnet_type=private_type).subnets:
            cdk.Tags.of(subnet).add(KARPENTER_DISCOVERY_TAG, cluster_name)

        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        self.endpoint_security_group: ec2.SecurityGroup | None = None
        if config.interface_endpoints or config.nat_gateways == 0:
            # One group for all endpoints: HTTPS from inside the VPC only (a literal CIDR, so the rule is
            # checkable at synth rather than an intrinsic).
            self.endpoint_security_group = ec2.SecurityGroup(
                self,
                "EndpointSecurityGroup",
                vpc=self.vpc,
                description="HTTPS from the VPC to the interface endpoints",
                allow_all_outbound=False,
            )
            self.endpoint_security_group.add_ingress_rule(
                ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(443), "HTTPS from the VPC"
            )
            for name, service in INTERFACE_ENDPOINTS.items():
                self.interface_endpoints[name] = self.vpc.add_interface_endpoint(
                    name,
                    service=service,
                    subnets=self.private_subnets,
                    private_dns_enabled=True,
                    security_groups=[self.endpoint_security_group],
                    open=False,
                )


def deploy_time_availability_zones(count: int) -> list[str]:
    """The first ``count`` AZs of the region as ``Fn::Select``/``Fn::GetAZs``, resolved at deploy time.

    A stack returns this from its ``availability_zones``: CDK would otherwise look AZs up through the EC2
    API for a stack with a concrete account (synth would need credentials) and cap an environment-agnostic
    stack at two AZs.
    """
    return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(count)]
