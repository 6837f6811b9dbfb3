"""A config with one pool per runtime kind (tests/configs/three-kinds.yaml) synthesizes clean (cdk-nag,
CloudFormation validation, cfn-lint) and gives each release the values of its kind (easel/kinds.py): what the
runtime container runs, where the probes go, how long it may start, where the models are mounted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from easel.kinds import profile
from tests.conftest import ROOT
from tests.infra.conftest import Synth, synthesize
from tests.infra.test_workloads import _release, _rendered_values

pytestmark = [pytest.mark.infra, pytest.mark.slow]

THREE_KINDS = ROOT / "tests" / "configs" / "three-kinds.yaml"


@pytest.fixture(scope="module")
def kinds_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(THREE_KINDS, tmp_path_factory.mktemp("cdk-three-kinds"))


def test_three_kinds_synthesize_without_findings(kinds_synth: Synth) -> None:
    assert [r.kind for r in kinds_synth.config.runtimes] == ["diffusers", "sdwebui", "comfyui"]
    assert all(
        r["conclusion"] == "success" and not r["violations"] for r in kinds_synth.report["pluginReports"]
    )
    templates = [str(kinds_synth.outdir / s.template_file) for s in (kinds_synth.core, kinds_synth.compute)]
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run(
        [str(cfn_lint), "--format", "json", *templates],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 4), proc.stdout + proc.stderr
    assert [m for m in json.loads(proc.stdout or "[]") if m["Level"] == "Error"] == []


def test_each_release_runs_its_kind(kinds_synth: Synth) -> None:
    for runtime in kinds_synth.config.runtimes:
        values = _rendered_values(_release(kinds_synth, runtime.name))["runtime"]
        kind = profile(runtime.kind)
        assert values["kind"] == runtime.kind
        assert values["healthPath"] == kind.health_path
        assert values["startupTimeoutSeconds"] == kind.startup_seconds
        assert values["modelMounts"] == [
            {"subPath": m.sub_path, "mountPath": m.mount_path} for m in kind.mounts
        ]
        assert values["readOnlyRootFilesystem"] is (runtime.kind == "diffusers")
        assert values["models"] == [
            {"name": m.name, "path": m.store_path} for m in kinds_synth.config.models_of(runtime.name)
        ]
    images = _rendered_values(_release(kinds_synth, "comfy"))["images"]
    assert images["runtime"] == {
        "repository": "123456789012.dkr.ecr.us-west-2.amazonaws.com/comfyui",
        "tag": "0.3.10",
        "digest": "",
    }
