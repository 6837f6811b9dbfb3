"""The simulator against cases whose answer is known by hand (no timing: simulated time only)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from easel.plan.profile import Plan
from easel.plan.report import pareto, percentile, summarize
from easel.plan.sim import simulate

FAST_AGENT = {"overhead_seconds": 0.0, "settle_seconds": 0.1, "submit_seconds": 0.0}


def test_one_warm_pod_serves_spaced_tasks_in_service_plus_settle(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan(
        traffic={"kind": "trace", "times": [10.0, 20.0, 30.0]},
        scaling={"min_replicas": 1, "max_replicas": 1},
        agent=FAST_AGENT,
    )
    result = simulate(plan)
    assert [round(t.done - t.submit, 6) for t in result.tasks if t.done] == [1.1, 1.1, 1.1]
    assert len(result.nodes) == 1  # the warm node, nothing launched


def test_a_backlog_on_one_pod_drains_at_the_service_rate(make_plan: Callable[..., Plan]) -> None:
    overlap = make_plan(
        traffic={"kind": "trace", "times": [0.0] * 10},
        scaling={"min_replicas": 1, "max_replicas": 1},
        agent={**FAST_AGENT, "overhead_seconds": 0.05},
    )
    done = max(t.done or 0 for t in simulate(overlap).tasks)
    assert done == pytest.approx(10 * 1.05 + 0.1)  # settle overlaps the next task
    serial = overlap.with_overrides({"agent.overlap": False, "agent.prefetch": 0})
    done = max(t.done or 0 for t in simulate(serial).tasks)
    assert done == pytest.approx(10 * (1.05 + 0.1))  # settle in series


def test_scale_from_zero_waits_for_poll_node_image_and_model(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan(
        traffic={"kind": "trace", "times": [1.0]},
        agent=FAST_AGENT,
        capacity={"launch_seconds": 100, "spot": False},
        pod={"image_pull_seconds": 40, "model_load_seconds": 20},
    )
    task = simulate(plan).tasks[0]
    # KEDA polls every 15 s (config.yaml): active at t=15 -> node 100 s -> pull 40 + load 20 -> 1 s + 0.1 s.
    assert task.done == pytest.approx(15 + 100 + 40 + 20 + 1.0 + 0.1)


def test_cost_of_one_on_demand_node_for_the_window(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan(
        duration_seconds=3600,
        traffic={"kind": "trace", "times": [100.0]},
        scaling={"min_replicas": 1, "max_replicas": 1},
        capacity={"spot": False},
        agent=FAST_AGENT,
    )
    s = summarize(simulate(plan))
    assert s.cost_usd["on-demand"] == pytest.approx(plan.instance.on_demand_hour_usd, rel=1e-6)
    assert s.cost_usd["spot"] == 0
    assert s.node_hours["busy"] == pytest.approx(1.0 / 3600, abs=1e-6)
    assert s.node_hours["total"] == pytest.approx(1.0)
    assert s.cost_per_1000_images["total"] == pytest.approx(plan.instance.on_demand_hour_usd * 1000)


def test_scaling_follows_ceil_of_messages_over_queue_length(make_plan: Callable[..., Plan]) -> None:
    # 40 messages at once, queue_length 10, max 8: the HPA settles on ceil(40 / 10) = 4 pods.
    plan = make_plan(
        traffic={"kind": "trace", "times": [0.0] * 40},
        service={"sd15": {"fixed_seconds": 60.0}},
        scaling={"min_replicas": 1, "max_replicas": 8, "queue_length": 10},
        agent=FAST_AGENT,
    )
    result = simulate(plan)
    assert max(s.replicas for s in result.samples) == 4
    assert all(t.done is not None for t in result.tasks)


def test_no_task_is_lost_under_spot_interruptions_and_scale_in(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan(
        duration_seconds=3600,
        traffic={"kind": "bursts", "rate_per_second": 0.05, "burst_size": 60, "burst_every_seconds": 900},
        service={"sd15": {"fixed_seconds": 20.0}},
        scaling={"max_replicas": 6, "cooldown_seconds": 60, "scale_in_stabilization_seconds": 30},
        capacity={"interruptions_per_hour": 3.0, "consolidate_after_seconds": 30},
    )
    result = simulate(plan)
    s = summarize(result)
    assert s.interruptions > 0
    assert s.returned_messages > 0
    assert s.completed == s.tasks
    assert s.images == s.tasks


def test_spot_fallback_launches_on_demand(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan(capacity={"spot_availability": 0.0})
    s = summarize(simulate(plan))
    assert s.node_hours_by_capacity["spot"] == 0
    assert s.node_hours_by_capacity["on-demand"] > 0


def test_same_seed_same_result(make_plan: Callable[..., Plan]) -> None:
    a, b = summarize(simulate(make_plan())), summarize(simulate(make_plan()))
    assert a == b
    c = summarize(simulate(make_plan(seed=4)))
    assert c.tasks != a.tasks or c.p95_s != a.p95_s


def test_diurnal_traffic_follows_its_rate(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan(
        duration_seconds=86400,
        traffic={"kind": "diurnal", "rate_per_second": 0.1, "amplitude": 0.9, "peak_at_seconds": 43200},
        service={"sd15": {"fixed_seconds": 0.5}},
    )
    tasks = simulate(plan).tasks
    assert len(tasks) == pytest.approx(8640, rel=0.05)
    noon = sum(1 for t in tasks if 39600 <= t.submit < 46800)
    midnight = sum(1 for t in tasks if t.submit < 3600 or t.submit >= 82800)
    assert noon > 5 * midnight


def test_pareto_front() -> None:
    assert pareto([(1.0, 10.0), (2.0, 5.0), (2.0, 12.0), (3.0, 5.0), (0.5, float("nan"))]) == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0
