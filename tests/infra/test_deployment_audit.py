"""Deployment audit: the documented rules of the components a deployment depends on, applied to the
synthesized templates and to the runtime chart rendered with exactly the values the CDK passes.

Nothing here reaches AWS; each test names the rule it applies and the documentation (or source) it follows,
so a reader can check the rule, and a change that breaks a real deployment fails here first. Tests named
``test_blocker_<n>_...`` are the seven deployment blockers of issue 19.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from infra.constructs import cluster as cluster_module
from infra.versions import COMPATIBILITY, KUBECTL_LAYERS, check_compatibility
from tests.charts.chart_helpers import CrdValidators
from tests.infra.conftest import Synth
from tests.infra.deployed import Deployment, env_names, pod_templates

pytestmark = pytest.mark.infra

SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
POD_IDENTITY = "pods.eks.amazonaws.com"
# Handler Lambda of the aws_eks_v2 kubectl provider: 15 minutes (the provider's own timeout).
KUBECTL_HANDLER_SECONDS = 15 * 60


@pytest.fixture(scope="module")
def deployment(synth: Synth) -> Deployment:
    return Deployment.of(synth)


@pytest.fixture(scope="module")
def rendered(
    deployment: Deployment, helm: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("releases")
    return {release: deployment.render(helm, release, tmp) for release in deployment.runtime_releases()}


def _namespace(deployment: Deployment, release: str) -> str:
    return str(deployment.releases()[release][1]["Properties"]["Namespace"])


def _service_accounts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}


def _calls_aws(container: dict[str, Any]) -> bool:
    # Every container of the chart that talks to AWS is configured with a region (the SDKs need one).
    return "AWS_REGION" in env_names(container) or "AWS_DEFAULT_REGION" in env_names(container)


def test_the_releases_as_the_cdk_passes_them_validate_against_crds_and_core_schemas(
    rendered: dict[str, list[dict[str, Any]]], crd_validators: CrdValidators, synth: Synth
) -> None:
    """What the API server would accept: core kinds against the Kubernetes OpenAPI schemas of the pinned
    version (kubernetes-validate, strict), KEDA and Karpenter kinds against their CRDs (unknown fields are
    errors, not silently pruned)."""
    version = synth.config.cluster.kubernetes_version
    for release, docs in rendered.items():
        for doc in docs:
            validator = crd_validators.get((doc["apiVersion"], doc["kind"]))
            if validator is not None:
                errors = [
                    f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
                ]
                assert errors == [], f"{release} {doc['kind']}: {errors}"
            else:
                assert "." not in doc["apiVersion"].split("/")[0] or doc["apiVersion"].startswith(
                    ("apps/", "batch/", "policy/", "networking.k8s.io/", "rbac.authorization.k8s.io/")
                ), f"{release}: no schema for {doc['apiVersion']} {doc['kind']}"
                kubernetes_validate.validate(doc, version, strict=True)


# -- 1. credentials ------------------------------------------------------------------------------------------
def test_blocker_1_every_container_that_calls_aws_receives_pod_identity_credentials(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Rule (amazon-eks-pod-identity-webhook README, "eks.amazonaws.com/skip-containers"; EKS user guide
    "Configure pods to access AWS services with service accounts" for Pod Identity): the webhook injects
    ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` into every container of a pod whose service account has a Pod
    Identity association, except the containers listed in ``eks.amazonaws.com/skip-containers``. Node IMDS
    is out of reach (EC2NodeClass hop limit 1), so a skipped container has no credentials at all. And with an
    ``eks.amazonaws.com/role-arn`` annotation the SDKs take the IRSA web identity first (AWS SDKs and Tools
    reference guide, "Understand the credential provider chain"), which fails without an OIDC provider."""
    associations = deployment.pod_identity()
    oidc = deployment.has_oidc_provider()
    for release, docs in rendered.items():
        namespace = _namespace(deployment, release)
        accounts = _service_accounts(docs)
        for workload, pod in pod_templates(docs):
            spec = pod["spec"]
            callers = [c["name"] for c in spec["containers"] if _calls_aws(c)]
            if not callers:
                continue
            where = f"{release}: {workload['kind']} {workload['metadata']['name']}"
            sa_name = spec.get("serviceAccountName", "default")
            assert (namespace, sa_name) in associations, f"{where}: no Pod Identity association for {sa_name}"
            skipped = set(
                filter(None, pod["metadata"].get("annotations", {}).get(SKIP_CONTAINERS, "").split(","))
            )
            assert not skipped & set(callers), (
                f"{where}: {sorted(skipped & set(callers))} skipped by the webhook"
            )
            sa = accounts.get(sa_name, {})
            irsa = sa.get("metadata", {}).get("annotations", {}).get(IRSA_ANNOTATION)
            assert irsa is None or oidc, (
                f"{where}: {sa_name} carries {IRSA_ANNOTATION} but no OIDC provider exists"
            )


