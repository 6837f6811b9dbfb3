"""Network: private node subnets, gateway endpoints, optional interface endpoints; nag-clean in every setting."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from easel.config import Network as NetworkConfig
from infra.app import cdk_json_context
from infra.constructs.network import (
    INTERFACE_ENDPOINTS,
    KARPENTER_DISCOVERY_TAG,
    Network,
    deploy_time_availability_zones,
)
from tests.infra.conftest import missing_context

pytestmark = pytest.mark.infra


class _AzStack(cdk.Stack):
    """Like the compute stack: as many AZs as configured, resolved at deploy time."""

    max_azs = 2

    @property
    def availability_zones(self) -> list[str]:
        return deploy_time_availability_zones(self.max_azs)


@pytest.mark.parametrize(
    ("config", "interface_endpoints"),
    [
        (NetworkConfig(), 0),
        (NetworkConfig(max_azs=3, nat_gateways=2, interface_endpoints=True), len(INTERFACE_ENDPOINTS)),
        # No NAT: isolated subnets, so the endpoints are the only way to AWS APIs.
        (NetworkConfig(nat_gateways=0), len(INTERFACE_ENDPOINTS)),
    ],
    ids=["default", "endpoints", "no-nat"],
)
def test_network_variants(config: NetworkConfig, interface_endpoints: int, tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path), context=cdk_json_context())
    # An explicit account too: AZs must still not be looked up.
    stack = _AzStack(app, "NetworkOnly", env=cdk.Environment(account="123456789012", region="us-west-2"))
    stack.max_azs = config.max_azs
    Network(stack, "Network", config=config, cluster_name="easel")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    assert not missing_context(tmp_path)  # no lookups, even with an explicit account
    assert json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"] == []

    template = Template.from_stack(stack)
    resources = template.to_json()["Resources"]
    endpoints = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint"]
    gateways = [e for e in endpoints if e.get("VpcEndpointType", "Gateway") == "Gateway"]
    assert len(gateways) == 2  # S3 and DynamoDB
    assert len(endpoints) - len(gateways) == interface_endpoints
    template.resource_count_is("AWS::EC2::NatGateway", config.nat_gateways)
    template.resource_count_is("AWS::EC2::FlowLog", 1)
    subnets = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::Subnet"]
    tagged = [s for s in subnets if {"Key": KARPENTER_DISCOVERY_TAG, "Value": "easel"} in s["Tags"]]
    assert len(tagged) == config.max_azs
    assert all(s["MapPublicIpOnLaunch"] is False for s in tagged)
