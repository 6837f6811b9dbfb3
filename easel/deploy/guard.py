"""The cost guard: stop a pool whose pods never get Ready, and say so.

KEDA scales a pool on queue depth alone: if its pods cannot work (image missing, mount failing, no
credentials), messages stay queued, the pool sits at ``maxReplicas`` and ``karpenter.sh/do-not-disrupt``
keeps every GPU node. The chart runs this check as a CronJob (``python -m easel.deploy.guard``): when a pod
of the pool has been not Ready for longer than ``--not-ready-seconds``, it pauses the ScaledObject at zero
replicas (KEDA's ``autoscaling.keda.sh/paused-replicas: "0"``, which scales the Deployment to zero, after
which Karpenter removes the empty nodes) and reports ``PoolNotReady = 1`` to CloudWatch, where the app's alarm
picks it up. An operator fixes the cause and removes the annotation (docs/deploy.md, "Cost guard").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from easel.deploy.kube import Kube, deployment_path, pods_path, scaled_object_path, selector

PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
PAUSED_BY = "easel.dev/paused-by"
METRIC = "PoolNotReady"


@dataclass(frozen=True)
class GuardResult:
    pods: int
    not_ready: int
    longest_not_ready_seconds: float
    paused: bool  # the ScaledObject is paused by the guard (now or by an earlier run)
    paused_now: bool


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def not_ready_since(pod: dict[str, Any]) -> datetime | None:
    """When ``pod`` became not Ready (None when it is Ready, or already going away)."""
    if pod["metadata"].get("deletionTimestamp"):
        return None
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return None
            since = condition.get("lastTransitionTime")
            if since:
                return _parse_time(since)
    return _parse_time(pod["metadata"]["creationTimestamp"])


def check(
    kube: Kube,
    *,
    namespace: str,
    deployment: str,
    not_ready_seconds: int,
    now: datetime | None = None,
) -> GuardResult:
    """Look at the pool's pods and pause its scaling when one stays not Ready past the deadline."""
    now = now or datetime.now(UTC)
    so_path = scaled_object_path(namespace, deployment)
    scaled_object = kube.get(so_path) or {}
    annotations = scaled_object.get("metadata", {}).get("annotations") or {}
    already = annotations.get(PAUSED_BY) == "cost-guard" and PAUSED_REPLICAS in annotations
    target = kube.get(deployment_path(namespace, deployment))
    if target is None:
        return GuardResult(0, 0, 0.0, already, False)
    labels = target["spec"]["selector"]["matchLabels"]
    pods = kube.items(pods_path(namespace), label_selector=selector(labels))
    waits = [(now - since).total_seconds() for pod in pods if (since := not_ready_since(pod)) is not None]
    longest = max(waits, default=0.0)
    paused_now = False
    if longest > not_ready_seconds and not already:
        reason = f"a pod was not Ready for {longest:.0f}s (limit {not_ready_seconds}s) at {now.isoformat()}"
        kube.patch(
            so_path,
            {
                "metadata": {
                    "annotations": {
                        PAUSED_REPLICAS: "0",
                        PAUSED_BY: "cost-guard",
                        "easel.dev/paused-reason": reason,
                    }
                }
            },
        )
        paused_now = True
    return GuardResult(len(pods), len(waits), longest, already or paused_now, paused_now)


def report(cloudwatch: Any, *, namespace: str, release: str, runtime: str, result: GuardResult) -> None:
    """``PoolNotReady``: 1 while the guard holds the pool paused, else 0 (the alarm's metric)."""
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": METRIC,
                "Dimensions": [{"Name": "Release", "Value": release}, {"Name": "Runtime", "Value": runtime}],
                "Value": 1.0 if result.paused else 0.0,
                "Unit": "Count",
            }
        ],
    )


def main(
    argv: list[str] | None = None,
    *,
    kube_factory: Callable[[], Kube] = Kube.in_cluster,
    cloudwatch: Any = None,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m easel.deploy.guard", description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True, help="the pool's Deployment (and ScaledObject)")
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--not-ready-seconds", type=int, required=True)
    parser.add_argument("--metric-namespace", default="Easel")
    args = parser.parse_args(argv)
    kube = kube_factory()
    try:
        result = check(
            kube,
            namespace=args.namespace,
            deployment=args.deployment,
            not_ready_seconds=args.not_ready_seconds,
        )
    finally:
        kube.close()
    if cloudwatch is None:
        import boto3

        cloudwatch = boto3.client("cloudwatch")
    report(
        cloudwatch,
        namespace=args.metric_namespace,
        release=args.deployment,
        runtime=args.runtime,
        result=result,
    )
    print(json.dumps({"deployment": args.deployment, **asdict(result)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
