"""Config for deployable images: built by ``cdk deploy`` unless a runtime names prebuilt ones."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from easel.config import parse_config
from easel.errors import ConfigError
from tests.conftest import EXAMPLE_CONFIG

PREBUILT = {
    "runtime": {"repository": "123456789012.dkr.ecr.us-west-2.amazonaws.com/webui", "tag": "1.10.1"},
    "agent": {"repository": "123456789012.dkr.ecr.us-west-2.amazonaws.com/agent", "tag": "0.1.0"},
}


def _example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    return data


def test_images_default_to_being_built_by_cdk_deploy() -> None:
    assert parse_config(_example()).runtimes[0].images is None


def test_prebuilt_images_need_both_and_are_pinned() -> None:
    data = _example()
    data["runtimes"][0]["images"] = PREBUILT
    images = parse_config(data).runtimes[0].images
    assert images is not None and images.runtime.tag == "1.10.1"
    data["runtimes"][0]["images"] = {"runtime": PREBUILT["runtime"]}
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert exc.value.key == "runtimes.0.images.agent"


def test_a_stock_webui_runtime_must_name_its_image() -> None:
    data = _example()
    data["runtimes"][0]["kind"] = "sdwebui"
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert "stock WebUI image" in str(exc.value)
    data["runtimes"][0]["images"] = PREBUILT
    # A stock WebUI cannot train: the model's train-lora is refused, naming the kind.
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert exc.value.key == "models.0.task_types.2" and "kind sdwebui" in str(exc.value)
    data["models"][0]["task_types"] = ["text-to-image", "image-to-image"]
    assert parse_config(data).runtimes[0].kind == "sdwebui"


def test_a_comfyui_runtime_runs_pipelines_only() -> None:
    data = _example()
    data["runtimes"][0]["kind"] = "comfyui"
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert "stock ComfyUI image" in str(exc.value)
    data["runtimes"][0]["images"] = PREBUILT
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert exc.value.key == "models.0.task_types.0" and "pipeline" in str(exc.value)
    data["models"][0]["task_types"] = ["pipeline"]
    data["runtimes"][0]["pipeline"] = {"max_nodes": 50, "refused_node_types": ["LoadImageFromUrl"]}
    runtime = parse_config(data).runtimes[0]
    assert runtime.profile.health_path == "/system_stats"
    assert runtime.startup_allowance_seconds == 1200
