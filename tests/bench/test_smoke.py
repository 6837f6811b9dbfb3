"""Each bench end to end at a tiny size, through the CLI (tables + --json). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from easel.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def _run(args: list[str]) -> None:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_bench_agent_smoke(tmp_path: Path) -> None:
    out = tmp_path / "agent.json"
    work = tmp_path / "work"
    args = ["bench", "agent", "--hold-ms", "20", "--tasks", "3", "--traced", "--workdir", str(work)]
    _run([*args, "--json", str(out)])
    doc = json.loads(out.read_text())
    (entry,) = doc["results"]
    for name in ("easel", "baseline", "easel-traced"):
        run = entry[name]
        assert run["error"] is None
        assert run["completed"] == 3
        assert 0 < run["busy"] <= 1
        assert run["generations"] == 3
    assert entry["easel"]["statuses"] == {"succeeded": 3}
    assert doc["machine"]["cores"] >= 1
    # The traced run really traced: its spans are on disk (one task span per task), and the diff is reported.
    task_spans = [
        line
        for path in (work / "traces").glob("*.jsonl")
        for line in path.read_text().splitlines()
        if json.loads(line)["name"] == "easel.task"
    ]
    assert len(task_spans) == 3
    assert entry["tracing_busy_diff"] == entry["easel"]["busy"] - entry["easel-traced"]["busy"]


def test_bench_agent_batching_smoke(tmp_path: Path) -> None:
    out = tmp_path / "batching.json"
    _run(
        ["bench", "agent", "--batching", "--tasks", "4", "--rounds", "1", "--lone", "1", "--steps", "2",
         "--models-dir", str(tmp_path / "m"), "--json", str(out)]
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert [r["mode"] for r in doc["runs"]] == ["off", "on"]
    assert [r["max_images"] for r in doc["runs"]] == [1, 4]
    for run in doc["runs"]:
        assert run["error"] is None
        assert run["completed"] == 4
        assert run["statuses"] == {"succeeded": 5}  # the backlog and the lone task
        assert len(run["lone_latencies_ms"]) == 1
    assert doc["throughput_ratio"] > 0


def test_bench_api_smoke(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    _run(["bench", "api", "--runs", "1", "--requests", "3", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["cold_import"]["api_median_ms"] > 0
    assert doc["cold_import"]["baseline_median_ms"] > 0
    assert doc["cold_import"]["profile"]["direct"][0]["module"] == "lambdas.api.app"
    assert [lat["count"] for lat in doc["latency"]] == [3, 3, 3]


def test_bench_runtime_smoke(tmp_path: Path) -> None:
    out = tmp_path / "runtime.json"
    _run(
        [
            "bench",
            "runtime",
            "--skip-sd15",
            "--images",
            "4",
            "--models-dir",
            str(tmp_path / "m"),
            "--json",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    assert doc["batch"]["batch1_images_per_s"] > 0
    assert doc["batch"]["batch4_images_per_s"] > 0
    work = doc["workloads"]
    assert work["sdxl_vs_sd15_ratio"] > 0 and work["hires_vs_plain_ratio"] > 0
    assert len(work["sdxl_s"]) == len(work["sd15_s"]) > 0
    tracing = doc["tracing"]
    assert tracing["on_s"] > 0 and tracing["off_s"] > 0
    assert tracing["spans"] > 0  # recorded only while on: the sampler really switched
    (switch,) = doc["switch"]
    assert switch["cache_misses"] == 0
    assert switch["cache_hits"] == len(switch["switches_ms"])
