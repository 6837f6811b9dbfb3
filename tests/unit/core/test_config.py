from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from easel.config import load_config, parse_config
from easel.contract import parse_task_request
from easel.errors import ConfigError, FieldError
from easel.limits import check_limits, check_model
from easel.naming import Names, output_key
from easel.routing import lane_filter_policy, unroutable_filter_policy
from tests.conftest import EXAMPLE_CONFIG, TWO_RUNTIMES_CONFIG


def base() -> dict[str, Any]:
    return yaml.safe_load(TWO_RUNTIMES_CONFIG.read_text())


def test_shipped_configs_load() -> None:
    assert load_config(EXAMPLE_CONFIG).runtimes[0].name == "sd15"
    cfg = load_config(TWO_RUNTIMES_CONFIG)
    assert [m.name for m in cfg.models_of("community")] == ["dreamshaper", "realvis"]


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (
            lambda c: c["runtimes"][0]["scaling"].update(min_replica=1),
            "runtimes.0.scaling.min_replica",
            "unknown key",
        ),
        (lambda c: c["models"][0].update(runtime="nope"), "models.0.runtime", "unknown runtime 'nope'"),
        (
            lambda c: c["runtimes"][1].update(dynamic_models=False),
            "runtimes.1.dynamic_models",
            "serves 2 models",
        ),
        (lambda c: c.update(stack_name="Bad_Name"), "stack_name", "pattern"),
        (lambda c: c["runtimes"][0].update(gpus=0), "runtimes.0.gpus", "greater than or equal to 1"),
        (lambda c: c["runtimes"][0].update(gpus=2), "runtimes.0.gpus", "2 GPUs per pod is not supported"),
        (lambda c: c["runtimes"][0]["scaling"].update(min_replicas=5), "runtimes.0.scaling", "min_replicas"),
        (
            lambda c: c["runtimes"][0].update(images={"runtime": {"repository": "r", "tag": "latest"}}),
            "runtimes.0.images.runtime",
            "latest",
        ),
        (
            lambda c: c["runtimes"][0].update(batching={"enabled": True, "max_images": 1}),
            "runtimes.0.batching.max_images",
            "greater than or equal to 2",
        ),
        (
            lambda c: c["runtimes"][0].update(
                kind="sdwebui",
                images={
                    "runtime": {"repository": "r", "tag": "1"},
                    "agent": {"repository": "a", "tag": "1"},
                },
                batching={"enabled": True},
            ),
            "runtimes.0.batching.enabled",
            "batching needs kind: diffusers",
        ),
        (
            lambda c: c.setdefault("monitoring", {}).update(
                telemetry={"collector_image": "public.ecr.aws/aws-observability/aws-otel-collector:latest"}
            ),
            "monitoring.telemetry.collector_image",
            "latest",
        ),
        (
            lambda c: c.setdefault("monitoring", {}).update(telemetry={"trace_sampling_ratio": 1.5}),
            "monitoring.telemetry.trace_sampling_ratio",
            "less than or equal to 1",
        ),
        (
            lambda c: c["runtimes"][0].update(drain={"spot_deadline_seconds": 150}),
            "runtimes.0.drain.spot_deadline_seconds",
            "less than or equal to 110",
        ),
        (lambda c: c["tenants"].append({"id": "acme"}), "tenants.2", "duplicate"),
        (lambda c: c.update(tenants=[]), "tenants", "at least 1"),
    ],
)
def test_bad_config_names_key_and_reason(mutate: Any, key: str, reason: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == key
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("capacity", "drain", "timeout", "deadline"),
    [
        (["spot"], {}, 900, 90),  # inside the two-minute notice
        (["on-demand"], {}, 900, 900),  # a started task is never thrown away
        (["spot", "on-demand"], {}, 900, 90),  # SIGTERM does not say which: the shorter
        (["on-demand"], {"on_demand_deadline_seconds": 300}, 900, 300),
        (["spot"], {"spot_deadline_seconds": 100}, 60, 60),  # never past the task timeout
    ],
)
def test_drain_deadline_per_capacity_type(
    capacity: list[str], drain: dict[str, int], timeout: int, deadline: int
) -> None:
    data = base()
    data["runtimes"][0].update(capacity_types=capacity, drain=drain, task_timeout_seconds=timeout)
    runtime = parse_config(data).runtimes[0]
    assert runtime.drain_deadline_seconds == deadline
    assert runtime.drain.receive_visibility_seconds == 60


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtimes: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_naming_is_deterministic() -> None:
    cfg = load_config(TWO_RUNTIMES_CONFIG)
    names = Names.of(cfg, account="123456789012", region="eu-west-1")
    assert names.lane_queue("community", "high") == "easel2-community-high"
    assert names.lane_dlq("community", "normal") == "easel2-community-normal-dlq"
    assert names.outputs_bucket == "easel2-outputs-123456789012-eu-west-1"
    assert output_key("acme", "t1", 0) == "tenants/acme/tasks/t1/0.png"


def test_filter_policies() -> None:
    assert lane_filter_policy("sd15", "high") == {"runtime": ["sd15"], "priority": ["high"]}
    assert lane_filter_policy("sd15", "normal")["priority"] == [{"anything-but": ["high"]}]
    assert unroutable_filter_policy(["b", "a"])["$or"][0] == {"runtime": [{"anything-but": ["a", "b"]}]}


def test_limits_and_model_registry() -> None:
    cfg = load_config(TWO_RUNTIMES_CONFIG)
    req = parse_task_request({"task_type": "text-to-image", "model": "realvis", "input": {"prompt": "x"}})
    assert check_model(req, cfg) == "community"
    check_limits(req, cfg.api.limits)
    too_big = parse_task_request(
        {"task_type": "text-to-image", "model": "realvis", "input": {"prompt": "x", "width": 2048}}
    )
    with pytest.raises(FieldError) as info:
        check_limits(too_big, cfg.api.limits)
    assert info.value.field == "input.width"
    unknown = parse_task_request({"task_type": "text-to-image", "model": "nope", "input": {"prompt": "x"}})
    with pytest.raises(FieldError) as info:
        check_model(unknown, cfg)
    assert info.value.field == "model"


def test_entitlements_name_known_models_and_runtimes() -> None:
    data = base()
    data["tenants"][0]["entitlements"] = {"models": ["sd15", "nope"]}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert (info.value.key, info.value.reason) == ("tenants.0.entitlements.models.1", "unknown model 'nope'")
    data["tenants"][0]["entitlements"] = {"runtimes": ["gone"], "max_priority": "low"}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == "tenants.0.entitlements.runtimes.0"
    data["tenants"][0]["entitlements"] = {"max_active_tasks": 0}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == "tenants.0.entitlements.max_active_tasks"
