"""A tenant trains a private LoRA and generates with it, through the whole local pipeline: signed API -> SNS ->
SQS -> real queue agent -> real diffusers runtime (tiny model on CPU, a few training steps) -> S3; and another
tenant naming the same LoRA gets the public-name behaviour (no such public LoRA -> failed, ``lora_missing``)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from easel.client import EaselClient
from easel.naming import input_prefix, lora_key
from infra.local.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def subject_png(color: tuple[int, int, int]) -> bytes:
    img = Image.new("RGB", (64, 64), (240, 240, 240))
    img.paste(Image.new("RGB", (32, 32), color), (16, 16))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def t2i(**input_: Any) -> dict[str, Any]:
    return {
        "task_type": "text-to-image",
        "model": "sd15",
        "input": {
            "prompt": "a photo of sks toy",
            "steps": 3,
            "width": 64,
            "height": 64,
            "seed": 99,
            **input_,
        },
    }


def test_train_then_generate_privately(stack: LocalStack, acme: EaselClient, globex: EaselClient) -> None:
    assert stack.resources is not None
    bucket = stack.resources.outputs_bucket
    s3 = stack.client("s3")
    images = []
    for n, color in enumerate(((220, 30, 30), (200, 60, 20))):
        key = f"{input_prefix('acme')}lora-{n}.png"
        s3.put_object(Bucket=bucket, Key=key, Body=subject_png(color), ContentType="image/png")
        images.append(f"s3://{bucket}/{key}")

    trained = acme.submit(
        {
            "task_type": "train-lora",
            "model": "sd15",
            "input": {
                "images": images,
                "instance_prompt": "a photo of sks toy",
                "output_name": "sks-toy",
                "steps": 6,
                "learning_rate": 0.05,
                "rank": 4,
                "resolution": 64,
                "seed": 1,
            },
        }
    )
    task = acme.wait([trained["id"]], timeout=240, poll_seconds=0.5)[trained["id"]]
    assert task["status"] == "succeeded", task.get("error")
    assert task["output"]["lora"] == f"s3://{bucket}/{lora_key('acme', 'sks-toy')}"
    assert task["metrics"]["predict_seconds"] > 0
    head = s3.head_object(Bucket=bucket, Key=lora_key("acme", "sks-toy"))
    assert head["ContentLength"] > 0

    plain = acme.submit(t2i())
    tuned = acme.submit(t2i(loras=[{"name": "sks-toy", "weight": 1.0}]))
    stolen = globex.submit(t2i(loras=[{"name": "sks-toy", "weight": 1.0}]))
    done = acme.wait([plain["id"], tuned["id"]], timeout=240, poll_seconds=0.5)
    for t in done.values():
        assert t["status"] == "succeeded", t.get("error")
    base, with_lora = (acme.download(done[t["id"]]["output"]["urls"][0]) for t in (plain, tuned))
    assert base != with_lora, "the trained LoRA did not change the image"

    # globex cannot reach acme's adapter: its "sks-toy" is a public name the store does not have.
    other = globex.wait([stolen["id"]], timeout=240, poll_seconds=0.5)[stolen["id"]]
    assert other["status"] == "failed"
    assert other["error"]["code"] == "lora_missing"
    assert "sks-toy" in other["error"]["message"]
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="tenants/globex/loras/").get("Contents")
