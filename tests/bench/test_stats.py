"""The arithmetic every bench reports (fast, no processes)."""

from __future__ import annotations

import math

import pytest

from bench.agent import AgentRun, ProbeEvent, summarize
from bench.stats import median, percentile, ratio, union_length


def test_percentile_interpolates_and_handles_edges() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0], 100) == 2.0
    assert percentile([5.0], 95) == 5.0
    assert math.isnan(percentile([], 50))
    assert median([4.0, 1.0, 3.0]) == 3.0


def test_ratio_of_zero_baseline_is_nan() -> None:
    assert ratio(2.0, 1.0) == 2.0
    assert math.isnan(ratio(1.0, 0.0))


def test_union_length_merges_overlaps_and_clips() -> None:
    assert union_length([(0, 2), (1, 3), (5, 6)], 0, 10) == pytest.approx(4.0)
    assert union_length([(0, 2), (1, 3), (5, 6)], 1.5, 5.5) == pytest.approx(2.0)
    assert union_length([], 0, 1) == 0.0


def test_summarize_window_busy_and_overheads() -> None:
    # Three tasks of T=100 ms; the runtime starts 10 ms after the first receive, idles 5 ms between tasks,
    # and the last delete lands 20 ms after the last generation: window = 10 + 300 + 10 + 20 = 340 ms.
    events = [
        ProbeEvent("ReceiveMessage", 0.000, 0.002, 0),  # an empty receive does not open the window
        ProbeEvent("ReceiveMessage", 1.000, 1.004, 3),
        ProbeEvent("DeleteMessageBatch", 1.300, 1.301, 2),
        ProbeEvent("DeleteMessage", 1.335, 1.340, 1),
    ]
    gens = [(1.010, 1.110), (1.115, 1.215), (1.220, 1.320)]
    run = AgentRun(agent="x", hold_ms=100.0, tasks=3)
    summarize(run, events, gens)
    assert run.completed == 3
    assert run.window_s == pytest.approx(0.340)
    assert run.busy == pytest.approx(0.300 / 0.340)
    assert run.tasks_per_s == pytest.approx(3 / 0.340)
    # cycles: 10 + 105, 105, 100 + 20 (to the last delete) -> overheads 15, 5, 20 ms; they add up to the window
    assert run.overhead_median_ms == pytest.approx(15.0)
    assert run.overhead_mean_ms == pytest.approx((340 - 300) / 3)
    assert run.lead_in_ms == pytest.approx(10.0)
    assert run.tail_ms == pytest.approx(20.0)
    assert run.empty_receives == 1
    assert run.busy_steady == pytest.approx(0.300 / 0.310)
    assert run.runtime_extra_ms == pytest.approx(0.0, abs=1e-6)


def test_overhead_is_idle_time_not_runtime_oversleep() -> None:
    # The runtime takes 104 ms of a 100 ms hold: the 4 ms are the runtime's, not the agent's overhead.
    events = [ProbeEvent("ReceiveMessage", 0.0, 0.001, 2), ProbeEvent("DeleteMessageBatch", 0.3, 0.3, 2)]
    run = AgentRun(agent="x", hold_ms=100.0, tasks=2)
    summarize(run, events, [(0.0, 0.104), (0.106, 0.210)])
    assert run.runtime_extra_ms == pytest.approx(4.0)
    assert run.overhead_median_ms == pytest.approx((2.0 + 90.0) / 2)


def test_summarize_without_deletes_leaves_nan() -> None:
    run = AgentRun(agent="x", hold_ms=100.0, tasks=2)
    summarize(run, [ProbeEvent("ReceiveMessage", 0.0, 0.1, 2)], [(0.1, 0.2)])
    assert run.completed == 0
    assert math.isnan(run.busy)
