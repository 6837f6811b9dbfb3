"""``easel deploy verify``: check a live deployment step by step, after ``cdk deploy``.

Steps, in order (the first failure stops the run: later steps depend on it):

1. ``stacks``      both CloudFormation stacks are in a complete state (their outputs feed later steps)
2. ``cluster``     the EKS cluster is ACTIVE and its Kubernetes API answers this principal
3. ``add-ons``     the Pod Identity agent, Mountpoint S3 CSI driver and CloudWatch add-ons are ACTIVE
4. ``controllers`` Karpenter and KEDA have available replicas
5. ``pools``       each runtime's ScaledObject is Ready and not paused by the cost guard, and its pods are
                   Ready or scaled to zero
6. ``task``        one text-to-image task goes end to end through the SigV4-signed API

A failing step says what it saw and what to do. AWS is called with boto3 (clients from a session), the
Kubernetes API with :class:`easel.deploy.kube.Kube` and an EKS token (a presigned STS GetCallerIdentity,
the scheme ``aws eks get-token`` uses), the API with :class:`easel.client.EaselClient`.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from easel.client import ClientError as ApiClientError
from easel.client import EaselClient, WaitTimeout
from easel.config import EaselConfig
from easel.deploy import DeployError, KubeError
from easel.deploy.guard import PAUSED_BY, PAUSED_REPLICAS
from easel.deploy.kube import Kube, deployment_path, pods_path, scaled_object_path, selector
from easel.naming import Names

COMPLETE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
ADDONS = ("eks-pod-identity-agent", "aws-mountpoint-s3-csi-driver", "amazon-cloudwatch-observability")
CONTROLLERS = (
    ("kube-system", "karpenter"),
    ("keda", "keda-operator"),
    ("keda", "keda-operator-metrics-apiserver"),
)
TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105  (the EKS token scheme's prefix, not a secret)
VERIFY_PROMPT = "easel deploy verify: a red cube on a white table"

KubeFactory = Callable[[str, str, str], Kube]
ApiFactory = Callable[[str], EaselClient]


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    saw: str
    fix: str = ""


class StepFailed(DeployError):
    def __init__(self, saw: str, fix: str) -> None:
        super().__init__(saw)
        self.saw = saw
        self.fix = fix


def eks_token(session: Any, cluster: str, region: str) -> str:
    """A Kubernetes bearer token for EKS: a presigned ``sts:GetCallerIdentity`` naming the cluster."""
    sts = session.client("sts", region_name=region)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers.add_header("x-k8s-aws-id", cluster)

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def default_kube(endpoint: str, ca_data: str, token: str) -> Kube:
    with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as ca:
        ca.write(base64.b64decode(ca_data))
    return Kube(endpoint, token, verify=ca.name)


class Verifier:
    """Run :meth:`run` for the list of steps; every dependency is injected (tests use recorded responses)."""

    def __init__(
        self,
        config: EaselConfig,
        *,
        session: Any,
        region: str,
        kube_factory: KubeFactory = default_kube,
        api_factory: ApiFactory | None = None,
        task_timeout_seconds: float = 1800.0,
        poll_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.session = session
        self.region = region
        self.names = Names.of(config, region=region)
        self.kube_factory = kube_factory
        self.api_factory = api_factory or (lambda endpoint: EaselClient(endpoint, region=region))
        self.task_timeout_seconds = task_timeout_seconds
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        self.outputs: dict[str, str] = {}
        self.kube: Kube | None = None

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("stacks", self.check_stacks),
            ("cluster", self.check_cluster),
            ("add-ons", self.check_addons),
            ("controllers", self.check_controllers),
            ("pools", self.check_pools),
            ("task", self.check_task),
        ]

    def run(self) -> Iterator[Step]:
        """Yield each step's result; stop after the first failure."""
        try:
            for name, check in self.steps():
                try:
                    saw = check()
                except StepFailed as exc:
                    yield Step(name, False, exc.saw, exc.fix)
                    return
                except KubeError as exc:
                    yield Step(name, False, str(exc), _kube_fix(exc))
                    return
                yield Step(name, True, saw)
        finally:
            if self.kube is not None:
                self.kube.close()

    # -- 1 ---------------------------------------------------------------------------------------------------
    def check_stacks(self) -> str:
        cfn = self.session.client("cloudformation", region_name=self.region)
        seen = []
        for stack in (self.config.stack_name, f"{self.config.stack_name}-compute"):
            try:
                found = cfn.describe_stacks(StackName=stack)["Stacks"][0]
            except Exception as exc:  # botocore ClientError: the stack does not exist or is not readable
                raise StepFailed(
                    f"stack {stack}: {_aws_error(exc)}",
                    "Deploy it: `npx aws-cdk deploy --all` (docs/deploy.md), with credentials for this "
                    f"account and region {self.region}.",
                ) from None
            status = found["StackStatus"]
            if status not in COMPLETE:
                reason = found.get("StackStatusReason", "")
                raise StepFailed(
                    f"stack {stack} is {status}" + (f": {reason}" if reason else ""),
                    "Read its events (`aws cloudformation describe-stack-events --stack-name "
                    f"{stack}`), fix the first failed resource, then `cdk deploy` again (a *_IN_PROGRESS "
                    "stack: wait for it).",
                )
            for output in found.get("Outputs", []):
                self.outputs[output["OutputKey"]] = output["OutputValue"]
            seen.append(f"{stack} {status}")
        return ", ".join(seen)

    # -- 2 ---------------------------------------------------------------------------------------------------
    def check_cluster(self) -> str:
        eks = self.session.client("eks", region_name=self.region)
        name = self.outputs.get("ClusterName", self.names.cluster)
        cluster = eks.describe_cluster(name=name)["cluster"]
        if cluster["status"] != "ACTIVE":
            raise StepFailed(
                f"cluster {name} is {cluster['status']}",
                "Wait for ACTIVE (creating takes about 15 minutes); FAILED: see the compute stack's events.",
            )
        token = eks_token(self.session, name, self.region)
        self.kube = self.kube_factory(cluster["endpoint"], cluster["certificateAuthority"]["data"], token)
        version = self.kube.get("/version") or {}
        minor = f"{version.get('major', '?')}.{str(version.get('minor', '?')).rstrip('+')}"
        if minor != self.config.cluster.kubernetes_version:
            raise StepFailed(
                f"cluster {name} runs Kubernetes {minor}, config pins "
                f"{self.config.cluster.kubernetes_version}",
                "Deploy again so the cluster and its controllers match the pinned versions "
                "(infra/versions.py).",
            )
        return f"cluster {name} ACTIVE, Kubernetes {minor} reachable"

    # -- 3 ---------------------------------------------------------------------------------------------------
    def check_addons(self) -> str:
        eks = self.session.client("eks", region_name=self.region)
        name = self.outputs.get("ClusterName", self.names.cluster)
        for addon in ADDONS:
            found = eks.describe_addon(clusterName=name, addonName=addon)["addon"]
            if found["status"] != "ACTIVE":
                issues = "; ".join(i.get("message", "") for i in found.get("health", {}).get("issues", []))
                raise StepFailed(
                    f"add-on {addon} is {found['status']}" + (f": {issues}" if issues else ""),
                    f"`aws eks describe-addon --cluster-name {name} --addon-name {addon}` and the add-on's "
                    "pods (`kubectl -n kube-system get pods`); DEGRADED often means no system node is Ready.",
                )
        return ", ".join(f"{a} ACTIVE" for a in ADDONS)

    # -- 4 ---------------------------------------------------------------------------------------------------
    def check_controllers(self) -> str:
        kube = self._kube()
        for namespace, name in CONTROLLERS:
            deployment = kube.get(deployment_path(namespace, name))
            available = (deployment or {}).get("status", {}).get("availableReplicas", 0)
            if not available:
                raise StepFailed(
                    f"{namespace}/{name}: "
                    + ("not installed" if deployment is None else "no available replica"),
                    f"`kubectl -n {namespace} describe deploy/{name}` and its logs; its credentials come "
                    "from EKS Pod Identity (the pod-identity-agent add-on must be ACTIVE).",
                )
        return ", ".join(f"{ns}/{n} available" for ns, n in CONTROLLERS)

    # -- 5 ---------------------------------------------------------------------------------------------------
    def check_pools(self) -> str:
        kube = self._kube()
        namespace = self.config.cluster.namespace
        seen = []
        for runtime in self.config.runtimes:
            release = self.names.release(runtime.name)
            so = kube.get(scaled_object_path(namespace, release))
            if so is None:
                raise StepFailed(
                    f"{namespace}/{release}: no ScaledObject",
                    "The runtime release did not install; "
                    "see the compute stack's events for its HelmChart resource.",
                )
            annotations = so["metadata"].get("annotations") or {}
            if annotations.get(PAUSED_BY) == "cost-guard":
                raise StepFailed(
                    f"{release}: paused at zero by the cost guard "
                    f"({annotations.get('easel.dev/paused-reason', '')})",
                    "Find why its pods never got Ready (`kubectl -n "
                    f"{namespace} describe pods -l easel.dev/runtime={runtime.name}`), fix it, then resume: "
                    f"`kubectl -n {namespace} annotate scaledobject {release} "
                    f"{PAUSED_REPLICAS}- {PAUSED_BY}-`.",
                )
            ready = _condition(so, "Ready")
            if ready != "True":
                raise StepFailed(
                    f"{release}: ScaledObject Ready={ready}",
                    f"`kubectl -n {namespace} describe scaledobject {release}`: KEDA must be able to "
                    "assume the workload role and read both lanes (GetQueueAttributes).",
                )
            deployment = kube.get(deployment_path(namespace, release)) or {}
            wanted = deployment.get("spec", {}).get("replicas", 0)
            ready_pods = deployment.get("status", {}).get("readyReplicas", 0)
            if wanted and ready_pods < wanted:
                labels = selector(deployment["spec"]["selector"]["matchLabels"])
                waiting = [
                    f"{p['metadata']['name']} {_pod_state(p)}"
                    for p in kube.items(pods_path(namespace), label_selector=labels)
                    if _condition(p, "Ready") != "True"
                ]
                raise StepFailed(
                    f"{release}: {ready_pods}/{wanted} pods Ready; not Ready: "
                    f"{', '.join(waiting) or 'none listed'}",
                    f"`kubectl -n {namespace} describe pod <name>`: Pending = no GPU node (instance quota, "
                    "Karpenter logs); ContainerCreating = models mount or image pull; the cost guard "
                    "pauses the pool if this lasts.",
                )
            seen.append(f"{release} " + (f"{ready_pods}/{wanted} Ready" if wanted else "scaled to zero"))
        return ", ".join(seen)

    # -- 6 ---------------------------------------------------------------------------------------------------
    def check_task(self) -> str:
        endpoint = self.outputs.get("ApiEndpoint")
        if not endpoint:
            raise StepFailed(
                "the core stack has no ApiEndpoint output", "Deploy the current version of the app."
            )
        model = next(m for m in self.config.models if "text-to-image" in m.task_types)
        client = self.api_factory(endpoint)
        try:
            task = client.submit(
                {
                    "model": model.name,
                    "task_type": "text-to-image",
                    "input": {"prompt": VERIFY_PROMPT, "steps": 4, "width": 512, "height": 512, "seed": 1},
                }
            )
            done = client.wait(
                task["id"],
                timeout=self.task_timeout_seconds,
                poll_seconds=self.poll_seconds,
                sleep=self.sleep,
            )
        except WaitTimeout as exc:
            last = next(iter(exc.tasks.values()), {})
            raise StepFailed(
                f"task still {last.get('status', 'unknown')} after {self.task_timeout_seconds:.0f}s",
                "queued: no pod took it (see the pools step, KEDA and Karpenter logs, GPU instance quotas); "
                "processing: `kubectl -n "
                f"{self.config.cluster.namespace} logs -l easel.dev/runtime={model.runtime} -c queue-agent`.",
            ) from None
        except ApiClientError as exc:
            raise StepFailed(
                f"the API refused the request: {exc}",
                "Your principal must be listed under a tenant in config.yaml (403), and sign for this "
                "region.",
            ) from None
        finally:
            client.close()
        if done.get("status") != "succeeded":
            error = done.get("error") or {}
            raise StepFailed(
                f"task {done.get('id')} {done.get('status')}: {error.get('code', '')} "
                f"{error.get('message', '')}",
                "The agent's log has the cause (`kubectl logs ... -c queue-agent`); a missing model means "
                "it is not uploaded under its store path in the models bucket.",
            )
        images = (done.get("output") or {}).get("images", [])
        return f"task {done['id']} succeeded with {len(images)} image(s)"

    def _kube(self) -> Kube:
        if self.kube is None:
            raise StepFailed("no Kubernetes connection", "The cluster step must pass first.")
        return self.kube


def _condition(obj: dict[str, Any], kind: str) -> str:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return "Unknown"


def _pod_state(pod: dict[str, Any]) -> str:
    phase = pod.get("status", {}).get("phase", "Unknown")
    for status in pod.get("status", {}).get("containerStatuses", []):
        waiting = status.get("state", {}).get("waiting")
        if waiting:
            return f"{phase}/{waiting.get('reason', 'Waiting')}"
    return str(phase)


def _aws_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return type(exc).__name__


def _kube_fix(exc: KubeError) -> str:
    if exc.status in (401, 403):
        return (
            "Your AWS principal has no access to the cluster: deploy with `-c adminRoleArn=<your role ARN>` "
            "(an EKS access entry), or use that role."
        )
    if exc.status == 0:
        return "The API endpoint is unreachable from here (public endpoint access, proxy, network)."
    return "Retry; if it persists, check the control plane in the EKS console."