# -- 2. volumes -------------------------------------------------------------------------------------------------
def test_blocker_2_models_volume_authenticates_with_an_identity_that_exists(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Rule (Mountpoint for Amazon S3 CSI driver v2, docs/CONFIGURATION.md "Pod-Level Credentials" and
    "Driver-Level Credentials with EKS Pod Identity"): ``authenticationSource: pod`` uses the pod's service
    account, through IRSA when it carries ``eks.amazonaws.com/role-arn`` (needs an OIDC provider) or else
    through its EKS Pod Identity association; ``driver`` uses the driver's service account
    (``s3-csi-driver-sa``, the add-on's association). The identity used must be able to list the bucket."""
    associations = deployment.pod_identity()
    addon_roles = {
        pa["ServiceAccount"]: deployment.canon(pa["RoleArn"], stack)
        for stack, _, res in deployment.resources("AWS::EKS::Addon")
        if res["Properties"]["AddonName"] == "aws-mountpoint-s3-csi-driver"
        for pa in res["Properties"].get("PodIdentityAssociations", [])
    }
    for release, docs in rendered.items():
        namespace = _namespace(deployment, release)
        accounts = _service_accounts(docs)
        pvs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolume"}
        claims = {
            d["metadata"]["name"]: d["spec"]["volumeName"]
            for d in docs
            if d["kind"] == "PersistentVolumeClaim"
        }
        for _, pod in pod_templates(docs):
            spec = pod["spec"]
            for volume in spec.get("volumes", []):
                claim = volume.get("persistentVolumeClaim", {}).get("claimName")
                if claim is None:
                    continue
                csi = pvs[claims[claim]]["spec"]["csi"]
                if csi["driver"] != "s3.csi.aws.com":
                    continue
                attrs = csi["volumeAttributes"]
                bucket_arn = f"arn:aws:s3:::{attrs['bucketName']}"
                where = f"{release}: volume {volume['name']} ({attrs['authenticationSource']})"
                if attrs["authenticationSource"] == "pod":
                    sa_name = spec.get("serviceAccountName", "default")
                    sa = accounts.get(sa_name, {})
                    if IRSA_ANNOTATION in sa.get("metadata", {}).get("annotations", {}):
                        assert deployment.has_oidc_provider(), f"{where}: IRSA path without an OIDC provider"
                        continue
                    role = associations.get((namespace, sa_name))
                    assert role is not None, f"{where}: {sa_name} has no Pod Identity association"
                else:
                    role = addon_roles.get("s3-csi-driver-sa")
                    assert role is not None, f"{where}: the CSI add-on has no Pod Identity association"
                assert deployment.allows(role, "s3:ListBucket", bucket_arn), (
                    f"{where}: {role} cannot list {attrs['bucketName']}"
                )


# -- 3. cost -----------------------------------------------------------------------------------------------------
def test_blocker_3_a_pool_that_never_gets_ready_is_scaled_to_zero_and_alarmed(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]], synth: Synth
) -> None:
    """Rule (KEDA "Scaling Deployments": a ScaledObject scales on queue depth alone, so unconsumed messages
    hold the pool at ``maxReplicaCount``; Karpenter "Disruption": ``karpenter.sh/do-not-disrupt`` pods keep
    their nodes): something other than the queue must stop a pool whose pods never get Ready. Each release
    runs the cost guard (a CronJob) with credentials and the Kubernetes rights to pause its ScaledObject,
    and a CloudWatch alarm watches the guard's metric for that pool."""
    associations = deployment.pod_identity()
    alarms = [res for _, _, res in deployment.resources("AWS::CloudWatch::Alarm")]
    for runtime in synth.config.runtimes:
        release = synth.names.release(runtime.name)
        docs = rendered[release]
        namespace = _namespace(deployment, release)
        guards = [d for d in docs if d["kind"] == "CronJob" and d["metadata"]["name"].endswith("-cost-guard")]
        assert len(guards) == 1, f"{release}: no cost guard CronJob"
        pod = guards[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        sa = pod["serviceAccountName"]
        assert (namespace, sa) in associations, f"{release}: the cost guard has no AWS identity"
        assert pod.get("automountServiceAccountToken") is True, f"{release}: the guard cannot call Kubernetes"
        command = " ".join(pod["containers"][0]["command"] + pod["containers"][0].get("args", []))
        assert "easel.deploy.guard" in command and f"--deployment {release}" in command
        assert re.search(r"--not-ready-seconds \d+", command)
        # RBAC: patch the ScaledObject, read the pods and the deployment.
        rules = [r for d in docs if d["kind"] == "Role" for r in d["rules"]]
        assert any("scaledobjects" in r["resources"] and "patch" in r["verbs"] for r in rules)
        assert any("pods" in r["resources"] and "list" in r["verbs"] for r in rules)
        role = associations[(namespace, sa)]
        assert deployment.allows(role, "cloudwatch:PutMetricData", "*")
        watching = [
            a
            for a in alarms
            if a["Properties"].get("MetricName") == "PoolNotReady"
            and {"Name": "Runtime", "Value": runtime.name} in a["Properties"].get("Dimensions", [])
        ]
        assert watching, f"{release}: no alarm on the cost guard's PoolNotReady metric"


# -- 4. images ----------------------------------------------------------------------------------------------------
def test_blocker_4_default_images_are_built_and_pushed_by_cdk_deploy(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]], synth: Synth
) -> None:
    """Rule (CDK "Assets", DockerImageAsset: ``cdk deploy`` builds the directory's Dockerfile and pushes it
    to the bootstrap ECR repository before the stack deploys): without an image override in config every
    container image is one of this app's Docker image assets, built from a Dockerfile in this repository."""
    assets = json.loads((synth.outdir / f"{synth.compute.artifact_id}.assets.json").read_text())
    images = assets.get("dockerImages", {})
    built = {h: a["source"] for h, a in images.items()}
    assert built, "the compute stack has no Docker image assets"
    for source in built.values():
        dockerfile = Path(synth.outdir, source["directory"], source.get("dockerFile", "Dockerfile"))
        assert dockerfile.is_file(), dockerfile
    for runtime in synth.config.runtimes:
        if runtime.images is not None:
            continue
        for _, pod in pod_templates(rendered[synth.names.release(runtime.name)]):
            for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
                tag = container["image"].rsplit(":", 1)[-1]
                assert tag in built, f"{container['name']}: {container['image']} is not built by this app"
                assert "container-assets" in container["image"]


