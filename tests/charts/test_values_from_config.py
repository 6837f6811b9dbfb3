"""Values computed from config.yaml fit the chart: the contract between the CDK workloads construct and it.

`values_from_config` is the reference mapping (config + naming -> values) the CDK app is expected to produce;
these tests check its output against values.schema.json with jsonschema (what infra tests can use, without
helm) and render it with helm. Deploy-time strings (CDK tokens) must pass the schema too.

Like helm, validate the values coalesced over the chart defaults (`coalesced`): the schema requires every key,
and helm always fills in the defaults first. Never pass `None`: helm treats a null value as "delete the key".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from easel.config import EaselConfig, load_config
from easel.contract.tasks import Lane
from easel.kinds import profile
from easel.naming import Names
from tests.charts.chart_helpers import CHART, NAMESPACE, ROOT, merge_values, one, parse_docs, run_helm

pytestmark = pytest.mark.charts

CONFIGS = [
    ROOT / "config.yaml",
    ROOT / "tests" / "configs" / "two-runtimes.yaml",
    # One pool per kind: diffusers, sdwebui, comfyui.
    ROOT / "tests" / "configs" / "three-kinds.yaml",
]


def values_from_config(
    config: EaselConfig, runtime: str, names: Names, *, workload_role_arn: str, node_role: str
) -> dict[str, Any]:
    """The chart values of one runtime, as the CDK workloads construct computes them."""
    rt = config.runtime(runtime)

    def queue_url(lane: Lane) -> str:
        return f"https://sqs.{names.region}.amazonaws.com/{names.account}/{names.lane_queue(rt.name, lane)}"

    def image(img: Any) -> dict[str, str]:
        return {"repository": img.repository, "tag": img.tag, "digest": img.digest or ""}

    def built(kind: str) -> dict[str, str]:
        # Without images in config, the CDK app's Docker image assets (bootstrap ECR repository, hash tag).
        repo = f"{names.account}.dkr.ecr.{names.region}.amazonaws.com/cdk-hnb659fds-container-assets"
        return {"repository": repo, "tag": f"{kind}0123abcd", "digest": ""}

    images = (
        {"runtime": image(rt.images.runtime), "agent": image(rt.images.agent)}
        if rt.images is not None
        else {"runtime": built("runtime"), "agent": built("agent")}
    )

    return {
        "runtime": {
            "name": rt.name,
            "kind": rt.kind,
            "models": [{"name": m.name, "path": m.store_path} for m in config.models_of(rt.name)],
            "dynamicModels": rt.dynamic_models,
            "taskTimeoutSeconds": rt.task_timeout_seconds,
            "visibilityTimeoutSeconds": rt.visibility_timeout_seconds,
            "maxReceiveCount": rt.max_receive_count,
            "gpus": rt.gpus,
            "batching": {
                "enabled": rt.batching.enabled,
                "maxImages": rt.batching.max_images,
                "maxWaitSeconds": rt.batching.max_wait_seconds,
            },
            "healthPath": rt.profile.health_path,
            "startupTimeoutSeconds": rt.startup_allowance_seconds,
            "command": list(rt.command or []),
            "args": list(rt.args or []),
            "modelMounts": [{"subPath": m.sub_path, "mountPath": m.mount_path} for m in rt.profile.mounts],
            "readOnlyRootFilesystem": rt.profile.read_only_root,
        },
        "images": images,
        "aws": {"region": names.region},
        "queues": {"high": {"url": queue_url(Lane.HIGH)}, "normal": {"url": queue_url(Lane.NORMAL)}},
        "tasks": {
            "tableName": names.tasks_table,
            "outputsBucket": names.outputs_bucket,
            "resultsTopicArn": names.topic_arn(names.results_topic),
            "allowedHttpsHosts": list(config.inputs.allowed_https_hosts),
            "maxInputBytes": config.inputs.max_bytes,
            "maxInputPixels": config.inputs.max_pixels,
        },
        "modelsVolume": {"bucketName": names.models_bucket},
        # EKS Pod Identity: no IRSA annotation; KEDA assumes the workload role itself.
        "serviceAccount": {"name": names.service_account(rt.name), "roleArn": ""},
        "scaling": {
            "minReplicas": rt.scaling.min_replicas,
            "maxReplicas": rt.scaling.max_replicas,
            "queueLength": rt.scaling.queue_length,
            "activationQueueLength": rt.scaling.activation_queue_length,
            "pollingInterval": rt.scaling.polling_seconds,
            "cooldownPeriod": rt.scaling.cooldown_seconds,
            "roleArn": workload_role_arn,
            "identityOwner": "keda",
        },
        "nodePool": {
            "instanceTypes": list(rt.instance_types),
            "capacityTypes": [str(c) for c in rt.capacity_types],
            "role": node_role,
            "clusterName": names.cluster,
        },
    }


def all_runtime_values() -> list[Any]:
    params = []
    for path in CONFIGS:
        config = load_config(path)
        names = Names.of(config, account="123456789012", region="eu-central-1")
        for rt in config.runtimes:
            values = values_from_config(
                config,
                rt.name,
                names,
                workload_role_arn=f"arn:aws:iam::123456789012:role/{names.release(rt.name)}-workload",
                node_role=f"{names.prefix}-karpenter-node",
            )
            params.append(pytest.param(names.release(rt.name), values, id=f"{path.stem}-{rt.name}"))
    return params


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def coalesced(values: dict[str, Any]) -> dict[str, Any]:
    """The values helm validates: the chart defaults with these merged over them."""
    return merge_values(yaml.safe_load((CHART / "values.yaml").read_text()), values)


def errors(validator: jsonschema.Draft7Validator, values: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def test_the_chart_defaults_validate(schema_validator: jsonschema.Draft7Validator) -> None:
    assert errors(schema_validator, yaml.safe_load((CHART / "values.yaml").read_text())) == []


@pytest.mark.parametrize(("release", "values"), all_runtime_values())
def test_values_from_config_validate_against_the_schema(
    schema_validator: jsonschema.Draft7Validator, release: str, values: dict[str, Any]
) -> None:
    assert errors(schema_validator, coalesced(values)) == []


@pytest.mark.parametrize(("release", "values"), all_runtime_values())
def test_values_from_config_render(helm: str, tmp_path: Path, release: str, values: dict[str, Any]) -> None:
    f = tmp_path / "values.json"
    f.write_text(json.dumps(values))
    proc = run_helm(helm, "template", release, str(CHART), "--namespace", NAMESPACE, "-f", str(f))
    assert proc.returncode == 0, proc.stderr
    docs = parse_docs(proc.stdout)
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["name"] == release
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == values["serviceAccount"]["name"]
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    assert values["serviceAccount"]["name"] in accounts
    urls = {t["name"]: t["metadata"]["queueURL"] for t in one(docs, "ScaledObject")["spec"]["triggers"]}
    assert urls == {lane: values["queues"][lane]["url"] for lane in ("high", "normal")}
    # The list replaced the chart's default model instead of merging with it.
    agent = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "queue-agent"
    )
    env = {e["name"]: e["value"] for e in agent["env"] if "value" in e}
    assert json.loads(env["EASEL_MODELS"]) == {m["name"]: m["path"] for m in values["runtime"]["models"]}
    # The kind's runtime: probes on an endpoint it serves, its arguments, its model directories.
    kind = profile(values["runtime"]["kind"])
    assert env["EASEL_RUNTIME_KIND"] == kind.kind
    runtime = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "runtime")
    for probe in ("startupProbe", "readinessProbe"):
        assert runtime[probe]["httpGet"]["path"] == kind.health_path
    startup = runtime["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= kind.startup_seconds
    models = [
        (m["mountPath"], m.get("subPath", "")) for m in runtime["volumeMounts"] if m["name"] == "models"
    ]
    assert models == [(m.mount_path, m.sub_path) for m in kind.mounts]
    if kind.kind == "diffusers":
        assert runtime["command"][:3] == ["python", "-m", "runtime_image.server"] and "args" not in runtime
    else:
        assert "command" not in runtime and runtime["args"] == list(kind.args)
        assert runtime["securityContext"]["readOnlyRootFilesystem"] is False


def test_deploy_time_tokens_pass_the_schema(schema_validator: jsonschema.Draft7Validator) -> None:
    """The CDK app passes unresolved tokens for names and ARNs it does not know at synth time."""
    config = load_config(CONFIGS[0])
    values = values_from_config(
        config,
        "sd15",
        Names.of(config),
        workload_role_arn="${Token[TOKEN.101]}",
        node_role="${Token[TOKEN.102]}",
    )
    values["aws"]["region"] = "${Token[AWS.Region.7]}"
    values["queues"] = {lane: {"url": f"${{Token[TOKEN.{n}]}}"} for n, lane in enumerate(("high", "normal"))}
    values["tasks"].update(
        tableName="${Token[TOKEN.201]}",
        outputsBucket="${Token[TOKEN.202]}",
        resultsTopicArn="${Token[TOKEN.203]}",
        inputBuckets=["${Token[TOKEN.204]}"],
    )
    values["modelsVolume"]["bucketName"] = "${Token[TOKEN.205]}"
    values["images"]["runtime"]["repository"] = "${Token[AWS.AccountId.9]}.dkr.ecr.${Token[AWS.Region.7]}/rt"
    values["nodePool"]["clusterName"] = "${Token[TOKEN.206]}"
    assert errors(schema_validator, coalesced(values)) == []


def test_partial_values_need_the_defaults(schema_validator: jsonschema.Draft7Validator) -> None:
    """Validating the CDK values alone (without the defaults) fails on required keys: coalesce first."""
    config = load_config(CONFIGS[0])
    values = values_from_config(config, "sd15", Names.of(config), workload_role_arn="r", node_role="n")
    assert any("is a required property" in e for e in errors(schema_validator, values))


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("scaling", "minReplica"), 1, "scaling"),
        (("images", "runtime", "tag"), "latest", "images.runtime.digest"),
        (("runtime", "models"), [], "runtime.models"),
        (("podSecurityContext", "runAsUser"), 0, "podSecurityContext.runAsUser"),
        (("queues", "high", "url"), "", "queues.high.url"),
    ],
)
def test_jsonschema_rejects_what_helm_rejects(
    schema_validator: jsonschema.Draft7Validator, path: tuple[str, ...], value: Any, where: str
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = errors(schema_validator, values)
    assert found
    assert any(e.startswith(f"{where}:") for e in found), found
