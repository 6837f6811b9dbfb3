"""The cost guard and the pre-delete drain against a fake Kubernetes API on loopback (real HTTP), with
CloudWatch recorded by botocore's Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from easel.deploy import DrainTimeout
from easel.deploy import drain as drain_module
from easel.deploy import guard as guard_module
from easel.deploy.drain import NODECLAIMS, NODECLASSES, NODEPOOLS, drain
from easel.deploy.guard import PAUSED_BY, PAUSED_REPLICAS, check
from easel.deploy.kube import Kube, deployment_path, pods_path, scaled_object_path
from tests.deploy.fake_kube import FakeKube

NS, NAME = "easel", "easel-sd15"
LABELS = {"app.kubernetes.io/instance": NAME, "easel.dev/runtime": "sd15"}
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _pod(name: str, *, ready: bool, since: datetime) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": dict(LABELS), "creationTimestamp": since.isoformat()},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": since.isoformat(),
                }
            ]
        },
    }


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as f:
        f.put(deployment_path(NS, NAME), {"spec": {"selector": {"matchLabels": dict(LABELS)}, "replicas": 4}})
        f.put(scaled_object_path(NS, NAME), {"metadata": {"annotations": {}}, "spec": {}})
        yield f


@pytest.fixture
def kube(fake: FakeKube) -> Iterator[Kube]:
    k = Kube(fake.url, fake.token, verify=False)
    yield k
    k.close()


def _annotations(fake: FakeKube) -> dict[str, str]:
    annotations: dict[str, str] = fake.objects[scaled_object_path(NS, NAME)]["metadata"]["annotations"]
    return annotations


# -- cost guard ------------------------------------------------------------------------------------------------
def test_guard_leaves_a_ready_pool_alone(fake: FakeKube, kube: Kube) -> None:
    fake.put(f"{pods_path(NS)}/a", _pod("a", ready=True, since=NOW - timedelta(hours=5)))
    result = check(kube, namespace=NS, deployment=NAME, not_ready_seconds=1800, now=NOW)
    assert (result.pods, result.not_ready, result.paused) == (1, 0, False)
    assert not [r for r in fake.requests if r[0] == "PATCH"]


def test_guard_waits_while_pods_are_within_their_deadline(fake: FakeKube, kube: Kube) -> None:
    fake.put(f"{pods_path(NS)}/a", _pod("a", ready=False, since=NOW - timedelta(seconds=1700)))
    result = check(kube, namespace=NS, deployment=NAME, not_ready_seconds=1800, now=NOW)
    assert result.not_ready == 1 and result.longest_not_ready_seconds == 1700 and not result.paused
    assert PAUSED_REPLICAS not in _annotations(fake)


def test_guard_pauses_a_pool_whose_pods_never_get_ready(fake: FakeKube, kube: Kube) -> None:
    for name in ("a", "b", "c", "d"):  # KEDA scaled to max; none ever got Ready
        fake.put(f"{pods_path(NS)}/{name}", _pod(name, ready=False, since=NOW - timedelta(hours=1)))
    fake.put(f"{pods_path(NS)}/other", {"metadata": {"name": "other", "labels": {"app": "x"}}})
    result = check(kube, namespace=NS, deployment=NAME, not_ready_seconds=1800, now=NOW)
    assert (result.pods, result.not_ready, result.paused_now) == (4, 4, True)
    annotations = _annotations(fake)
    assert annotations[PAUSED_REPLICAS] == "0" and annotations[PAUSED_BY] == "cost-guard"
    assert "3600s" in annotations["easel.dev/paused-reason"]
    # The next run keeps reporting it (the alarm stays in ALARM) without patching again.
    again = check(kube, namespace=NS, deployment=NAME, not_ready_seconds=1800, now=NOW)
    assert again.paused and not again.paused_now
    assert len([r for r in fake.requests if r[0] == "PATCH"]) == 1


def test_guard_main_reports_the_metric_the_alarm_watches(
    fake: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.put(f"{pods_path(NS)}/a", _pod("a", ready=False, since=datetime.now(UTC) - timedelta(hours=2)))
    cloudwatch = boto3.client(
        "cloudwatch", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(cloudwatch) as stub:
        stub.add_response(
            "put_metric_data",
            {},
            {
                "Namespace": "Easel",
                "MetricData": [
                    {
                        "MetricName": "PoolNotReady",
                        "Dimensions": [
                            {"Name": "Release", "Value": NAME},
                            {"Name": "Runtime", "Value": "sd15"},
                        ],
                        "Value": 1.0,
                        "Unit": "Count",
                    }
                ],
            },
        )
        code = guard_module.main(
            ["--namespace", NS, "--deployment", NAME, "--runtime", "sd15", "--not-ready-seconds", "2700"],
            kube_factory=lambda: Kube(fake.url, fake.token, verify=False),
            cloudwatch=cloudwatch,
        )
        stub.assert_no_pending_responses()
    assert code == 0
    assert json.loads(capsys.readouterr().out)["paused_now"] is True


# -- drain -------------------------------------------------------------------------------------------------------
def _pool(fake: FakeKube, nodes: int = 2) -> None:
    for i in range(nodes):
        fake.put(f"{pods_path(NS)}/p{i}", _pod(f"p{i}", ready=True, since=NOW))
        fake.put(
            f"{NODECLAIMS}/{NAME}-{i}",
            {
                "metadata": {
                    "labels": {"karpenter.sh/nodepool": NAME},
                    "finalizers": ["karpenter.sh/termination"],
                }
            },
        )
    fake.put(f"{NODECLAIMS}/other-0", {"metadata": {"labels": {"karpenter.sh/nodepool": "other"}}})
    fake.put(f"{NODEPOOLS}/{NAME}", {"metadata": {"finalizers": ["karpenter.sh/termination"]}})
    fake.put(f"{NODECLASSES}/{NAME}", {"metadata": {"finalizers": ["karpenter.k8s.aws/termination"]}})


def karpenter(after_polls: int) -> Any:
    """A stand-in for Karpenter: once the NodePool is deleting, its NodeClaims go after some list calls,
    then the NodePool's and EC2NodeClass's finalizers (the instance profile is removed) are released."""
    seen = {"polls": 0}

    def hook(fake: FakeKube, method: str, path: str) -> None:
        pool = fake.objects.get(f"{NODEPOOLS}/{NAME}")
        if pool is None or not pool["metadata"].get("deletionTimestamp"):
            return
        if method == "GET" and path == NODECLAIMS:
            seen["polls"] += 1
        if seen["polls"] >= after_polls:
            for p in fake.paths(f"{NODECLAIMS}/{NAME}-"):
                del fake.objects[p]
            for p in (f"{NODEPOOLS}/{NAME}", f"{NODECLASSES}/{NAME}"):
                if fake.objects.get(p, {}).get("metadata", {}).get("deletionTimestamp"):
                    del fake.objects[p]

    return hook


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_drain_stops_scaling_deletes_the_pool_and_waits_for_its_nodes(fake: FakeKube, kube: Kube) -> None:
    _pool(fake)
    fake.hooks.append(karpenter(after_polls=3))
    clock = FakeClock()
    report = drain(
        kube,
        namespace=NS,
        deployment=NAME,
        node_pool=NAME,
        timeout_seconds=600,
        sleep=clock.sleep,
        clock=clock,
    )
    # Three polls see nodes left (Karpenter finishes after the third), the fourth sees none.
    assert report.pods_deleted == 2 and report.polls == 4
    assert _annotations(fake)[PAUSED_REPLICAS] == "0"
    assert fake.objects[deployment_path(NS, NAME)]["spec"]["replicas"] == 0
    assert not fake.paths(f"{NODECLAIMS}/{NAME}-") and f"{NODEPOOLS}/{NAME}" not in fake.objects
    assert f"{NODECLASSES}/{NAME}" not in fake.objects
    assert f"{NODECLAIMS}/other-0" in fake.objects  # another pool's node is not touched
    deletes = [(path.split("?")[0], body) for method, path, body in fake.requests if method == "DELETE"]
    assert [p for p, _ in deletes] == [
        f"{pods_path(NS)}/p0",
        f"{pods_path(NS)}/p1",
        f"{NODEPOOLS}/{NAME}",
        f"{NODECLASSES}/{NAME}",
    ]
    assert deletes[0][1]["gracePeriodSeconds"] == 30
    # Scaling was paused before the pods were deleted, so nothing recreated them.
    methods = [(m, p.split("?")[0]) for m, p, _ in fake.requests]
    assert methods.index(("PATCH", scaled_object_path(NS, NAME))) < methods.index(
        ("DELETE", f"{pods_path(NS)}/p0")
    )


def test_drain_fails_at_its_deadline_naming_what_is_left(fake: FakeKube, kube: Kube) -> None:
    _pool(fake, nodes=1)  # no Karpenter: nothing ever releases the finalizers
    clock = FakeClock()
    with pytest.raises(DrainTimeout) as exc:
        drain(
            kube,
            namespace=NS,
            deployment=NAME,
            node_pool=NAME,
            timeout_seconds=60,
            sleep=clock.sleep,
            clock=clock,
        )
    assert exc.value.remaining == [f"nodeclaim/{NAME}-0", f"nodepool/{NAME}", f"ec2nodeclass/{NAME}"]
    assert clock.now == 60


def test_drain_of_an_already_removed_pool_succeeds(fake: FakeKube, kube: Kube) -> None:
    del fake.objects[deployment_path(NS, NAME)]
    del fake.objects[scaled_object_path(NS, NAME)]
    report = drain(
        kube, namespace=NS, deployment=NAME, node_pool=NAME, timeout_seconds=60, sleep=lambda s: None
    )
    assert report.pods_deleted == 0 and report.polls == 1


def test_drain_main_exits_1_on_timeout(
    fake: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _pool(fake, nodes=1)
    clock = FakeClock()
    monkeypatch.setattr(drain_module.time, "sleep", clock.sleep)
    monkeypatch.setattr(drain_module.time, "monotonic", clock)
    code = drain_module.main(
        ["--namespace", NS, "--deployment", NAME, "--node-pool", NAME, "--timeout-seconds", "30"],
        kube_factory=lambda: Kube(fake.url, fake.token, verify=False),
    )
    assert code == 1
    assert "nodepool/easel-sd15" in json.loads(capsys.readouterr().out)["error"]


def test_kube_client_refuses_a_wrong_token(fake: FakeKube) -> None:
    from easel.deploy import KubeError

    bad = Kube(fake.url, "wrong", verify=False)
    with pytest.raises(KubeError) as exc:
        bad.get(deployment_path(NS, NAME))
    assert exc.value.status == 401 and "Unauthorized" in str(exc.value)
    bad.close()