# -- 5. retained state --------------------------------------------------------------------------------------------
PHYSICAL_NAMES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::DynamoDB::GlobalTable": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
}


def test_blocker_5_retained_resources_never_collide_on_redeploy(deployment: Deployment) -> None:
    """Rule (CloudFormation "DeletionPolicy attribute": ``Retain`` keeps the resource after the stack is
    deleted; a physical name is unique per account and Region, so creating it again fails with "already
    exists"): a resource that survives ``cdk destroy`` must not carry a fixed physical name, or a redeploy of
    the same config collides with it. Retained resources are adopted by name through config instead
    (``storage.adopt``, docs/deploy.md "Teardown")."""
    offenders = []
    for stack, tpl in deployment.templates.items():
        for logical_id, res in tpl["Resources"].items():
            if res.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate"):
                continue
            prop = PHYSICAL_NAMES.get(res["Type"])
            if not prop or prop not in res.get("Properties", {}):
                continue
            name = deployment.canon(res["Properties"][prop], stack)
            # A name built from another resource's generated name (``<stack:Id>``) is unique per deploy.
            if f"<{stack}:" not in name:
                offenders.append(f"{stack}/{logical_id} {prop}={name}")
    assert not offenders, offenders


# -- 6. destroy ---------------------------------------------------------------------------------------------------
def test_blocker_6_destroy_drains_each_pool_before_karpenter_is_removed(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Rules: CloudFormation deletes a resource before the resources it depends on; the aws_eks_v2 kubectl
    handler (aws-cdk-lib 2.275.0, ``kubectl-handler/helm/__init__.py``) runs ``helm uninstall`` on Delete;
    Helm ("Chart Hooks") runs ``pre-delete`` hooks and waits for hook Jobs to finish, within ``--timeout``,
    before deleting the release's objects. Karpenter ("Disruption", "Termination") removes a NodePool's nodes
    and the EC2NodeClass's instance profile only while its controller runs. So each runtime release must
    depend on the Karpenter release and drain its pool in a pre-delete hook that waits for the pool's
    NodeClaims and EC2NodeClass to be gone, within the helm timeout, which must end inside the handler's."""
    compute = deployment.synth.compute.stack_name
    karpenter_id, _ = deployment.releases()["karpenter"]
    for release, docs in rendered.items():
        logical_id, res = deployment.releases()[release]
        assert karpenter_id in deployment.depends_on(compute, logical_id), f"{release} not after Karpenter"
        hooks = [
            d
            for d in docs
            if d["kind"] == "Job"
            and "pre-delete" in d["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        ]
        assert len(hooks) == 1, f"{release}: no pre-delete drain hook"
        pod = hooks[0]["spec"]["template"]["spec"]
        command = " ".join(pod["containers"][0]["command"] + pod["containers"][0].get("args", []))
        assert "easel.deploy.drain" in command and f"--node-pool {release}" in command
        deadline = int(re.search(r"--timeout-seconds (\d+)", command).group(1))  # type: ignore[union-attr]
        timeout = res["Properties"].get("Timeout")
        assert timeout is not None, f"{release}: helm's default 5m timeout would cut the drain short"
        helm_seconds = int(timeout.rstrip("s"))
        assert deadline < helm_seconds < KUBECTL_HANDLER_SECONDS, (deadline, helm_seconds)
        rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
        for resource in ("nodepools", "nodeclaims", "ec2nodeclasses"):
            assert any(resource in r["resources"] for r in rules), f"{release}: hook cannot read {resource}"


# -- 7. versions and ordering -------------------------------------------------------------------------------------
def test_blocker_7_pinned_versions_are_mutually_supported(synth: Synth) -> None:
    """Rule: the Kubernetes version is the newest ``aws_eks_v2.KubernetesVersion`` of the pinned aws-cdk-lib;
    the kubectl layer is the one built for that version; the Karpenter and KEDA releases list it in their
    published compatibility tables (sources in ``infra/versions.py``)."""
    from aws_cdk import aws_eks_v2 as eks

    cluster = synth.config.cluster
    members = [m for m in dir(eks.KubernetesVersion) if re.fullmatch(r"V1_\d+", m)]
    newest = max(members, key=lambda m: int(m.split("_")[1]))
    assert cluster.kubernetes_version == newest[1:].replace("_", "."), f"newest in aws-cdk-lib is {newest}"
    assert KUBECTL_LAYERS[cluster.kubernetes_version] == cluster_module.KubectlLayer.__module__
    problems = check_compatibility(
        kubernetes=cluster.kubernetes_version,
        karpenter=cluster.karpenter_chart_version,
        keda=cluster.keda_chart_version,
    )
    assert not problems, problems
    assert set(COMPATIBILITY) == {"karpenter", "keda"}


def test_blocker_7_nodepool_bounds_a_drain_blocked_by_do_not_disrupt(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Rule (Karpenter "NodePools", ``spec.template.spec.terminationGracePeriod``): a node that expires
    (``expireAfter``) is drained, and pods with ``karpenter.sh/do-not-disrupt`` block the drain forever
    unless the NodePool sets ``terminationGracePeriod``; it must leave a running task its whole grace."""
    for release, docs in rendered.items():
        pools = [d for d in docs if d["kind"] == "NodePool"]
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for pool in pools:
            tgp = pool["spec"]["template"]["spec"].get("terminationGracePeriod")
            assert tgp, f"{release}: NodePool without terminationGracePeriod"
            assert _seconds(tgp) >= grace, f"{release}: {tgp} cuts a task's {grace}s grace short"


def test_blocker_7_everything_that_uses_pod_identity_waits_for_its_agent(deployment: Deployment) -> None:
    """Rule (EKS user guide "Set up the Amazon EKS Pod Identity Agent"): Pod Identity credentials are served
    by the agent DaemonSet; a pod started before it runs gets no credentials (the SDKs give up). Every Helm
    release whose pods use an association, and every add-on with one, must depend on the agent add-on."""
    compute = deployment.synth.compute.stack_name
    agent = [
        lid
        for _, lid, res in deployment.resources("AWS::EKS::Addon")
        if res["Properties"]["AddonName"] == "eks-pod-identity-agent"
    ]
    assert len(agent) == 1
    namespaces = {ns for ns, _ in deployment.pod_identity()}
    for release, (logical_id, res) in deployment.releases().items():
        if res["Properties"].get("Namespace") in namespaces:
            assert agent[0] in deployment.depends_on(compute, logical_id), (
                f"release {release} before the agent"
            )
    for _, logical_id, res in deployment.resources("AWS::EKS::Addon"):
        if res["Properties"].get("PodIdentityAssociations"):
            assert agent[0] in deployment.depends_on(compute, logical_id), logical_id


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


# -- audit rules beyond the blockers -------------------------------------------------------------------------------
def test_every_kms_key_covers_every_principal_that_uses_it(deployment: Deployment) -> None:
    """Rules (SQS "Key management": a consumer of an SSE-KMS queue needs ``kms:Decrypt``; SNS "Encryption at
    rest": a publisher to an SSE-KMS topic needs ``kms:GenerateDataKey*`` and ``kms:Decrypt``, and an SNS
    subscription into an SSE-KMS queue needs the queue key's policy to allow ``sns.amazonaws.com``): for
    every encrypted queue and topic, each principal that receives from or publishes to it may use its key,
    and each SNS subscription's topic may encrypt into its queue."""
    keyed: dict[str, str] = {}
    for stack, lid, res in deployment.resources("AWS::SQS::Queue"):
        key = res["Properties"].get("KmsMasterKeyId")
        if key is not None:
            keyed[deployment.ref(stack, lid, "Arn")] = deployment.canon(key, stack)
    topics: dict[str, str] = {}
    for stack, lid, res in deployment.resources("AWS::SNS::Topic"):
        key = res["Properties"].get("KmsMasterKeyId")
        if key is not None:
            topics[deployment.ref(stack, lid)] = deployment.canon(key, stack)
    checked = 0
    for st in deployment.statements():
        for resource in st.resources:
            if resource in keyed and any(a in ("sqs:ReceiveMessage", "sqs:*") for a in st.actions):
                key = _key_arn(keyed[resource])
                assert deployment.allows(st.principal, "kms:Decrypt", key), (
                    f"{st.principal} cannot decrypt {resource}"
                )
                checked += 1
            if resource in topics and "sns:Publish" in st.actions:
                key = _key_arn(topics[resource])
                for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                    assert deployment.allows(st.principal, action, key), (
                        f"{st.principal}: {action} for {resource}"
                    )
                checked += 1
    assert checked, "no consumer or publisher found: the audit would prove nothing"
    for stack, _, res in deployment.resources("AWS::SNS::Subscription"):
        p = res["Properties"]
        if p["Protocol"] != "sqs":
            continue
        queue = deployment.canon(p["Endpoint"], stack)
        key = keyed.get(queue)
        if key is None:
            continue
        kstack, klid = key.strip("<>").removesuffix(".Arn").split(":", 1)
        policy = deployment.templates[kstack]["Resources"][klid]["Properties"]["KeyPolicy"]
        topic = deployment.canon(p["TopicArn"], stack)
        assert any(
            s.get("Principal", {}).get("Service") == "sns.amazonaws.com"
            and "kms:GenerateDataKey" in json.dumps(s["Action"])
            and "kms:Decrypt" in json.dumps(s["Action"])
            and topic in json.dumps([deployment.canon(v, kstack) for v in _condition_values(s)])
            for s in policy["Statement"]
        ), f"key {klid} does not let {topic} encrypt into {queue}"


def _key_arn(key: str) -> str:
    return key if key.endswith(".Arn>") else key[:-1] + ".Arn>"


def _condition_values(statement: dict[str, Any]) -> list[Any]:
    return [v for cond in statement.get("Condition", {}).values() for v in cond.values()]


def test_keda_can_read_each_lane_it_scales_on(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Rules (KEDA "AWS" authentication provider: ``podIdentity.provider: aws`` with ``roleArn`` makes the
    operator assume that role with its own credentials; ``identityOwner: workload`` instead reads the
    workload service account's ``eks.amazonaws.com/role-arn``, i.e. IRSA; KEDA "AWS SQS Queue" scaler: it
    calls ``sqs:GetQueueAttributes``): the operator has a Pod Identity association, the role it assumes
    trusts the operator's role and may read the queue's attributes, and no IRSA is needed."""
    associations = deployment.pod_identity()
    operator = associations.get(("keda", "keda-operator"))
    assert operator is not None, "the KEDA operator has no AWS identity"
    queues = {
        deployment.canon({"Ref": lid}, stack): deployment.ref(stack, lid, "Arn")
        for stack, lid, _ in deployment.resources("AWS::SQS::Queue")
    }
    for release, docs in rendered.items():
        auths = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TriggerAuthentication"}
        for so in (d for d in docs if d["kind"] == "ScaledObject"):
            for trigger in so["spec"]["triggers"]:
                identity = auths[trigger["authenticationRef"]["name"]]["spec"]["podIdentity"]
                assert identity["provider"] == "aws", f"{release}: {identity}"
                role = identity.get("roleArn")
                assert role, f"{release}: KEDA would need IRSA ({identity})"
                assert operator in deployment.trust_principals(role), f"{role} does not trust the operator"
                assert deployment.allows(operator, "sts:AssumeRole", role)
                queue = queues[trigger["metadata"]["queueURL"]]
                assert deployment.allows(role, "sqs:GetQueueAttributes", queue), f"{role} cannot read {queue}"


def test_karpenter_nodes_can_join_and_selectors_match_existing_tags(
    deployment: Deployment, rendered: dict[str, list[dict[str, Any]]], synth: Synth
) -> None:
    """Rules (Karpenter "NodeClasses": ``spec.role`` is the node IAM role, which needs an EKS access entry of
    type ``EC2_LINUX`` in API authentication mode (EKS user guide "Create access entries"); subnets and
    security groups are selected by tags that must exist: the subnets' tags come from the network stack,
    and EKS tags the cluster security group ``aws:eks:cluster-name`` (EKS user guide "View Amazon EKS
    security group requirements for clusters"))."""
    entries = [
        deployment.canon(res["Properties"]["PrincipalArn"], stack)
        for stack, _, res in deployment.resources("AWS::EKS::AccessEntry")
        if res["Properties"].get("Type") == "EC2_LINUX"
    ]
    subnet_tags = [
        {t["Key"]: deployment.canon(t["Value"], stack) for t in res["Properties"].get("Tags", [])}
        for stack, _, res in deployment.resources("AWS::EC2::Subnet")
    ]
    for release, docs in rendered.items():
        for nc in (d for d in docs if d["kind"] == "EC2NodeClass"):
            role = deployment.role_by_name(nc["spec"]["role"])
            assert role in entries, f"{release}: node role {nc['spec']['role']} has no EC2_LINUX access entry"
            for term in nc["spec"]["subnetSelectorTerms"]:
                matches = [t for t in subnet_tags if all(t.get(k) == v for k, v in term["tags"].items())]
                assert len(matches) >= 2, f"{release}: subnet selector {term} matches {len(matches)} subnets"
            for term in nc["spec"]["securityGroupSelectorTerms"]:
                assert term["tags"] == {"aws:eks:cluster-name": synth.names.cluster}, term
