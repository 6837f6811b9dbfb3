"""``easel plan`` end to end: tables, JSON, plots, the sweep's Pareto table, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from easel.cli import app
from tests.conftest import ROOT

PROFILES = ROOT / "docs" / "profiles"
runner = CliRunner()


def test_plan_prints_the_table_and_writes_plots(tmp_path: Path) -> None:
    res = runner.invoke(app, ["plan", "--profile", str(PROFILES / "trace.yaml"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "latency p50 / p95 / p99" in res.output
    assert "USD per 1,000 images" in res.output
    for name in ("trace-timeline.png", "trace-latency-cdf.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_plan_json(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["plan", "--profile", str(PROFILES / "trace.yaml"), "--json", "--no-plots", "--out", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["completed"] == data["tasks"] > 0
    assert data["p50_s"] <= data["p95_s"] <= data["p99_s"]
    assert set(data["cost_per_1000_images"]) == {"spot", "on-demand", "total", "busy_only"}
    assert data["plots"] == []


def test_sweep_prints_a_pareto_table() -> None:
    res = runner.invoke(
        app,
        [
            "plan",
            "--profile",
            str(PROFILES / "trace.yaml"),
            "--sweep",
            "scaling.queue_length=1,4",
            "--sweep",
            "scaling.min_replicas=0,1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Pareto" in res.output and "4/4" in res.output
    assert res.output.count("*") >= 2  # the title's legend and at least one front row


def test_sweep_json_marks_the_front() -> None:
    res = runner.invoke(
        app,
        ["plan", "--profile", str(PROFILES / "trace.yaml"), "--sweep", "scaling.queue_length=1,4", "--json"],
    )
    assert res.exit_code == 0, res.output
    start = res.output.index("[")
    rows = json.loads(res.output[start:])
    assert [r["settings"]["scaling.queue_length"] for r in rows] != []
    assert any(r["pareto"] for r in rows)


def _bad(tmp_path: Path, body: str, *extra: str) -> str:
    (tmp_path / "p.yaml").write_text(f"config: {ROOT / 'config.yaml'}\n" + body)
    out = tmp_path / "plots"
    res = runner.invoke(app, ["plan", "--profile", str(tmp_path / "p.yaml"), "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    assert not out.exists()  # nothing else ran
    return res.output


GOOD = "runtime: sd15\ntraffic: {kind: poisson, rate_per_second: 0.1}\nrequests: [{model: sd15}]\nservice: {sd15: {fixed_seconds: 1}}\n"


def test_negative_rate_is_refused(tmp_path: Path) -> None:
    assert "traffic.rate_per_second" in _bad(tmp_path, GOOD.replace("0.1", "-2"))


def test_unknown_runtime_is_refused(tmp_path: Path) -> None:
    assert "unknown runtime 'sdxl'" in _bad(tmp_path, GOOD.replace("runtime: sd15", "runtime: sdxl"))


def test_empty_trace_is_refused(tmp_path: Path) -> None:
    out = _bad(tmp_path, GOOD.replace("{kind: poisson, rate_per_second: 0.1}", "{kind: trace, times: []}"))
    assert "traffic.times" in out and "empty trace" in out


def test_sweep_over_an_unknown_key_is_refused(tmp_path: Path) -> None:
    out = _bad(tmp_path, GOOD, "--sweep", "scaling.queue_lenght=1,2")
    assert "unknown key 'scaling.queue_lenght'" in out
