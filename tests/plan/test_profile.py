"""Profiles resolve against config as deployed; bad input is refused naming the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from easel.plan.errors import PlanError
from easel.plan.profile import Plan, load_plan, parse_sweep
from tests.conftest import ROOT


def test_plan_takes_the_deployed_scaling_and_the_cheapest_instance(make_plan: Callable[..., Plan]) -> None:
    plan = make_plan()
    # config.yaml: queue_length 2, max 4, cooldown 300, polling 15; the chart: stabilization 300.
    assert (plan.scaling.queue_length, plan.scaling.max_replicas, plan.scaling.cooldown_seconds) == (
        2,
        4,
        300,
    )
    assert plan.scaling.scale_in_stabilization_seconds == 300
    assert plan.scaling.scale_on_in_flight is True
    assert plan.instance_type == "g6.xlarge"  # cheapest on-demand of [g6.xlarge, g5.xlarge, g6.2xlarge]
    assert plan.capacity.spot and plan.capacity.on_demand
    assert plan.requests[0].tenant == "acme"  # the config's first tenant


def test_profile_overrides_scaling(make_plan: Callable[..., Plan]) -> None:
    assert make_plan(scaling={"queue_length": 5}).scaling.queue_length == 5


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"traffic": {"kind": "poisson", "rate_per_second": -1}}, "traffic.rate_per_second"),
        ({"traffic": {"kind": "poisson", "rate_per_second": 0}}, "traffic.rate_per_second"),
        ({"runtime": "nope"}, "runtime"),
        ({"traffic": {"kind": "trace", "times": []}}, "traffic.times"),
        ({"traffic": {"kind": "trace", "times": [-1.0]}}, "traffic.times.0"),
        ({"traffic": {"kind": "weekly"}}, "traffic.kind"),
        ({"requests": [{"model": "sdxl"}]}, "requests.0.model"),
        ({"requests": [{"model": "sd15", "tenant": "initech"}]}, "requests.0.tenant"),
        ({"requests": [{"model": "sd15", "steps": 0}]}, "requests.0.steps"),
        ({"service": {}}, "service.sd15"),
        ({"scaling": {"queue_length": 0}}, "scaling.queue_length"),
        ({"scaling": {"min_replicas": 5}}, "scaling.min_replicas"),
        ({"scaling": {"queue_lenght": 2}}, "scaling.queue_lenght"),
        ({"capacity": {"instance_type": "p5.48xlarge"}}, "capacity.instance_type"),
        ({"duration_seconds": -5}, "duration_seconds"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_profiles_name_the_key(make_plan: Callable[..., Plan], over: dict[str, object], key: str) -> None:
    with pytest.raises(PlanError) as info:
        make_plan(**over)
    assert info.value.key == key, str(info.value)


def test_sweep_over_an_unknown_key_names_it(make_plan: Callable[..., Plan]) -> None:
    with pytest.raises(PlanError) as info:
        parse_sweep(["scaling.queue_lenght=1,2"], make_plan())
    assert info.value.key == "sweep"
    assert "scaling.queue_lenght" in info.value.reason


def test_sweep_values_are_validated_before_anything_runs(make_plan: Callable[..., Plan]) -> None:
    with pytest.raises(PlanError) as info:
        parse_sweep(["scaling.queue_length=2,0"], make_plan())
    assert "scaling.queue_length" in info.value.key
    with pytest.raises(PlanError):
        parse_sweep(["scaling.queue_length"], make_plan())
    assert parse_sweep(["scaling.queue_length=1,2", "capacity.spot=true,false"], make_plan()) == [
        ("scaling.queue_length", [1, 2]),
        ("capacity.spot", [True, False]),
    ]


def test_empty_trace_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "trace.txt").write_text("# nothing recorded\n")
    (tmp_path / "p.yaml").write_text(
        f"runtime: sd15\nconfig: {ROOT / 'config.yaml'}\ntraffic: {{kind: trace, file: trace.txt}}\n"
        "requests: [{model: sd15}]\nservice: {sd15: {fixed_seconds: 1}}\n"
    )
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "p.yaml")
    assert info.value.key == "traffic.file"
    assert "empty" in info.value.reason


def test_trace_file_is_read_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "trace.txt").write_text("time\n3.5\n1.0\n")
    (tmp_path / "p.yaml").write_text(
        f"runtime: sd15\nconfig: {ROOT / 'config.yaml'}\ntraffic: {{kind: trace, file: trace.txt}}\n"
        "requests: [{model: sd15}]\nservice: {sd15: {fixed_seconds: 1}}\n"
    )
    assert load_plan(tmp_path / "p.yaml").trace == [1.0, 3.5]


@pytest.mark.parametrize("name", ["steady", "bursts", "diurnal", "trace", "reference", "easel-reference"])
def test_shipped_profiles_load(name: str) -> None:
    plan = load_plan(ROOT / "docs" / "profiles" / f"{name}.yaml")
    assert plan.name == name
