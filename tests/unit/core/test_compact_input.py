"""The compact input (defaults left out) the table and the task queues carry: every task type reads back
equal to what was submitted, and a plain text-to-image item stays small."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from easel.contract import QueueMessage, Task, TaskStatus, parse_queue_message, parse_task_request
from easel.contract.tasks import compact_input, parse_input
from easel.store import item_to_task, task_to_item

IMG = "s3://easel-outputs/tenants/acme/in/a.png"
UNIT: dict[str, Any] = {"model": "cn-canny", "image": IMG, "module": "canny", "weight": 0.5}
WORKFLOW = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}}}
BODIES: list[dict[str, Any]] = [
    {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog"}},
    {
        "task_type": "text-to-image",
        "model": "sd15",
        "input": {
            "prompt": "a dog",
            "steps": 30,
            "cfg_scale": 5.5,
            "seed": 7,
            "enable_hr": True,
            "hr_scale": 1.5,
            "hr_upscaler": "Lanczos",
            "output_format": "webp",
            "controlnet": [UNIT],
            "loras": [{"name": "my-style", "weight": 0.8}],
        },
    },
    {
        "task_type": "image-to-image",
        "model": "sd15",
        "input": {
            "prompt": "a cat",
            "init_images": [IMG],
            "mask": IMG,
            "mask_blur": 0,
            "inpainting_fill": 1,
            "denoising_strength": 0.4,
        },
    },
    {"task_type": "upscale", "model": "sd15", "input": {"image": IMG, "upscaler": "Lanczos"}},
    {
        "task_type": "train-lora",
        "model": "sd15",
        "input": {"images": ["s3://b/x.png"], "instance_prompt": "sks dog", "output_name": "my-dog"},
    },
    {"task_type": "pipeline", "model": "sd15", "input": {"workflow": WORKFLOW}},
]


def _task(body: dict[str, Any]) -> Task:
    req = parse_task_request(body)
    return Task(
        id="t1",
        tenant="acme",
        status=TaskStatus.QUEUED,
        task_type=req.task_type,
        model=req.model,
        runtime="sd15",
        priority=req.priority,
        input=req.input,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize("body", BODIES, ids=[b["task_type"] + str(i) for i, b in enumerate(BODIES)])
def test_stored_and_queued_input_reads_back_equal(body: dict[str, Any]) -> None:
    task = _task(body)
    item = task_to_item(task, fingerprint="f", retention_days=30)
    assert item_to_task(item) == task
    message = QueueMessage.from_task(task, {"traceparent": "00-abc-def-01"})
    assert parse_queue_message(message.body()) == message
    # Only what differs from the defaults travels; everything given with a non-default value does.
    compact = compact_input(task.input)
    full = task.input.model_dump(mode="json")
    at_default = {k for k, v in full.items() if v == _default(task, k)}
    assert set(compact) == set(full) - at_default
    assert parse_input(task.task_type, compact) == task.input
    assert json.loads(message.body())["input"] == compact


def _default(task: Task, field: str) -> Any:
    """The JSON value ``field`` of ``task.input`` has when left out (a marker no value equals if required)."""
    info = type(task.input).model_fields[field]
    if info.is_required():
        return object()
    reset = {**task.input.model_dump(), field: info.get_default(call_default_factory=True)}
    return type(task.input).model_validate(reset).model_dump(mode="json")[field]


def test_a_plain_text_to_image_input_stores_only_its_prompt() -> None:
    task = _task(BODIES[0])
    assert task_to_item(task, fingerprint="f", retention_days=30)["input"] == {
        "M": {"prompt": {"S": "a dog"}}
    }
    assert len(task.input.model_dump()) > 25  # the defaults the API still answers with
