"""The easel-runtime chart: lint, render, validate every object, and the safety properties it promises.

Every rendering test runs on the chart defaults and on each value set in tests/charts/values/. Core kinds are
validated with kubernetes-validate (offline, strict); KEDA and Karpenter kinds against the openAPIV3Schema of
their CRDs from ../shared/crds, made strict so that a misspelled field fails instead of being pruned.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from easel.kinds import profile
from tests.charts.chart_helpers import (
    CHART,
    NAMESPACE,
    ROOT,
    VALUE_SETS,
    CrdValidators,
    by_kind,
    effective_values,
    one,
    parse_docs,
    release_name,
    run_helm,
    template_args,
    values_file,
)

pytestmark = pytest.mark.charts

Render = Callable[[str], list[dict[str, Any]]]
K8S_VERSION = "1.36"  # config.Cluster.kubernetes_version; kubernetes-validate ships its schemas
CRD_API_GROUPS = ("keda.sh/", "karpenter.sh/", "karpenter.k8s.aws/")
# docs/development.md marks it "set only in local mode": the chart (EKS only) never sets it.
LOCAL_ONLY_ENV = {"AWS_ENDPOINT_URL"}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(docs)["containers"] if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, str]:
    # A variable from the downward API shows as its valueFrom, as JSON.
    return {e["name"]: e["value"] if "value" in e else json.dumps(e["valueFrom"]) for e in c.get("env", [])}


def agent_env_contract() -> set[str]:
    """The variable names of the queue agent's table in docs/development.md."""
    text = (ROOT / "docs" / "development.md").read_text()
    section = text.split("**Queue agent**", 1)[1]
    names: set[str] = set()
    for line in section.splitlines()[1:]:
        if names and not line.startswith("|"):
            break
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    assert names, "no agent variables found in docs/development.md"
    return names


def load_gen_readme() -> ModuleType:
    name = "easel_chart_gen_readme"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CHART / "gen_readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# -- lint and render ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(helm: str, value_set: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    f = values_file(value_set)
    if f is not None:
        args += ["-f", str(f)]
    proc = run_helm(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_renders_the_kinds_the_values_ask_for(render: Render, value_set: str) -> None:
    values = effective_values(value_set)
    kinds = sorted(d["kind"] for d in render(value_set))
    expected = ["Deployment", "ScaledObject", "TriggerAuthentication"]
    if values["serviceAccount"]["create"]:
        expected.append("ServiceAccount")
    if values["podDisruptionBudget"]["enabled"]:
        expected.append("PodDisruptionBudget")
    if values["networkPolicy"]["enabled"]:
        expected.append("NetworkPolicy")
    if values["nodePool"]["enabled"]:
        expected += ["NodePool", "EC2NodeClass"]
    if values["modelsVolume"]["enabled"]:
        expected += ["PersistentVolume", "PersistentVolumeClaim"]
    drain = values["drain"]["enabled"] and values["nodePool"]["enabled"]
    if values["costGuard"]["enabled"] or drain:
        expected += ["ServiceAccount", "Role", "RoleBinding"]
    if values["costGuard"]["enabled"]:
        expected.append("CronJob")
    if drain:
        expected += ["Job", "ClusterRole", "ClusterRoleBinding"]
    assert kinds == sorted(expected)


# -- schema validation of the rendered objects -------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_core_kinds_validate_against_kubernetes_schemas(render: Render, value_set: str) -> None:
    core = [d for d in render(value_set) if not d["apiVersion"].startswith(CRD_API_GROUPS)]
    assert any(d["kind"] == "Deployment" for d in core)
    for doc in core:
        # Raises ValidationError on a bad object, SchemaNotFoundError on an unknown kind/version.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_keda_and_karpenter_kinds_validate_against_their_crds(
    render: Render, crd_validators: CrdValidators, value_set: str
) -> None:
    custom = [d for d in render(value_set) if d["apiVersion"].startswith(CRD_API_GROUPS)]
    assert {d["kind"] for d in custom} >= {"ScaledObject", "TriggerAuthentication"}
    for doc in custom:
        validator = crd_validators[(doc["apiVersion"], doc["kind"])]
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], f"{doc['kind']} {doc['metadata']['name']}: {errors}"


