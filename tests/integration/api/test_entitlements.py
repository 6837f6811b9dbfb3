"""Per-tenant entitlements through the signed local gateway: 403/429 naming the field, nothing enqueued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.credentials import Credentials

from easel.client import sign_request
from infra.local.stack import LocalStack
from tests.conftest import ROOT
from tests.integration.api.helpers import control_plane, drain

pytestmark = pytest.mark.integration

CONFIG = ROOT / "tests" / "configs" / "entitlements.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("local-entitlements")
    with control_plane(CONFIG, work) as running:
        yield running


def _call(stack: LocalStack, tenant: str, method: str, path: str, body: Any = None) -> httpx.Response:
    cred = stack.tenant_credentials(tenant)
    url = stack.endpoint.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    signed = sign_request(
        method,
        url,
        body=data,
        headers=headers,
        credentials=Credentials(cred.access_key_id, cred.secret_access_key),
        region=stack.region,
    )
    return httpx.request(method, url, content=data, headers=signed, timeout=30)


def _req(**over: Any) -> dict[str, Any]:
    return {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog"}, **over}


def _queued(stack: LocalStack) -> dict[str, int]:
    return {name: len(msgs) for name, msgs in drain(stack).items() if msgs}


def _error(resp: httpx.Response) -> dict[str, Any]:
    return dict(resp.json()["error"])


def test_model_runtime_and_priority_outside_entitlements_are_403_nothing_enqueued(fresh: LocalStack) -> None:
    resp = _call(fresh, "acme", "POST", "/v1/tasks", _req(model="realvis"))
    assert resp.status_code == 403
    err = _error(resp)
    assert (err["code"], err["field"]) == ("model_not_entitled", "model")
    assert "realvis" in err["message"] and "sd15" in err["message"]
    resp = _call(fresh, "acme", "POST", "/v1/tasks", _req(priority="high"))
    assert resp.status_code == 403
    err = _error(resp)
    assert (err["code"], err["field"]) == ("priority_not_entitled", "priority")
    assert "'normal'" in err["message"]
    assert _queued(fresh) == {}
    assert _call(fresh, "acme", "GET", "/v1/tasks").json()["tasks"] == []
    # Another tenant without entitlements may do both.
    assert (
        _call(fresh, "globex", "POST", "/v1/tasks", _req(model="realvis", priority="high")).status_code == 202
    )
    assert _queued(fresh) == {"community-high": 1}


def test_tasks_in_flight_over_the_limit_are_429_with_retry_after(fresh: LocalStack) -> None:
    first = _call(fresh, "acme", "POST", "/v1/tasks", _req(id="a1"))
    assert _call(fresh, "acme", "POST", "/v1/tasks", _req(id="a2")).status_code == 202
    assert first.status_code == 202
    refused = _call(fresh, "acme", "POST", "/v1/tasks", _req(id="a3"))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"
    err = _error(refused)
    assert (err["code"], err["field"], err["retry_after_seconds"]) == (
        "too_many_active_tasks",
        "max_active_tasks",
        45,
    )
    assert "limit of max_active_tasks (2)" in err["message"]
    # An idempotent replay of a task it already has is still answered.
    assert _call(fresh, "acme", "POST", "/v1/tasks", _req(id="a1")).status_code == 200
    # The refused task exists nowhere; the other tenant is not limited by acme's usage.
    assert _call(fresh, "acme", "GET", "/v1/tasks/a3").status_code == 404
    assert _queued(fresh) == {"sd15-normal": 2}
    assert _call(fresh, "globex", "POST", "/v1/tasks", _req()).status_code == 202
    # One finishes (here: canceled) -> room for one more.
    assert _call(fresh, "acme", "POST", "/v1/tasks/a1/cancel").status_code == 200
    assert _call(fresh, "acme", "POST", "/v1/tasks", _req(id="a3")).status_code == 202


def test_daily_image_quota_is_429_until_utc_midnight(fresh: LocalStack) -> None:
    def submit(task_id: str, batch: int) -> httpx.Response:
        resp = _call(
            fresh,
            "acme",
            "POST",
            "/v1/tasks",
            _req(id=task_id, input={"prompt": "a dog", "batch_size": batch}),
        )
        if resp.status_code == 202:  # keep max_active_tasks out of the way
            assert _call(fresh, "acme", "POST", f"/v1/tasks/{task_id}/cancel").status_code == 200
        return resp

    assert submit("q1", 3).status_code == 202
    before = datetime.now(UTC)
    refused = submit("q2", 3)
    assert refused.status_code == 429
    err = _error(refused)
    assert (err["code"], err["field"]) == ("daily_quota_exceeded", "daily_images")
    assert "daily_images quota of 5" in err["message"]
    midnight = datetime.combine(before.date(), datetime.min.time(), tzinfo=UTC).timestamp() + 86400
    assert 0 < int(refused.headers["retry-after"]) <= midnight - before.timestamp() + 1
    assert _call(fresh, "acme", "GET", "/v1/tasks/q2").status_code == 404
    assert submit("q3", 2).status_code == 202  # exactly the quota
    assert submit("q4", 1).status_code == 429
    # A replay is not charged twice.
    assert (
        _call(
            fresh, "acme", "POST", "/v1/tasks", _req(id="q3", input={"prompt": "a dog", "batch_size": 2})
        ).status_code
        == 200
    )
    assert _queued(fresh) == {"sd15-normal": 2}
