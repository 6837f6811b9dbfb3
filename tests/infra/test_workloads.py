"""Workloads: chart values from config fit values.schema.json; one release and one least-privilege role per runtime."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from easel.config import EaselConfig, RuntimeSpec, load_config
from easel.naming import Names
from infra.constructs.workloads import CHART_DIR, CLUSTER_SG_TAG, ImageRef, RuntimeRefs, runtime_values
from tests.conftest import EXAMPLE_CONFIG, ROOT, TWO_RUNTIMES_CONFIG
from tests.infra.conftest import Synth, flat

pytestmark = pytest.mark.infra

CONFIGS = [EXAMPLE_CONFIG, TWO_RUNTIMES_CONFIG]
TOKEN = "${Token[TOKEN.123]}"  # what a CDK token looks like inside a string at synth time


def _refs(names: Names, runtime: str, token: bool = False) -> RuntimeRefs:
    def v(s: str) -> str:
        return TOKEN if token else s

    queue = f"https://sqs.{names.region}.amazonaws.com/{names.account}/"
    return RuntimeRefs(
        region=names.region,
        high_queue_url=v(queue + names.lane_queue(runtime, "high")),
        normal_queue_url=v(queue + names.lane_queue(runtime, "normal")),
        table_name=names.tasks_table,
        outputs_bucket=names.outputs_bucket,
        results_topic_arn=v(names.topic_arn(names.results_topic)),
        models_bucket=names.models_bucket,
        node_role_name=v("easel-karpenter-node"),
        cluster_name=names.cluster,
    )


def _values(config: EaselConfig, runtime: RuntimeSpec, token: bool = False) -> dict[str, Any]:
    names = Names.of(config, account="123456789012", region="us-west-2")
    role = TOKEN if token else f"arn:aws:iam::123456789012:role/{names.release(runtime.name)}-workload"
    built = {
        kind: ImageRef(
            repository=TOKEN if token else "123456789012.dkr.ecr.us-west-2.amazonaws.com/cdk-assets",
            tag=f"{kind}1a2b",
        )
        for kind in ("runtime", "agent")
    }
    return runtime_values(
        config, runtime, _refs(names, runtime.name, token), names, role_arn=role, built_images=built
    )


def _coalesce(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over the chart defaults: maps merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = (
            _coalesce(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


@pytest.fixture(scope="module")
def chart_defaults() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return data


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("token", [False, True], ids=["strings", "tokens"])
def test_values_validate_against_the_chart_schema(
    config_path: Path, token: bool, chart_defaults: dict[str, Any], schema: dict[str, Any]
) -> None:
    config = load_config(config_path)
    for runtime in config.runtimes:
        values = _values(config, runtime, token)
        jsonschema.validate(_coalesce(chart_defaults, values), schema)


def test_values_follow_the_config(chart_defaults: dict[str, Any]) -> None:
    config = load_config(TWO_RUNTIMES_CONFIG)
    fixed, dynamic = (_values(config, config.runtime(n)) for n in ("sd15", "community"))
    assert fixed["runtime"]["models"] == [{"name": "sd15", "path": "sd15"}]
    assert fixed["runtime"]["dynamicModels"] is False
    assert fixed["nodePool"]["capacityTypes"] == ["on-demand"]
    assert fixed["scaling"]["minReplicas"] == 1 and fixed["scaling"]["maxReplicas"] == 2
    assert dynamic["runtime"]["models"] == [
        {"name": "dreamshaper", "path": "dreamshaper-8.safetensors"},
        {"name": "realvis", "path": "realvis"},
    ]
    assert dynamic["runtime"]["dynamicModels"] is True
    assert dynamic["runtime"]["taskTimeoutSeconds"] == 600
    assert dynamic["runtime"]["visibilityTimeoutSeconds"] == 660
    assert dynamic["runtime"]["maxReceiveCount"] == 5
    # Drain deadline per capacity type: on-demand only -> the task timeout; spot in the pool -> 90 s.
    assert fixed["agent"] == {"shutdownGraceSeconds": 900, "receiveVisibilitySeconds": 60}
    assert dynamic["agent"] == {"shutdownGraceSeconds": 90, "receiveVisibilitySeconds": 60}
    assert dynamic["nodePool"]["instanceTypes"] == ["g6e.xlarge"]
    assert dynamic["serviceAccount"]["name"] == "easel2-community"
    assert dynamic["fullnameOverride"] == "easel2-community"
    # KEDA's operator assumes the workload role itself; no IRSA annotation on the service account.
    assert dynamic["scaling"]["identityOwner"] == "keda"
    assert dynamic["scaling"]["roleArn"].endswith("easel2-community-workload")
    assert dynamic["serviceAccount"]["roleArn"] == ""
    assert dynamic["nodePool"]["securityGroupSelectorTags"] == {CLUSTER_SG_TAG: "easel2"}
    assert dynamic["nodePool"]["subnetSelectorTags"] == {"karpenter.sh/discovery": "easel2"}
    # Never None: helm reads a null value as "delete this key".
    assert "null" not in json.dumps(dynamic)


@pytest.mark.charts
def test_values_render_with_helm(tmp_path: Path) -> None:
    helm = ROOT / ".venv" / "tools" / "helm"
    if not helm.is_file():
        pytest.skip("helm not installed (make tools)")
    config = load_config(TWO_RUNTIMES_CONFIG)
    runtime = config.runtime("community")
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(_values(config, runtime)))
    proc = subprocess.run(
        [
            str(helm),
            "template",
            "easel2-community",
            str(CHART_DIR),
            "--namespace",
            "easel",
            "-f",
            str(values_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(proc.stdout) if d}
    sa = docs[("ServiceAccount", "easel2-community")]
    assert "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {})
    auth = docs[("TriggerAuthentication", "easel2-community")]["spec"]["podIdentity"]
    assert auth["roleArn"].endswith("easel2-community-workload")
    node_class = next(d for (kind, _), d in docs.items() if kind == "EC2NodeClass")
    assert {"tags": {CLUSTER_SG_TAG: "easel2"}} in node_class["spec"]["securityGroupSelectorTerms"]


# -- synthesized ---------------------------------------------------------------------------------------------
HELM = "Custom::AWSCDK-EKS-HelmChart"


def _release(synth: Synth, runtime: str) -> dict[str, Any]:
    releases = [
        v["Properties"]
        for v in synth.resources(synth.compute, HELM).values()
        if v["Properties"]["Release"] == synth.names.release(runtime)
    ]
    assert len(releases) == 1
    return releases[0]


def _rendered_values(release: dict[str, Any]) -> dict[str, Any]:
    pieces = release["Values"]["Fn::Join"][1]
    data: dict[str, Any] = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in pieces))
    return data


@pytest.mark.slow
def test_one_release_of_the_chart_asset_per_runtime(synth: Synth) -> None:
    assets = {json.dumps(_release(synth, r.name)["ChartAssetURL"]) for r in synth.config.runtimes}
    assert len(assets) == 1  # one chart asset shared by every release
    for runtime in synth.config.runtimes:
        release = _release(synth, runtime.name)
        assert release["Namespace"] == synth.config.cluster.namespace
        assert release["CreateNamespace"] is True
        assert "Chart" not in release and "Repository" not in release
        values = _rendered_values(release)
        expected = _values(synth.config, runtime)
        assert values["runtime"] == expected["runtime"]
        # The role KEDA assumes is the release's workload role (a token in the template).
        assert {k: v for k, v in values["scaling"].items() if k != "roleArn"} == {
            k: v for k, v in expected["scaling"].items() if k != "roleArn"
        }
        assert values["nodePool"]["instanceTypes"] == list(runtime.instance_types)
        assert values["serviceAccount"]["name"] == synth.names.service_account(runtime.name)


@pytest.mark.slow
def test_release_queue_urls_are_the_runtimes_own_lanes(synth: Synth) -> None:
    for runtime in synth.config.runtimes:
        pieces = _release(synth, runtime.name)["Values"]["Fn::Join"][1]
        outputs = [
            p["Fn::GetStackOutput"]["OutputName"]
            for p in pieces
            if isinstance(p, dict) and "Fn::GetStackOutput" in p
        ]
        lane_ids = _lane_queue_ids(synth, runtime.name)
        queue_outputs = [o for o in outputs if "Queue" in o]
        assert len(queue_outputs) == 2
        assert all(any(lane_id in o for lane_id in lane_ids) for o in queue_outputs)


def _lane_queue_ids(synth: Synth, runtime: str) -> list[str]:
    names = {synth.names.lane_queue(runtime, lane) for lane in ("high", "normal")}
    return [
        k
        for k, v in synth.resources(synth.core, "AWS::SQS::Queue").items()
        if v["Properties"]["QueueName"] in names
    ]


def _workload_policy(synth: Synth, runtime: str) -> list[dict[str, Any]]:
    prefix = f"Workloads{runtime}Role".replace("-", "")
    roles = [k for k in synth.resources(synth.compute, "AWS::IAM::Role") if k.startswith(prefix)]
    assert len(roles) == 1, roles
    return [
        s
        for v in synth.resources(synth.compute, "AWS::IAM::Policy").values()
        if v["Properties"]["Roles"] == [{"Ref": roles[0]}]
        for s in v["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


@pytest.mark.slow
def test_workload_policy_is_least_privilege(synth: Synth) -> None:
    for runtime in synth.config.runtimes:
        statements = _workload_policy(synth, runtime.name)
        actions = sorted(a for s in statements for a in _actions(s))
        # No wildcard actions anywhere, and nothing beyond what the queue agent does.
        assert not [a for a in actions if "*" in a]
        assert set(actions) == {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "s3:GetObject",
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:ListBucket",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "sns:Publish",
        }
        assert all(s["Effect"] == "Allow" for s in statements)

        sqs = next(s for s in statements if "sqs:ReceiveMessage" in _actions(s))
        outputs = [r["Fn::GetStackOutput"]["OutputName"] for r in sqs["Resource"]]
        lane_ids = _lane_queue_ids(synth, runtime.name)
        assert len(outputs) == 2 and all(any(i in o for i in lane_ids) for o in outputs)

        writes = next(s for s in statements if "s3:PutObject" in _actions(s))
        # The retained outputs bucket has a generated name, imported from the core stack's export.
        assert flat(writes["Resource"]).endswith(
            f"<import:{synth.config.stack_name}-outputs-bucket>/tenants/*"
        )
        lists = [s for s in statements if _actions(s) == ["s3:ListBucket"]]
        outputs_list = next(s for s in lists if "outputs" in flat(s["Resource"]))
        assert outputs_list["Condition"] == {"StringLike": {"s3:prefix": ["tenants/*"]}}
        reads = [s for s in statements if _actions(s) == ["s3:GetObject"]]
        assert [flat(s["Resource"]).split(":s3:::")[1] for s in reads] == [
            f"<import:{synth.config.stack_name}-models-bucket>/*"
        ]

        table = next(s for s in statements if "dynamodb:UpdateItem" in _actions(s))
        assert flat(table["Resource"]).endswith(f":table/<import:{synth.config.stack_name}-tasks-table>")

        publish = next(s for s in statements if _actions(s) == ["sns:Publish"])
        assert "ResultsTopic" in publish["Resource"]["Fn::GetStackOutput"]["OutputName"]


@pytest.mark.slow
def test_workload_role_trusts_pod_identity_and_the_keda_operator_only(synth: Synth) -> None:
    roles = synth.resources(synth.compute, "AWS::IAM::Role")
    keda_role = next(k for k in roles if k.startswith("ClusterKedaOperatorRole"))
    for runtime in synth.config.runtimes:
        prefix = f"Workloads{runtime.name}Role".replace("-", "")
        role = next(v for k, v in roles.items() if k.startswith(prefix))
        statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        principals: list[Any] = []
        for statement in statements:
            assert sorted(_actions(statement)) == ["sts:AssumeRole", "sts:TagSession"]
            for kind, value in statement["Principal"].items():
                principals += [(kind, v) for v in (value if isinstance(value, list) else [value])]
        assert sorted(principals, key=json.dumps) == sorted(
            [("Service", "pods.eks.amazonaws.com"), ("AWS", {"Fn::GetAtt": [keda_role, "Arn"]})],
            key=json.dumps,
        )
    keda_statements = [
        s
        for k, v in synth.resources(synth.compute, "AWS::IAM::Policy").items()
        if v["Properties"]["Roles"] == [{"Ref": keda_role}]
        for s in v["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert {a for s in keda_statements for a in _actions(s)} == {"sts:AssumeRole", "sts:TagSession"}
    assumable = [
        r
        for s in keda_statements
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    workload_roles = {k for k in roles if k.startswith("Workloads") and "OpsRole" not in k}
    assert {r["Fn::GetAtt"][0] for r in assumable} == workload_roles
    assert len(workload_roles) == len(synth.config.runtimes)