def test_kubernetes_validate_catches_a_broken_deployment(render: Render) -> None:
    deployment = one(render("default"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    unknown = one(render("default"), "Deployment")
    unknown["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("NodePool", lambda d: d["spec"]["disruption"].update(consolidationPolicy="WhenIdle")),
        ("NodePool", lambda d: d["spec"]["disruption"].update(consolidateAftr="5m")),
        ("EC2NodeClass", lambda d: d["spec"]["metadataOptions"].update(httpTokens="sometimes")),
        ("EC2NodeClass", lambda d: d["spec"].update(amiSelectorTerms=[])),
        ("ScaledObject", lambda d: d["spec"].update(minReplicaCount=-1)),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0].update(metdata={})),
        ("TriggerAuthentication", lambda d: d["spec"]["podIdentity"].update(identityOwner="pod")),
    ],
)
def test_crd_validation_catches_broken_objects(
    render: Render, crd_validators: CrdValidators, kind: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = one(render("default"), kind)
    mutate(doc)
    assert list(crd_validators[(doc["apiVersion"], kind)].iter_errors(doc))


# -- safety properties -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_scaledobject_scales_on_both_lanes_counting_in_flight(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    so = one(docs, "ScaledObject")["spec"]
    scaling = values["scaling"]
    assert so["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(docs, "Deployment")["metadata"]["name"],
    }
    triggers = {t["name"]: t for t in so["triggers"]}
    assert set(triggers) == {"high", "normal"}
    auth = one(docs, "TriggerAuthentication")["metadata"]["name"]
    for lane, t in triggers.items():
        assert t["type"] == "aws-sqs-queue"
        assert t["authenticationRef"] == {"name": auth}
        assert t["metadata"] == {
            "queueURL": values["queues"][lane]["url"],
            "awsRegion": values["aws"]["region"],
            "queueLength": str(scaling["queueLength"]),
            "activationQueueLength": str(scaling["activationQueueLength"]),
            "scaleOnInFlight": "true",
        }
    assert so["minReplicaCount"] == scaling["minReplicas"]
    assert so["maxReplicaCount"] == scaling["maxReplicas"]
    assert so["pollingInterval"] == scaling["pollingInterval"]
    assert so["cooldownPeriod"] == scaling["cooldownPeriod"]
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == scaling["scaleInStabilizationSeconds"]
    if scaling["sumLanes"]:
        modifiers = so["advanced"]["scalingModifiers"]
        assert set(re.findall(r"[a-z]+", modifiers["formula"])) == {"high", "normal"}
        assert "+" in modifiers["formula"]
        assert modifiers["target"] == str(scaling["queueLength"])
        assert modifiers["activationTarget"] == str(scaling["activationQueueLength"])
    else:
        assert "scalingModifiers" not in so["advanced"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_keda_reads_the_queues_as_the_workload(render: Render, value_set: str) -> None:
    """KEDA's aws provider: ``roleArn`` (the operator assumes the workload role with its own Pod Identity
    credentials) or ``identityOwner`` (keda, or workload = IRSA); never both (KEDA refuses that)."""
    values, docs = effective_values(value_set), render(value_set)
    pod_identity = one(docs, "TriggerAuthentication")["spec"]["podIdentity"]
    if values["scaling"]["roleArn"]:
        assert pod_identity == {"provider": "aws", "roleArn": values["scaling"]["roleArn"]}
    else:
        assert pod_identity == {"provider": "aws", "identityOwner": values["scaling"]["identityOwner"]}
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == (values["serviceAccount"]["name"] or release_of(docs))
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    # The webhook must inject credentials into every container (it skips the ones listed here).
    assert "eks.amazonaws.com/skip-containers" not in annotations
    if values["serviceAccount"]["create"]:
        sa = next(
            d
            for d in docs
            if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == spec["serviceAccountName"]
        )
        irsa = (sa["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn")
        assert irsa == (values["serviceAccount"]["roleArn"] or None)


def release_of(docs: list[dict[str, Any]]) -> str:
    return one(docs, "Deployment")["metadata"]["labels"]["app.kubernetes.io/instance"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_runs_non_root_without_privileges(render: Render, value_set: str) -> None:
    values, spec = effective_values(value_set), pod_spec(render(value_set))
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    assert pod["runAsGroup"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert {c["name"] for c in spec["containers"]} == {"runtime", "queue-agent"}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["privileged"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        key = "runtime" if c["name"] == "runtime" else "agent"
        assert sc["readOnlyRootFilesystem"] is values[key]["readOnlyRootFilesystem"], c["name"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts, f"{c['name']}: no writable /tmp under a read-only root"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_both_containers_drain_through_the_agent_before_stopping(render: Render, value_set: str) -> None:
    docs = render(value_set)
    agent = container(docs, "queue-agent")
    agent_port = int(env_of(agent)["EASEL_AGENT_PORT"])
    agent_ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    assert agent_port in agent_ports.values()
    for c in pod_spec(docs)["containers"]:
        hook = c["lifecycle"]["preStop"]["httpGet"]
        assert hook["path"] == "/drain", c["name"]
        # A named port resolves among the container's own ports, so other containers must use the number.
        port = hook["port"]
        resolved = (
            port if isinstance(port, int) else {p["name"]: p["containerPort"] for p in c["ports"]}[port]
        )
        assert resolved == agent_port, c["name"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_grace_period_covers_a_whole_task(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    timeout = values["runtime"]["taskTimeoutSeconds"]
    grace = pod_spec(docs)["terminationGracePeriodSeconds"]
    assert grace >= timeout
    assert grace == timeout + values["runtime"]["drainMarginSeconds"]
    # The agent lets the started task run for its shutdown grace, then answers /drain within 30 s.
    agent_grace = int(env_of(container(docs, "queue-agent"))["EASEL_AGENT_SHUTDOWN_GRACE_SECONDS"])
    assert agent_grace <= timeout
    assert grace >= agent_grace + 30
    assert env_of(container(docs, "queue-agent"))["EASEL_TASK_TIMEOUT_SECONDS"] == str(timeout)


@pytest.mark.parametrize(("timeout", "margin"), [(30, 30), (899, 30), (3600, 300), (43200, 3600)])
def test_grace_period_helper_over_the_allowed_range(helm: str, timeout: int, margin: int) -> None:
    proc = run_helm(
        helm,
        *template_args(
            "default",
            "--set",
            f"runtime.taskTimeoutSeconds={timeout},runtime.drainMarginSeconds={margin}",
            "--show-only",
            "templates/deployment.yaml",
        ),
    )
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load(proc.stdout)["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == timeout + margin >= timeout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pdb_covers_the_pool_pods(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if not values["podDisruptionBudget"]["enabled"]:
        assert pdbs == []
        return
    (pdb,) = pdbs
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == values["podDisruptionBudget"]["maxUnavailable"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_agent_env_is_the_documented_contract(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    env = env_of(container(docs, "queue-agent"))
    # Besides the contract: HOME (read-only root), the agent's tuning knobs the chart derives, extraEnv.
    tuning = {
        "EASEL_AGENT_SHUTDOWN_GRACE_SECONDS",
        "EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS",
        "EASEL_AGENT_LORA_STYLE",
        "EASEL_AGENT_CONTROL_PEERS",
        "EASEL_AGENT_BATCH_MAX_IMAGES",
        "EASEL_AGENT_BATCH_MAX_WAIT_SECONDS",
    }
    extra = {e["name"] for e in values["agent"]["extraEnv"]} | {"HOME"} | tuning
    assert set(env) - extra == agent_env_contract() - LOCAL_ONLY_ENV
    shutdown_grace = values["agent"]["shutdownGraceSeconds"] or values["runtime"]["taskTimeoutSeconds"]
    assert env["EASEL_AGENT_SHUTDOWN_GRACE_SECONDS"] == str(shutdown_grace)
    assert env["EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS"] == str(values["agent"]["receiveVisibilitySeconds"])
    # A stock WebUI takes LoRAs as prompt tags.
    assert env.get("EASEL_AGENT_LORA_STYLE") == ("prompt" if values["runtime"]["kind"] == "sdwebui" else None)
    # Cross-task batching: only when enabled (and the Easel runtime), with the configured bounds.
    batching = values["runtime"]["batching"]
    if batching["enabled"] and values["runtime"]["kind"] == "diffusers":
        assert env["EASEL_AGENT_BATCH_MAX_IMAGES"] == str(batching["maxImages"])
        assert float(env["EASEL_AGENT_BATCH_MAX_WAIT_SECONDS"]) == batching["maxWaitSeconds"]
    else:
        assert "EASEL_AGENT_BATCH_MAX_IMAGES" not in env
    assert env["EASEL_RUNTIME"] == values["runtime"]["name"]
    assert env["EASEL_RUNTIME_KIND"] == values["runtime"]["kind"]
    assert env["EASEL_HIGH_QUEUE_URL"] == values["queues"]["high"]["url"]
    assert env["EASEL_NORMAL_QUEUE_URL"] == values["queues"]["normal"]["url"]
    assert env["EASEL_TABLE_NAME"] == values["tasks"]["tableName"]
    assert env["EASEL_OUTPUTS_BUCKET"] == values["tasks"]["outputsBucket"]
    assert env["EASEL_RESULTS_TOPIC_ARN"] == values["tasks"]["resultsTopicArn"]
    assert json.loads(env["EASEL_MODELS"]) == {m["name"]: m["path"] for m in values["runtime"]["models"]}
    assert env["EASEL_INPUT_BUCKETS"] == ",".join(values["tasks"]["inputBuckets"])
    assert env["EASEL_ALLOWED_HTTPS_HOSTS"] == ",".join(values["tasks"]["allowedHttpsHosts"])
    assert env["EASEL_VISIBILITY_TIMEOUT_SECONDS"] == str(values["runtime"]["visibilityTimeoutSeconds"])
    assert env["EASEL_MAX_RECEIVE_COUNT"] == str(values["runtime"]["maxReceiveCount"])
    assert env["EASEL_RUNTIME_URL"] == f"http://127.0.0.1:{values['runtime']['port']}"
    assert env["AWS_REGION"] == values["aws"]["region"]
    # /drain and /stats answer the node (the kubelet's preStop) besides loopback, nobody else.
    assert json.loads(env["EASEL_AGENT_CONTROL_PEERS"]) == {"fieldRef": {"fieldPath": "status.hostIP"}}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_runtime_container(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    runtime = container(docs, "runtime")
    kind = profile(values["runtime"]["kind"])
    if kind.kind != "diffusers":
        # A stock image runs its own entrypoint with the kind's arguments (easel/kinds.py), then extraArgs.
        assert runtime.get("command", []) == values["runtime"]["command"]
        args = values["runtime"]["args"] or list(kind.args)
        assert runtime["args"] == args + values["runtime"]["extraArgs"]
        # Its model directories where the image looks, read-only, over a writable /data.
        want = values["runtime"]["modelMounts"] or [
            {"subPath": m.sub_path, "mountPath": m.mount_path} for m in kind.mounts
        ]
        mounts = runtime["volumeMounts"]
        assert [
            {"subPath": m["subPath"], "mountPath": m["mountPath"]} for m in mounts if m["name"] == "models"
        ] == want
        assert all(m["readOnly"] for m in mounts if m["name"] == "models")
        assert mounts[0] == {"name": "data", "mountPath": "/data"}  # under the model mounts
    else:
        cmd = runtime["command"]
        assert cmd[:3] == ["python", "-m", "runtime_image.server"]
        assert cmd[cmd.index("--models-dir") + 1] == values["modelsVolume"]["mountPath"]
        assert cmd[cmd.index("--port") + 1] == str(values["runtime"]["port"])
        assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # kubelet probes reach the pod IP
        if not values["runtime"]["command"]:
            # Private LoRAs go to the writable scratch emptyDir (/tmp); the models mount is read-only.
            assert cmd[cmd.index("--private-loras-dir") + 1].startswith("/tmp/")
        if values["runtime"]["dynamicModels"]:
            assert "--model" not in cmd
        else:
            assert cmd[cmd.index("--model") + 1] == values["runtime"]["models"][0]["path"]
        assert cmd[len(cmd) - len(values["runtime"]["extraArgs"]) :] == values["runtime"]["extraArgs"]
    gpus = values["runtime"]["gpus"]
    assert runtime["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert runtime["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert "nvidia.com/gpu" not in container(docs, "queue-agent")["resources"].get("limits", {})
    # Probes on an endpoint the kind really serves (a stock WebUI has no /health), over its start-up allowance.
    health = values["runtime"]["healthPath"] or kind.health_path
    for probe in ("startupProbe", "readinessProbe"):
        assert runtime[probe]["httpGet"] == {"path": health, "port": "http"}
    startup = runtime["startupProbe"]
    allowance = values["runtime"]["startupTimeoutSeconds"] or kind.startup_seconds
    assert startup["periodSeconds"] * startup["failureThreshold"] >= allowance
    assert {"name": "http", "containerPort": values["runtime"]["port"], "protocol": "TCP"} in runtime["ports"]
    assert ("EASEL_TORCH_COMPILE" in env_of(runtime)) is values["runtime"]["torchCompile"]
    assert env_of(runtime).get("EASEL_CACHE_MAX_BYTES") == (values["runtime"]["modelCacheSize"] or None)
    if kind.kind == "diffusers":
        models_mount = next(m for m in runtime["volumeMounts"] if m["name"] == "models")
        assert models_mount == {
            "name": "models",
            "mountPath": values["modelsVolume"]["mountPath"],
            "readOnly": True,
        }


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_agent_probes(render: Render, value_set: str) -> None:
    agent = container(render(value_set), "queue-agent")
    assert agent["command"] == ["python", "-m", "queue_agent"]
    assert agent["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "agent"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/live", "port": "agent"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_images_are_pinned(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    for name, key in (("runtime", "runtime"), ("queue-agent", "agent")):
        image = values["images"][key]
        ref = container(docs, name)["image"]
        expected = f"{image['repository']}:{image['tag']}"
        if image["digest"]:
            expected += f"@{image['digest']}"
        assert ref == expected
        assert not ref.endswith(":latest")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_gpu_nodes_and_their_disruption(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    template = one(docs, "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert "replicas" not in one(docs, "Deployment")["spec"]  # KEDA owns the count
    tolerations = template["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    np = values["nodePool"]
    if not np["enabled"]:
        assert "easel.dev/runtime" not in template["spec"]["nodeSelector"]
        return
    pool = one(docs, "NodePool")["spec"]
    requirements = {r["key"]: r for r in pool["template"]["spec"]["requirements"]}
    assert requirements["node.kubernetes.io/instance-type"]["values"] == np["instanceTypes"]
    assert requirements["karpenter.sh/capacity-type"]["values"] == np["capacityTypes"]
    assert requirements["kubernetes.io/arch"]["values"] == ["amd64"]
    assert all(r["operator"] == "In" for r in requirements.values())
    assert {"key": "nvidia.com/gpu", "effect": "NoSchedule"} in pool["template"]["spec"]["taints"]
    # The pods land on this pool's nodes only.
    node_labels = pool["template"]["metadata"]["labels"]
    for key, value in template["spec"]["nodeSelector"].items():
        if key.startswith("kubernetes.io/"):
            continue
        assert node_labels.get(key) == value, key
    assert pool["template"]["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": one(docs, "EC2NodeClass")["metadata"]["name"],
    }
    assert pool["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert pool["disruption"]["consolidateAfter"] == np["consolidateAfter"]
    assert pool["disruption"]["budgets"] == np["budgets"]
    expected_limits = np["limits"] or {
        "nvidia.com/gpu": (values["scaling"]["maxReplicas"] + 1) * values["runtime"]["gpus"]
    }
    assert pool["limits"] == expected_limits


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_ec2nodeclass_is_pinned_and_locked_down(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    np = values["nodePool"]
    if not np["enabled"]:
        assert by_kind(docs, "EC2NodeClass") == []
        return
    spec = one(docs, "EC2NodeClass")["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": np["amiAlias"]}]
    family, version = np["amiAlias"].split("@")
    assert family in {"bottlerocket", "al2023"} and version != "latest"
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert spec["role"] == np["role"]
    assert "instanceProfile" not in spec  # the CRD wants exactly one of role/instanceProfile
    default_tags = {"karpenter.sh/discovery": np["clusterName"]}
    assert spec["subnetSelectorTerms"] == [{"tags": np["subnetSelectorTags"] or default_tags}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": np["securityGroupSelectorTags"] or default_tags}]
    devices = {b["deviceName"]: b for b in spec["blockDeviceMappings"]}
    for b in devices.values():
        assert b["ebs"]["encrypted"] is True
        assert b["ebs"]["volumeType"] == "gp3"
        if np["blockDeviceKmsKeyId"]:
            assert b["ebs"]["kmsKeyID"] == np["blockDeviceKmsKeyId"]
    data = devices["/dev/xvdb"] if family == "bottlerocket" else devices["/dev/xvda"]
    assert data["ebs"]["volumeSize"] == f"{np['blockDeviceSizeGi']}Gi"
    if family == "al2023":
        assert data["rootVolume"] is True
    assert spec.get("instanceStorePolicy", "") == np["instanceStorePolicy"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_models_volume_is_a_read_only_mountpoint_mount(render: Render, value_set: str) -> None:
    values, docs = effective_values(value_set), render(value_set)
    mv = values["modelsVolume"]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    if not mv["enabled"]:
        assert volumes["models"] == {"name": "models", "emptyDir": {}}
        assert by_kind(docs, "PersistentVolume") == []
        return
    pv, pvc = one(docs, "PersistentVolume"), one(docs, "PersistentVolumeClaim")
    assert volumes["models"]["persistentVolumeClaim"] == {
        "claimName": pvc["metadata"]["name"],
        "readOnly": True,
    }
    assert pv["spec"]["claimRef"] == {"namespace": NAMESPACE, "name": pvc["metadata"]["name"]}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    csi = pv["spec"]["csi"]
    assert csi["driver"] == "s3.csi.aws.com"
    assert csi["readOnly"] is True
    assert csi["volumeAttributes"]["bucketName"] == mv["bucketName"]
    assert csi["volumeAttributes"]["authenticationSource"] == mv["authenticationSource"]
    if mv["cache"]["enabled"]:
        assert csi["volumeAttributes"]["cache"] == "emptyDir"
        assert csi["volumeAttributes"]["cacheEmptyDirSizeLimit"] == mv["cache"]["sizeLimit"]
    options = pv["spec"]["mountOptions"]
    security = pod_spec(docs)["securityContext"]
    assert "read-only" in options
    assert f"uid={security['runAsUser']}" in options
    assert f"gid={security['runAsGroup']}" in options
    assert f"region {values['aws']['region']}" in options
    if mv["prefix"]:
        assert f"prefix {mv['prefix'].rstrip('/')}/" in options
    assert all(o in options for o in mv["extraMountOptions"])


# -- what the values schema and the template checks reject --------------------------------------------------


BAD_VALUES = [
    pytest.param(["--set", "scaling.minReplica=1"], "minReplica", id="misspelled-key"),
    pytest.param(["--set", "runtime.taskTimeout=900"], "taskTimeout", id="misspelled-nested-key"),
    pytest.param(["--set", "images.runtime.tag=latest"], "digest", id="latest-without-digest"),
    pytest.param(
        ["--set", "images.agent.tag=latest,images.agent.digest=sha256:abc"], "digest", id="bad-digest"
    ),
    pytest.param(["--set", "podSecurityContext.runAsNonRoot=false"], "runAsNonRoot", id="root-allowed"),
    pytest.param(["--set", "podSecurityContext.runAsUser=0"], "runAsUser", id="uid-0"),
    pytest.param(["--set", "nodePool.amiAlias=bottlerocket@latest"], "amiAlias", id="unpinned-ami"),
    pytest.param(["--set", "nodePool.capacityTypes={spot,reserved}"], "capacityTypes", id="capacity-type"),
    pytest.param(["--set-string", "runtime.taskTimeoutSeconds=900"], "taskTimeoutSeconds", id="wrong-type"),
    pytest.param(["--set", "runtime.taskTimeoutSeconds=10"], "taskTimeoutSeconds", id="timeout-too-short"),
    pytest.param(["--set", "queues.high.url="], "url", id="empty-queue-url"),
    pytest.param(["--set", "runtime.drainMarginSeconds=10"], "drainMarginSeconds", id="margin-too-short"),
    pytest.param(["--set", "runtime.modelCacheSize=lots"], "modelCacheSize", id="cache-size"),
    pytest.param(
        ["--set-json", 'runtime.models=[{"name":"a","path":"a"},{"name":"b","path":"b"}]'],
        "models",
        id="fixed-runtime-with-two-models",
    ),
]


@pytest.mark.parametrize(("args", "key"), BAD_VALUES)
def test_schema_rejects_bad_values(helm: str, args: list[str], key: str) -> None:
    lint = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert lint.returncode != 0
    assert "schema" in lint.stdout + lint.stderr
    assert key in lint.stdout + lint.stderr
    template = run_helm(helm, *template_args("default", *args))
    assert template.returncode != 0
    assert key in template.stderr


TEMPLATE_CHECKS = [
    pytest.param(
        ["--set", "scaling.minReplicas=5,scaling.maxReplicas=2"], "scaling.minReplicas", id="min>max"
    ),
    pytest.param(
        [
            "--set",
            "runtime.dynamicModels=true",
            "--set-json",
            'runtime.models=[{"name":"a","path":"x"},{"name":"a","path":"y"}]',
        ],
        "runtime.models.1.name",
        id="duplicate-model",
    ),
    pytest.param(
        ["--set", "scaling.roleArn=,scaling.identityOwner=workload,serviceAccount.roleArn="],
        "serviceAccount.roleArn",
        id="workload-without-role",
    ),
    pytest.param(["--set", "scaling.identityOwner=workload"], "scaling.roleArn", id="role-and-workload"),
    pytest.param(
        ["--set", "agent.shutdownGraceSeconds=901"], "agent.shutdownGraceSeconds", id="agent-grace>timeout"
    ),
]


@pytest.mark.parametrize(("args", "key"), TEMPLATE_CHECKS)
def test_template_checks_reject_inconsistent_values(helm: str, args: list[str], key: str) -> None:
    proc = run_helm(helm, *template_args("default", *args))
    assert proc.returncode != 0
    assert key in proc.stderr


def test_valid_overrides_still_render(helm: str) -> None:
    """The rejections above are about the values, not about overriding at all."""
    proc = run_helm(
        helm,
        *template_args(
            "default",
            "--set",
            "scaling.minReplicas=2,scaling.maxReplicas=2,images.runtime.tag=latest",
            "--set",
            "images.runtime.digest=sha256:" + "ab" * 32,
        ),
    )
    assert proc.returncode == 0, proc.stderr


# -- README ------------------------------------------------------------------------------------------------


def test_readme_values_table_is_current() -> None:
    gen = load_gen_readme()
    assert (CHART / "README.md").read_text() == gen.render(), (
        "README.md is stale: run python charts/easel-runtime/gen_readme.py"
    )


def test_readme_lists_every_value() -> None:
    gen = load_gen_readme()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = {r.key for r in gen.rows()}
    for top, value in values.items():
        assert top in keys or any(k.startswith(f"{top}.") for k in keys), top
        if isinstance(value, dict):
            for sub in value:
                path = f"{top}.{sub}"
                assert top in keys or path in keys or any(k.startswith(f"{path}.") for k in keys), path


def test_readme_generator_refuses_an_undocumented_value(tmp_path: Path) -> None:
    gen = load_gen_readme()
    chart = tmp_path / "easel-runtime"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("templates", "__pycache__"))
    text = (chart / "values.yaml").read_text()
    (chart / "values.yaml").write_text(text.replace("scaling:\n", "scaling:\n  undocumented: 1\n", 1))
    with pytest.raises(gen.ReadmeError, match=r"scaling\.undocumented"):
        gen.rows(chart)
    # ... and a documented one shows up in the table.
    (chart / "values.yaml").write_text(
        text.replace("scaling:\n", "scaling:\n  # -- A new knob.\n  newKnob: 1\n", 1)
    )
    assert "| `scaling.newKnob` | any | `1` | A new knob. |" in gen.table(chart)


def test_defaults_are_the_safe_choices() -> None:
    values = effective_values("default")
    assert values["runtime"]["readOnlyRootFilesystem"] is True
    assert values["agent"]["readOnlyRootFilesystem"] is True
    assert values["runtime"]["healthPath"] == ""  # the kind's: /health for the default diffusers
    assert values["nodePool"]["capacityTypes"] == ["spot", "on-demand"]
    assert values["podDisruptionBudget"]["enabled"] is True
    assert values["networkPolicy"]["enabled"] is True
    assert values["serviceAccount"]["automountToken"] is False
    for image in values["images"].values():
        assert image["tag"] != "latest"


def test_values_file_sets_are_distinct() -> None:
    """Each value set exercises something the defaults do not."""
    default = effective_values("default")
    sets = {s: effective_values(s) for s in VALUE_SETS if s != "default"}
    assert len(sets) >= 3
    assert any(v["runtime"]["dynamicModels"] for v in sets.values())
    assert any(not v["runtime"]["dynamicModels"] for v in sets.values())
    assert any(v["nodePool"]["capacityTypes"] == ["on-demand"] for v in sets.values())
    assert {v["scaling"]["minReplicas"] for v in sets.values()} >= {0, 1}
    for name, v in sets.items():
        assert v != default, name


# -- telemetry ---------------------------------------------------------------------------------------------


def test_telemetry_is_off_by_default_and_passes_otlp_and_resource_attributes_when_on(helm: str) -> None:
    """Off: no OpenTelemetry variable. On: both containers export OTLP/HTTP to the collector on their node
    (or the endpoint given), sample by ratio under a sampled parent, and carry the release, runtime,
    namespace, pod and node as resource attributes (plus the extra ones)."""
    off = parse_docs(run_helm(helm, *template_args("default")).stdout)
    for name in ("runtime", "queue-agent"):
        assert not [k for k in env_of(container(off, name)) if k.startswith("OTEL_") or k == "EASEL_TRACES"]
    proc = run_helm(
        helm,
        *template_args(
            "default",
            "--set",
            "telemetry.enabled=true",
            # --set parses floats as strings; the schema wants a number.
            "--set-json",
            "telemetry.samplingRatio=0.25",
            "--set",
            "telemetry.resourceAttributes.deployment\\.environment=prod",
        ),
    )
    assert proc.returncode == 0, proc.stderr
    docs = parse_docs(proc.stdout)
    release = release_name("default")
    for name, service in (("runtime", "easel-runtime"), ("queue-agent", "easel-agent")):
        c = container(docs, name)
        env = env_of(c)
        names = [e["name"] for e in c["env"]]
        assert env["EASEL_TRACES"] == "otlp"
        assert env["OTEL_SERVICE_NAME"] == service
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        # $(EASEL_NODE_IP) expands only if defined earlier in the same container.
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://$(EASEL_NODE_IP):4318"
        assert names.index("EASEL_NODE_IP") < names.index("OTEL_EXPORTER_OTLP_ENDPOINT")
        assert json.loads(env["EASEL_NODE_IP"]) == {"fieldRef": {"fieldPath": "status.hostIP"}}
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        attrs = dict(pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert attrs == {
            "deployment.environment": "prod",
            "easel.runtime": "sd15",
            "k8s.namespace.name": NAMESPACE,
            "k8s.node.name": "$(EASEL_NODE_NAME)",
            "k8s.pod.name": "$(EASEL_POD_NAME)",
            "service.namespace": release,
        }
        assert names.index("EASEL_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    other = run_helm(
        helm,
        *template_args(
            "default", "--set", "telemetry.enabled=true,telemetry.otlpEndpoint=http://collector.obs:4318"
        ),
    )
    env = env_of(container(parse_docs(other.stdout), "queue-agent"))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs:4318"
    bad = run_helm(helm, *template_args("default", "--set-json", "telemetry.samplingRatio=2"))
    assert bad.returncode != 0 and "samplingRatio" in bad.stderr
