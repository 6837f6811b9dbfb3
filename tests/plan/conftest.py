"""Profiles for the planner's tests, resolved against the example config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from easel.config import load_config
from easel.plan.profile import Plan, parse_profile, resolve
from tests.conftest import EXAMPLE_CONFIG


def profile_data(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "runtime": "sd15",
        "duration_seconds": 600,
        "seed": 3,
        "traffic": {"kind": "poisson", "rate_per_second": 0.2},
        "requests": [{"model": "sd15", "steps": 20}],
        "service": {"sd15": {"fixed_seconds": 1.0}},
    }
    data.update(over)
    return data


@pytest.fixture
def make_plan() -> Callable[..., Plan]:
    config = load_config(EXAMPLE_CONFIG)

    def make(**over: Any) -> Plan:
        return resolve(parse_profile(profile_data(**over)), config)

    return make
