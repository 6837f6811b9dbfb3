"""``easel deploy verify`` against recorded AWS responses (botocore Stubber), a fake Kubernetes API and a fake
task API, both real HTTP on loopback: a healthy deployment, and one failing case (or more) per step."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from easel.client import EaselClient
from easel.config import EaselConfig, load_config
from easel.deploy.guard import PAUSED_BY, PAUSED_REPLICAS
from easel.deploy.kube import Kube, deployment_path, pods_path, scaled_object_path
from easel.deploy.verify import ADDONS, CONTROLLERS, Step, Verifier
from tests.conftest import EXAMPLE_CONFIG
from tests.deploy.fake_kube import FakeKube

REGION = "us-west-2"
CREDS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret", "region_name": REGION}
RELEASE, NS = "easel-sd15", "easel"


# -- fakes --------------------------------------------------------------------------------------------------------
class FakeApi:
    """The task API: checks the SigV4 signature header, answers submit and get (succeeding on the 3rd get)."""

    def __init__(self, final: dict[str, Any] | None = None, submit_status: int = 202) -> None:
        self.final = final or {
            "status": "succeeded",
            "output": {"images": ["s3://o/tenants/acme/tasks/t1/0.png"]},
        }
        self.submit_status = submit_status
        self.gets = 0
        self.authorized: list[bool] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                api.authorized.append(self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"))
                if api.submit_status != 202:
                    self._send(api.submit_status, {"error": {"code": "forbidden", "message": "no tenant"}})
                    return
                assert body["task_type"] == "text-to-image" and body["model"] == "sd15"
                self._send(202, {"id": "t1", "status": "queued"})

            def do_GET(self) -> None:
                api.authorized.append(self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"))
                api.gets += 1
                if api.gets < 3:
                    self._send(200, {"id": "t1", "status": "queued" if api.gets == 1 else "processing"})
                else:
                    self._send(200, {"id": "t1", **api.final})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/prod/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeSession:
    """What Verifier needs of a boto3 Session: clients (stubbed ones for the AWS APIs it reads)."""

    def __init__(self) -> None:
        self.clients = {name: boto3.client(name, **CREDS) for name in ("cloudformation", "eks", "sts")}
        self.stubs = {name: Stubber(self.clients[name]) for name in ("cloudformation", "eks")}

    def client(self, name: str, region_name: str | None = None) -> Any:
        return self.clients[name]


def _stack(name: str, status: str, outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": name,
                "CreationTime": datetime(2026, 11, 1, tzinfo=UTC),
                "StackStatus": status,
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def _healthy_kube(kube: FakeKube) -> None:
    kube.put("/version", {"major": "1", "minor": "36+", "gitVersion": "v1.36.2-eks-1"})
    for namespace, name in CONTROLLERS:
        kube.put(deployment_path(namespace, name), {"status": {"availableReplicas": 2}})
    kube.put(
        scaled_object_path(NS, RELEASE),
        {"metadata": {"annotations": {}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    )
    kube.put(
        deployment_path(NS, RELEASE),
        {"spec": {"replicas": 0, "selector": {"matchLabels": {"easel.dev/runtime": "sd15"}}}, "status": {}},
    )


@pytest.fixture
def config() -> EaselConfig:
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(token="*eks*") as fake:
        _healthy_kube(fake)
        yield fake


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


Mutation = Callable[[dict[str, Any], FakeKube, FakeApi], None]


def run(
    config: EaselConfig, kube: FakeKube, api: FakeApi, mutate: Mutation | None = None
) -> tuple[list[Step], FakeSession]:
    """Record the AWS responses of a deployment (``mutate`` breaks one thing) and run the verifier."""
    aws: dict[str, Any] = {
        "core": _stack("easel", "UPDATE_COMPLETE", {"ApiEndpoint": api.url}),
        "compute": _stack("easel-compute", "CREATE_COMPLETE", {"ClusterName": "easel"}),
        "cluster": {
            "cluster": {
                "name": "easel",
                "status": "ACTIVE",
                "endpoint": kube.url,
                "certificateAuthority": {"data": base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()},
            }
        },
        "addons": {
            a: {"addon": {"addonName": a, "clusterName": "easel", "status": "ACTIVE"}} for a in ADDONS
        },
    }
    if mutate is not None:
        mutate(aws, kube, api)
    session = FakeSession()
    cfn, eks = session.stubs["cloudformation"], session.stubs["eks"]
    cfn.add_response("describe_stacks", aws["core"], {"StackName": "easel"})
    if "error" in aws["compute"]:
        cfn.add_client_error("describe_stacks", "ValidationError", aws["compute"]["error"])
    else:
        cfn.add_response("describe_stacks", aws["compute"], {"StackName": "easel-compute"})
    eks.add_response("describe_cluster", aws["cluster"], {"name": "easel"})
    for addon in ADDONS:
        eks.add_response("describe_addon", aws["addons"][addon], {"clusterName": "easel", "addonName": addon})
    verifier = Verifier(
        config,
        session=session,
        region=REGION,
        kube_factory=lambda endpoint, ca, token: Kube(endpoint, token, verify=False),
        api_factory=lambda endpoint: EaselClient(
            endpoint, region=REGION, access_key_id="AKIDEXAMPLE", secret_access_key="secret"
        ),
        task_timeout_seconds=60,
        poll_seconds=0,
        sleep=lambda _: None,
    )
    with cfn, eks:
        steps = list(verifier.run())
    return steps, session


# -- healthy ------------------------------------------------------------------------------------------------------
def test_a_healthy_deployment_passes_every_step(config: EaselConfig, kube: FakeKube, api: FakeApi) -> None:
    steps, session = run(config, kube, api)
    assert [(s.name, s.ok) for s in steps] == [
        (name, True) for name in ("stacks", "cluster", "add-ons", "controllers", "pools", "task")
    ]
    by_name = {s.name: s.saw for s in steps}
    assert "easel-compute CREATE_COMPLETE" in by_name["stacks"]
    assert "Kubernetes 1.36" in by_name["cluster"]
    assert "easel-sd15 scaled to zero" in by_name["pools"]
    assert by_name["task"] == "task t1 succeeded with 1 image(s)"
    # Every API call was SigV4-signed; the Kubernetes calls carried an EKS token (the fake checks its prefix).
    assert api.authorized and all(api.authorized)
    assert all(r[0] == "GET" for r in kube.requests)
    for stub in session.stubs.values():
        stub.assert_no_pending_responses()


def test_running_pods_that_are_ready_pass_the_pools_step(
    config: EaselConfig, kube: FakeKube, api: FakeApi
) -> None:
    kube.objects[deployment_path(NS, RELEASE)].update(spec={"replicas": 2, "selector": {"matchLabels": {}}})
    kube.objects[deployment_path(NS, RELEASE)]["status"] = {"readyReplicas": 2}
    steps, _ = run(config, kube, api)
    assert steps[4].ok and "easel-sd15 2/2 Ready" in steps[4].saw


# -- one failing case (or more) per step ---------------------------------------------------------------------------
def _compute_rolled_back(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    aws["compute"]["Stacks"][0]["StackStatus"] = "UPDATE_ROLLBACK_COMPLETE"
    aws["compute"]["Stacks"][0]["StackStatusReason"] = "Resource WorkloadsRelease failed"


def _compute_missing(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    aws["compute"] = {"error": "Stack with id easel-compute does not exist"}


def _cluster_creating(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    aws["cluster"]["cluster"]["status"] = "CREATING"


def _no_access_entry(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    kube.token = "only-the-admin-role"  # the API server refuses this principal's token


def _addon_degraded(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    aws["addons"]["aws-mountpoint-s3-csi-driver"]["addon"].update(
        status="DEGRADED",
        health={"issues": [{"code": "InsufficientNumberOfReplicas", "message": "0/2 ready"}]},
    )


def _karpenter_down(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    kube.objects[deployment_path("kube-system", "karpenter")]["status"] = {"availableReplicas": 0}


def _paused_by_guard(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    kube.objects[scaled_object_path(NS, RELEASE)]["metadata"]["annotations"] = {
        PAUSED_REPLICAS: "0",
        PAUSED_BY: "cost-guard",
        "easel.dev/paused-reason": "a pod was not Ready for 2900s",
    }


def _pods_stuck(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    kube.objects[deployment_path(NS, RELEASE)].update(
        spec={"replicas": 1, "selector": {"matchLabels": {"easel.dev/runtime": "sd15"}}},
        status={"readyReplicas": 0},
    )
    kube.put(
        f"{pods_path(NS)}/easel-sd15-abc",
        {
            "metadata": {"labels": {"easel.dev/runtime": "sd15"}},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
            },
        },
    )


def _scaledobject_not_ready(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    kube.objects[scaled_object_path(NS, RELEASE)]["status"]["conditions"][0]["status"] = "False"


def _task_failed(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    api.final = {
        "status": "failed",
        "error": {"code": "model_missing", "message": "model sd15 is not in the store"},
    }


def _not_a_tenant(aws: dict[str, Any], kube: FakeKube, api: FakeApi) -> None:
    api.submit_status = 403


@pytest.mark.parametrize(
    ("mutate", "step", "saw", "fix"),
    [
        (
            _compute_rolled_back,
            "stacks",
            "easel-compute is UPDATE_ROLLBACK_COMPLETE",
            "describe-stack-events",
        ),
        (_compute_missing, "stacks", "does not exist", "cdk deploy"),
        (_cluster_creating, "cluster", "is CREATING", "Wait for ACTIVE"),
        (_no_access_entry, "cluster", "HTTP 401", "adminRoleArn"),
        (_addon_degraded, "add-ons", "aws-mountpoint-s3-csi-driver is DEGRADED: 0/2 ready", "describe-addon"),
        (_karpenter_down, "controllers", "kube-system/karpenter: no available replica", "Pod Identity"),
        (_paused_by_guard, "pools", "paused at zero by the cost guard", f"{PAUSED_REPLICAS}-"),
        (_pods_stuck, "pools", "easel-sd15-abc Pending/ContainerCreating", "models mount"),
        (_scaledobject_not_ready, "pools", "ScaledObject Ready=False", "GetQueueAttributes"),
        (_task_failed, "task", "failed: model_missing", "models bucket"),
        (_not_a_tenant, "task", "refused", "tenant"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_a_failing_step_says_what_it_saw_and_what_to_do(
    config: EaselConfig, kube: FakeKube, api: FakeApi, mutate: Mutation, step: str, saw: str, fix: str
) -> None:
    steps, _ = run(config, kube, api, mutate)
    assert all(s.ok for s in steps[:-1]), steps
    last = steps[-1]
    assert (last.name, last.ok) == (step, False)
    assert saw in last.saw and fix in last.fix


def test_the_cli_prints_each_step_and_exits_1_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from easel.cli import app
    from easel.deploy import verify as verify_module

    def fake_run(self: Verifier) -> Iterator[Step]:
        yield Step("stacks", True, "easel UPDATE_COMPLETE")
        yield Step("cluster", False, "cluster easel is CREATING", "Wait for ACTIVE")

    monkeypatch.setattr(verify_module.Verifier, "run", fake_run)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    result = CliRunner().invoke(
        app, ["deploy", "verify", "--config", str(EXAMPLE_CONFIG), "--region", REGION]
    )
    assert result.exit_code == 1, result.output
    assert "ok stacks: easel UPDATE_COMPLETE" in result.output
    assert "FAILED cluster: cluster easel is CREATING" in result.output
    assert "what to do: Wait for ACTIVE" in result.output
