"""`easel costs`: GPU time per tenant and runtime from the tasks table (moto over HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from typer.testing import CliRunner

from easel.cli.costs_cmds import parse_since
from easel.config import EaselConfig
from easel.contract import TaskStatus, parse_task_request
from easel.costs import tenant_costs
from easel.lifecycle import queued_task
from easel.naming import Names
from easel.store import TaskStore
from infra.local.provision import Resources

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def put(store: TaskStore, tid: str, tenant: str, runtime: str, model: str, *, hours_ago: float,
        status: TaskStatus, gpu: float | None) -> None:  # fmt: skip
    req = parse_task_request({"task_type": "text-to-image", "model": model, "input": {"prompt": "p"}})
    req = req.model_copy(update={"id": tid})
    task = queued_task(req, tenant=tenant, runtime=runtime, created_at=NOW - timedelta(hours=hours_ago))
    store.create(task, tid)
    if status is not TaskStatus.QUEUED:
        store.transition(tenant, tid, TaskStatus.PROCESSING)
        store.transition(tenant, tid, status, updates={"metrics": {"gpu_seconds": gpu}})


def test_costs_per_tenant_and_runtime_within_the_window(
    provisioned: tuple[EaselConfig, Names, Resources], aws_session: boto3.Session
) -> None:
    config, _, resources = provisioned
    store = TaskStore(aws_session.client("dynamodb"), resources.table)
    put(store, "a1", "acme", "sd15", "sd15", hours_ago=1, status=TaskStatus.SUCCEEDED, gpu=1800.0)
    put(store, "a2", "acme", "sd15", "sd15", hours_ago=2, status=TaskStatus.FAILED, gpu=360.0)
    put(store, "a3", "acme", "community", "realvis", hours_ago=3, status=TaskStatus.SUCCEEDED, gpu=36.0)
    put(store, "a4", "acme", "sd15", "sd15", hours_ago=30, status=TaskStatus.SUCCEEDED, gpu=9999.0)
    put(store, "g1", "globex", "sd15", "sd15", hours_ago=1, status=TaskStatus.QUEUED, gpu=None)
    lines = tenant_costs(store, config, since=NOW - timedelta(hours=24), page_size=1)
    got = {(x.tenant, x.runtime): x for x in lines}
    assert set(got) == {("acme", "sd15"), ("acme", "community"), ("globex", "sd15")}
    acme = got[("acme", "sd15")]
    assert (acme.tasks, acme.gpu_seconds, acme.by_status) == (2, 2160.0, {"succeeded": 1, "failed": 1})
    # gpu_hour_usd defaults to 1.0: 2160 s = 0.6 GPU-hours
    assert acme.usd == pytest.approx(0.6)
    assert got[("acme", "community")].gpu_seconds == 36.0
    assert got[("globex", "sd15")].usd == 0.0
    assert lines[0] is acme  # most expensive first


def test_parse_since() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since("2026-11-01T00:00:00Z") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(Exception, match="neither a span"):
        parse_since("yesterday")


def test_cli_reads_the_table(
    provisioned: tuple[EaselConfig, Names, Resources], aws_session: boto3.Session, tmp_path: object
) -> None:
    from easel.cli import app
    from tests.conftest import TWO_RUNTIMES_CONFIG

    _, _, resources = provisioned
    store = TaskStore(aws_session.client("dynamodb"), resources.table)
    recent = (datetime.now(UTC) - NOW).total_seconds() / 3600
    put(store, "c1", "globex", "community", "realvis", hours_ago=-recent + 0.1, status=TaskStatus.SUCCEEDED,
        gpu=7200.0)  # fmt: skip
    # The default (non-local) path builds the table name from naming: same as provisioned.
    result = CliRunner().invoke(
        app, ["costs", "--config", str(TWO_RUNTIMES_CONFIG), "--since", "1d", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"tenant": "globex"' in result.output
    assert '"usd": 2.0' in result.output
