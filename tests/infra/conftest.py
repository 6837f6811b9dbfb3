"""Session fixtures: each test config is synthesized ONCE (with cdk-nag on) and shared by every infra test.

Synth is hermetic (no AWS calls, no Docker), so these run offline. A synth that cdk-nag (or CDK's built-in
CloudFormation validation) rejects raises here, with the violations from ``validation-report.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk
from aws_cdk.assertions import Template

from easel.config import EaselConfig, load_config
from easel.naming import Names
from infra.app import build_app
from infra.stacks.compute import ComputeStack
from infra.stacks.core import CoreStack
from tests.charts.chart_helpers import crd_validators, helm
from tests.conftest import EXAMPLE_CONFIG, TWO_RUNTIMES_CONFIG

# The chart fixtures, for the deployment audit (it renders the releases the CDK app defines).
__all__ = ["crd_validators", "helm"]


@dataclass
class Synth:
    """One synthesized app: the config, the stacks, the cloud assembly directory and its templates."""

    config: EaselConfig
    app: cdk.App
    outdir: Path
    core: CoreStack
    compute: ComputeStack
    report: dict[str, Any]
    _templates: dict[str, Template] = field(default_factory=dict)

    @property
    def names(self) -> Names:
        """The stacks' names (bucket names carry the AWS::AccountId token when the config has no account)."""
        return self.core.names

    def resolve(self, value: object) -> object:
        """``value`` (possibly holding tokens) as it appears in the core template."""
        return self.core.resolve(value)

    def template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.outdir / stack.template_file).read_text())
        return data

    def template(self, stack: cdk.Stack) -> Template:
        if stack.stack_name not in self._templates:
            self._templates[stack.stack_name] = Template.from_json(self.template_json(stack))
        return self._templates[stack.stack_name]

    @property
    def core_template(self) -> Template:
        return self.template(self.core)

    @property
    def compute_template(self) -> Template:
        return self.template(self.compute)

    def resources(self, stack: cdk.Stack, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template_json(stack)["Resources"].items() if v["Type"] == type_}


def missing_context(outdir: Path) -> list[Any]:
    """Context lookups the synth could not answer (CDK records them in the manifest instead of failing)."""
    missing: list[Any] = json.loads((outdir / "manifest.json").read_text()).get("missing", [])
    return missing


def synthesize(config_path: Path, outdir: Path) -> Synth:
    config = load_config(config_path)
    app = build_app(config, outdir=outdir, nag=True)
    try:
        app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        details = report.read_text() if report.exists() else ""
        raise AssertionError(f"synth of {config_path.name} failed validation: {exc}\n{details}") from None
    missing = missing_context(outdir)
    assert not missing, f"synth needed context lookups: {missing}"
    core = app.node.find_child(config.stack_name)
    compute = app.node.find_child(f"{config.stack_name}-compute")
    assert isinstance(core, CoreStack)
    assert isinstance(compute, ComputeStack)
    return Synth(
        config=config,
        app=app,
        outdir=outdir,
        core=core,
        compute=compute,
        report=json.loads((outdir / "validation-report.json").read_text()),
    )


@pytest.fixture(scope="session")
def example_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    return synthesize(EXAMPLE_CONFIG, tmp_path_factory.mktemp("cdk-example"))


@pytest.fixture(scope="session")
def two_runtimes_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    return synthesize(TWO_RUNTIMES_CONFIG, tmp_path_factory.mktemp("cdk-two-runtimes"))


@pytest.fixture(scope="session", params=["example", "two-runtimes"])
def synth(request: pytest.FixtureRequest) -> Synth:
    """Both configs, for tests that must hold for every config."""
    name = "example_synth" if request.param == "example" else "two_runtimes_synth"
    result: Synth = request.getfixturevalue(name)
    return result


def flat(value: Any) -> str:
    """A Fn::Join as text, intrinsics shown as <Ref>: enough to compare ARNs built from easel.naming."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(flat(v) for v in value["Fn::Join"][1])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::ImportValue" in value:
        return f"<import:{value['Fn::ImportValue']}>"
    return json.dumps(value)
