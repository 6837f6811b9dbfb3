"""stable-diffusion-on-eks sample requests through the whole local pipeline: posted unchanged (the init image
pointed at the tenant's S3 prefix) through the signed gateway, answered in the reference's shape, and run to
``succeeded`` by the real agent and runtime with the images at ``output_location``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from easel.client import EaselClient
from infra.local.demo import tiny_png, upload_init_image
from infra.local.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "sd_on_eks"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def test_v1alpha2_samples_run_to_succeeded(stack: LocalStack, acme: EaselClient) -> None:
    assert stack.resources is not None
    bucket = stack.resources.outputs_bucket
    t2i = acme.submit_v1alpha2(sample("v1alpha2/t2i.json"))
    i2i_body = sample("v1alpha2/i2i.json")
    i2i_body["task"]["content"]["init_images"] = [
        upload_init_image(stack.client("s3"), bucket, "acme", tiny_png(512, 512))
    ]
    i2i = acme.submit_v1alpha2(i2i_body)
    for reply, task_id in ((t2i, "test-t2i"), (i2i, "test-i2i")):
        assert set(reply) >= {"id", "runtime", "output_location"}
        assert (reply["id"], reply["runtime"]) == (task_id, "sdruntime")
    done = acme.wait(["test-t2i", "test-i2i"], timeout=600, poll_seconds=0.5)
    for reply in (t2i, i2i):
        task = done[reply["id"]]
        assert task["status"] == "succeeded", task.get("error")
        [image] = task["output"]["images"]
        assert image.startswith(reply["output_location"] + "/")
        key = image.split("/", 3)[3]
        head = stack.client("s3").head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "image/png" and head["ContentLength"] > 0
