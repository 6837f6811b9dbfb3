"""The task contract: parsing, field-named errors, fingerprints, queue messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from easel.contract import (
    Lane,
    Priority,
    QueueMessage,
    Task,
    TaskStatus,
    TaskType,
    lane_for,
    parse_queue_message,
    parse_task_request,
    request_fingerprint,
    result_attributes,
    routing_attributes,
)
from easel.errors import FieldError

BASE = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog"}}


def with_(**changes: object) -> dict[str, object]:
    body = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if key.startswith("input__"):
            body["input"][key.removeprefix("input__")] = value
        else:
            body[key] = value
    return body


def test_defaults_follow_sd_webui_names() -> None:
    req = parse_task_request(BASE)
    assert req.priority is Priority.NORMAL
    assert req.input.steps == 20 and req.input.width == 512 and req.input.sampler_name == "Euler a"
    assert req.input.seed == -1 and req.input.batch_size == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_(input__steps=0), "input.steps"),
        (with_(input__steps="many"), "input.steps"),
        (with_(input__width=500), "input.width"),
        (with_(input__height=32), "input.height"),
        (with_(input__sampler_name="Warp 9"), "input.sampler_name"),
        (with_(input__prompt="   "), "input.prompt"),
        (with_(input__seed=-2), "input.seed"),
        (with_(input__cfg_scale=31), "input.cfg_scale"),
        (with_(input__denoising_strength=1.5), "input.denoising_strength"),
        (with_(input__loras=[{"name": "../etc/passwd"}]), "input.loras.0.name"),
        (with_(input__init_images=["s3://bucket/a.png"]), "input.init_images"),
        (with_(input__enable_hr="sometimes"), "input.enable_hr"),
        (with_(task_type="paint"), "task_type"),
        (with_(priority="urgent"), "priority"),
        (with_(id="has space"), "id"),
        (with_(model=""), "model"),
        (with_(webhook="http://example.com/hook"), "webhook"),
        (with_(webhook_events_filter=["done"]), "webhook_events_filter.0"),
        (with_(extra=1), "extra"),
        ({"task_type": "text-to-image", "model": "sd15"}, "input"),
        ({"task_type": "image-to-image", "model": "sd15", "input": {"prompt": "x"}}, "input.init_images"),
        ([1, 2], "body"),
    ],
)
def test_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_task_request(body)
    assert info.value.field == field
    assert info.value.reason


def test_missing_prompt_is_named() -> None:
    with pytest.raises(FieldError) as info:
        parse_task_request({"task_type": "text-to-image", "model": "sd15", "input": {}})
    assert info.value.field == "input.prompt"
    assert info.value.reason == "field required"


def test_train_lora_input_is_its_own_model() -> None:
    req = parse_task_request(
        {
            "task_type": "train-lora",
            "model": "sd15",
            "input": {"images": ["s3://b/x.png"], "instance_prompt": "sks dog", "output_name": "my-dog"},
        }
    )
    assert req.input.output_name == "my-dog"  # type: ignore[union-attr]
    with pytest.raises(FieldError) as info:
        parse_task_request({"task_type": "train-lora", "model": "sd15", "input": {"prompt": "x"}})
    assert info.value.field.startswith("input.")


def test_fingerprint_ignores_id_but_not_content() -> None:
    a = parse_task_request(with_(id="one"))
    b = parse_task_request(with_(id="two"))
    c = parse_task_request(with_(id="one", input__steps=21))
    assert request_fingerprint(a) == request_fingerprint(b)
    assert request_fingerprint(a) != request_fingerprint(c)


def test_lanes() -> None:
    assert lane_for("high") is Lane.HIGH
    assert lane_for(Priority.NORMAL) is Lane.NORMAL
    assert lane_for(Priority.LOW) is Lane.NORMAL


def _task(**kw: object) -> Task:
    req = parse_task_request(BASE)
    data: dict[str, object] = {
        "id": "t1",
        "tenant": "acme",
        "status": TaskStatus.QUEUED,
        "task_type": req.task_type,
        "model": "sd15",
        "runtime": "sd15",
        "priority": Priority.HIGH,
        "input": req.input,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    data.update(kw)
    return Task.model_validate(data)


def test_queue_message_round_trip_and_attributes() -> None:
    task = _task()
    msg = QueueMessage.from_task(task, {"traceparent": "00-abc-def-01"})
    back = parse_queue_message(msg.model_dump_json())
    assert back == msg
    assert routing_attributes(back) == {
        "runtime": "sd15",
        "model": "sd15",
        "priority": "high",
        "task_type": "text-to-image",
        "tenant": "acme",
    }
    assert result_attributes(task)["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "body"),
        ("[]", "body"),
        ('{"id": "x"}', "tenant"),
        (
            json.dumps(
                {
                    "id": "x",
                    "tenant": "a",
                    "task_type": "text-to-image",
                    "model": "m",
                    "runtime": "r",
                    "priority": "normal",
                    "created_at": "2026-01-01T00:00:00Z",
                    "input": {"prompt": "p", "steps": -3},
                }
            ),
            "input.steps",
        ),
    ],
)
def test_malformed_queue_messages(body: str, field: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_queue_message(body)
    assert info.value.field == field


def test_task_input_is_typed_from_json() -> None:
    task = _task()
    again = Task.model_validate_json(task.model_dump_json())
    assert again.input == task.input
    assert again.task_type is TaskType.TEXT_TO_IMAGE
