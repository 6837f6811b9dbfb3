"""The one way Easel builds a Python Lambda function: the staged code asset (``easel`` + ``lambdas``,
no Docker), Python 3.13 on arm64, the AWS-managed Powertools layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from easel.config import EaselConfig
from infra.constructs.compliance import acknowledge
from infra.lambda_bundle import stage_api_bundle

PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_13


def staging_dir(scope: Construct) -> Path:
    # Inside the cloud assembly directory: staged once per synth, next to the assets CDK copies from it.
    stage = cdk.Stage.of(scope)
    assert stage is not None
    return Path(stage.outdir) / "easel-staging" / scope.node.addr


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    config: EaselConfig,
    handler: str,
    description: str,
    powertools_layer: lambda_.ILayerVersion,
    log_group: logs.ILogGroup,
    memory_size: int,
    timeout: cdk.Duration,
    environment: dict[str, str],
    **options: Any,
) -> lambda_.Function:
    """A function over the shared staged asset (identical content, so one S3 object for all of them)."""
    bundle = stage_api_bundle(config, staging_dir(scope))
    function = lambda_.Function(
        scope,
        construct_id,
        description=description,
        runtime=PYTHON_RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=lambda_.Code.from_asset(str(bundle)),
        layers=[powertools_layer],
        memory_size=memory_size,
        timeout=timeout,
        log_group=log_group,
        environment=environment,
        **options,
    )
    acknowledge(
        function,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "The AWS managed basic execution policy only lets the function write its own CloudWatch log "
        "streams, which is exactly what a Lambda needs and nothing more.",
    )
    acknowledge(
        function,
        "AwsSolutions-L1",
        "The runtime is pinned to Python 3.13 because the managed Powertools layer release pinned here "
        "is published and tested for it; moving to a newer runtime is a deliberate upgrade.",
    )
    return function
