"""The CDK app: ``config.yaml`` -> stacks ``<stack_name>`` (core) and ``<stack_name>-compute`` (cluster).

Run it through the CDK CLI (``npx aws-cdk@<version> synth``; ``cdk.json`` holds the app command and the
feature flags) or directly: ``python -m infra.app --out cdk.out [--config path]``. The config path comes
from ``--config``, else the ``config`` context value (``-c config=...``), else ``EASEL_CONFIG``, else
``config.yaml``. Synth is hermetic: no AWS calls, no Docker. The stacks are environment-agnostic unless
``env.account``/``env.region`` are set in the config.

cdk-nag's AwsSolutions pack runs as a policy-validation plugin on every synth: an unacknowledged finding
fails the synth and is written to ``<outdir>/validation-report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from easel.config import EaselConfig, load_config
from infra.stacks.compute import ComputeStack
from infra.stacks.core import CoreStack

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` of ``cdk.json`` (feature flags), so direct runs and tests synth like the CLI."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text()).get("context", {})
    return context


def config_path(app: cdk.App, explicit: str | Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    from_context = app.node.try_get_context("config")
    return Path(from_context or os.environ.get("EASEL_CONFIG") or "config.yaml")


def build_app(
    config: EaselConfig | str | Path | None = None,
    *,
    outdir: str | Path | None = None,
    context: dict[str, Any] | None = None,
    nag: bool = True,
) -> cdk.App:
    """Build (not synthesize) the app; ``config`` is a loaded config, a path, or None (see module doc)."""
    app = cdk.App(
        outdir=str(outdir) if outdir is not None else None,
        context={**cdk_json_context(), **(context or {})},
    )
    if not isinstance(config, EaselConfig):
        config = load_config(config_path(app, config))
    env = cdk.Environment(account=config.env.account, region=config.env.region)
    core = CoreStack(
        app,
        config.stack_name,
        description="Easel: API, task table, buckets, topics, lane queues, monitoring",
        config=config,
        env=env,
    )
    ComputeStack(
        app,
        f"{config.stack_name}-compute",
        description="Easel: VPC, EKS (Karpenter, KEDA, Mountpoint S3 CSI) and one GPU pool per runtime",
        config=config,
        core=core,
        admin_principal_arn=app.node.try_get_context("adminRoleArn"),
        env=env,
    )
    cdk.Tags.of(app).add("easel:stack", config.stack_name)
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="cloud assembly directory (default: CDK_OUTDIR or cdk.out)")
    parser.add_argument("--config", help="config file (default: context 'config', EASEL_CONFIG, config.yaml)")
    parser.add_argument("--no-nag", action="store_true", help="skip the cdk-nag AwsSolutions checks")
    args = parser.parse_args(argv)
    build_app(args.config, outdir=args.out, nag=not args.no_nag).synth()


if __name__ == "__main__":
    main()
