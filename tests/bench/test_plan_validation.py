"""``easel bench plan`` at a tiny size: the real pipeline replays the planner's profile. No timing asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from easel.cli import app

pytestmark = pytest.mark.slow


def test_bench_plan_smoke(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    args = ["bench", "plan", "--hold-ms", "200", "--duration", "8", "--rate", "1", "--burst", "4"]
    args += ["--max-replicas", "2", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["error"] is None
    assert doc["measured_statuses"] == {"succeeded": doc["tasks"]}
    assert doc["tasks"] >= 4  # the burst alone
    for key in ("predicted_throughput", "measured_throughput", "predicted_p95_s", "measured_p95_s"):
        assert math.isfinite(doc[key]) and doc[key] > 0, key
    cal = doc["calibration"]
    assert cal["start_s"] > 0 and cal["service_s"] >= 0.2
    assert 1 <= doc["measured_max_replicas"] <= 2
    assert "p95 latency" in result.output
