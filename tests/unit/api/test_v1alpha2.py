"""stable-diffusion-on-eks v1alpha2 requests normalized to TaskRequest."""

from __future__ import annotations

from typing import Any

import pytest

from easel.config import EaselConfig
from easel.contract import GenerationInput
from easel.errors import FieldError
from lambdas.api.v1alpha2 import normalize


def _body(runtime: str = "sd15", tasktype: str = "text-to-image", **content: Any) -> dict[str, Any]:
    return {
        "task": {
            "metadata": {
                "id": "test-t2i",
                "runtime": runtime,
                "tasktype": tasktype,
                "prefix": "output",
                "context": "",
            },
            "content": {
                "alwayson_scripts": {},
                "prompt": "A dog",
                "steps": 16,
                "width": 512,
                "height": 512,
                **content,
            },
        }
    }


def test_sample_text_to_image_request(two_runtimes_config: EaselConfig) -> None:
    request = normalize(_body(), two_runtimes_config)
    assert (request.id, request.model, str(request.task_type)) == ("test-t2i", "sd15", "text-to-image")
    assert isinstance(request.input, GenerationInput)
    assert (request.input.prompt, request.input.steps) == ("A dog", 16)
    assert request.context is None


def test_image_to_image_with_checkpoint_by_store_path(two_runtimes_config: EaselConfig) -> None:
    body = _body(
        runtime="community",
        tasktype="image-to-image",
        init_images=["s3://bucket-x/tenants/acme/inputs/cat.png"],
        alwayson_scripts={"sd_model_checkpoint": "dreamshaper-8.safetensors"},
    )
    body["task"]["metadata"]["context"] = "user-7"
    request = normalize(body, two_runtimes_config)
    assert request.model == "dreamshaper"
    assert request.context == {"v1alpha2": "user-7"}


def test_dynamic_runtime_needs_a_checkpoint(two_runtimes_config: EaselConfig) -> None:
    with pytest.raises(FieldError) as err:
        normalize(_body(runtime="community"), two_runtimes_config)
    assert err.value.field == "task.content.alwayson_scripts.sd_model_checkpoint"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["task"]["metadata"].update(id="bad id"), "task.metadata.id"),
        (lambda b: b["task"]["metadata"].pop("tasktype"), "task.metadata.tasktype"),
        (lambda b: b["task"]["metadata"].update(extra=1), "task.metadata.extra"),
        (lambda b: b["task"]["content"].update(width=500), "task.content.width"),
        (lambda b: b["task"]["content"].update(restore_faces=True), "task.content.restore_faces"),
        (
            lambda b: b["task"]["content"].update(alwayson_scripts={"controlnet": {}}),
            "task.content.alwayson_scripts.controlnet",
        ),
        (lambda b: b.update(extra=1), "extra"),
        (lambda b: b.pop("task"), "task"),
    ],
)
def test_errors_name_v1alpha2_paths(two_runtimes_config: EaselConfig, mutate: Any, field: str) -> None:
    body = _body()
    mutate(body)
    with pytest.raises(FieldError) as err:
        normalize(body, two_runtimes_config)
    assert err.value.field == field
