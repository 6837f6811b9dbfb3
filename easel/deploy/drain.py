"""Drain a pool before its release is uninstalled (the chart's ``pre-delete`` hook, ``cdk destroy``).

1. pause the ScaledObject at zero and scale the Deployment to zero (nothing brings pods back);
2. delete the pool's pods with a short grace (the agent returns its task to the queue);
3. delete the NodePool and the EC2NodeClass: Karpenter terminates their nodes, then removes the instance
   profile and the objects' finalizers;
4. wait until no NodeClaim of the pool is left and both objects are gone, or fail at the deadline.

Helm waits for this Job, and the CDK app removes Karpenter only after the release, so Karpenter still runs
for step 3. Waiting polls the API (there is nothing to subscribe to from a Job without a watch client).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from easel.deploy import DrainTimeout
from easel.deploy.guard import PAUSED_BY, PAUSED_REPLICAS
from easel.deploy.kube import Kube, deployment_path, pods_path, scaled_object_path, selector

NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"
NODECLAIMS = "/apis/karpenter.sh/v1/nodeclaims"
NODECLASSES = "/apis/karpenter.k8s.aws/v1/ec2nodeclasses"
POLL_SECONDS = 5.0


@dataclass(frozen=True)
class DrainReport:
    pods_deleted: int
    polls: int
    seconds: float


def drain(
    kube: Kube,
    *,
    namespace: str,
    deployment: str,
    node_pool: str,
    timeout_seconds: float,
    pod_grace_seconds: int = 30,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> DrainReport:
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    start = clock()
    kube.patch(
        scaled_object_path(namespace, deployment),
        {"metadata": {"annotations": {PAUSED_REPLICAS: "0", PAUSED_BY: "drain"}}},
    )
    target = kube.get(deployment_path(namespace, deployment))
    deleted = 0
    if target is not None:
        kube.patch(deployment_path(namespace, deployment) + "/scale", {"spec": {"replicas": 0}})
        labels = selector(target["spec"]["selector"]["matchLabels"])
        for pod in kube.items(pods_path(namespace), label_selector=labels):
            name = pod["metadata"]["name"]
            if kube.delete(f"{pods_path(namespace)}/{name}", grace_seconds=pod_grace_seconds):
                deleted += 1
    kube.delete(f"{NODEPOOLS}/{node_pool}")
    kube.delete(f"{NODECLASSES}/{node_pool}")
    polls = 0
    while True:
        polls += 1
        remaining = [
            f"nodeclaim/{c['metadata']['name']}"
            for c in kube.items(NODECLAIMS, label_selector=f"karpenter.sh/nodepool={node_pool}")
        ]
        if kube.get(f"{NODEPOOLS}/{node_pool}") is not None:
            remaining.append(f"nodepool/{node_pool}")
        if kube.get(f"{NODECLASSES}/{node_pool}") is not None:
            remaining.append(f"ec2nodeclass/{node_pool}")
        if not remaining:
            return DrainReport(deleted, polls, clock() - start)
        if clock() - start >= timeout_seconds:
            raise DrainTimeout(remaining, clock() - start)
        sleep(POLL_SECONDS)


def main(argv: list[str] | None = None, *, kube_factory: Callable[[], Kube] = Kube.in_cluster) -> int:
    parser = argparse.ArgumentParser(prog="python -m easel.deploy.drain", description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--node-pool", required=True, help="NodePool and EC2NodeClass name")
    parser.add_argument("--timeout-seconds", type=float, required=True)
    parser.add_argument("--pod-grace-seconds", type=int, default=30)
    args = parser.parse_args(argv)
    kube = kube_factory()
    try:
        result = drain(
            kube,
            namespace=args.namespace,
            deployment=args.deployment,
            node_pool=args.node_pool,
            timeout_seconds=args.timeout_seconds,
            pod_grace_seconds=args.pod_grace_seconds,
        )
    except DrainTimeout as exc:
        print(json.dumps({"drained": False, "error": str(exc)}))
        return 1
    finally:
        kube.close()
    print(json.dumps({"drained": True, **asdict(result)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
