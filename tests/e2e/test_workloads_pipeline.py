"""Each new workload end to end through the signed API, the real agent and the real runtime (tiny models on
CPU), outputs checked in S3: inpainting, hires fix, ControlNet, upscaling and output formats."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from easel.client import EaselClient
from easel.naming import input_prefix
from infra.local.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _upload(stack: LocalStack, name: str, img: Image.Image) -> str:
    assert stack.resources is not None
    bucket = stack.resources.outputs_bucket
    key = f"{input_prefix('acme')}{name}.png"
    stack.client("s3").put_object(Bucket=bucket, Key=key, Body=_png(img), ContentType="image/png")
    return f"s3://{bucket}/{key}"


def _run(acme: EaselClient, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    submitted = [acme.submit(r) for r in requests]
    done = acme.wait([t["id"] for t in submitted], timeout=300, poll_seconds=0.5)
    tasks = [done[t["id"]] for t in submitted]
    for task in tasks:
        assert task["status"] == "succeeded", task.get("error")
    return tasks


def _image(acme: EaselClient, task: dict[str, Any], index: int = 0) -> Image.Image:
    img = Image.open(io.BytesIO(acme.download(task["output"]["urls"][index])))
    img.load()
    return img


def _gen(task_type: str = "text-to-image", **input_: Any) -> dict[str, Any]:
    base = {
        "prompt": "a lighthouse",
        "steps": 3,
        "width": 64,
        "height": 64,
        "seed": 11,
        "sampler_name": "Euler",
    }
    return {"task_type": task_type, "model": "sd15", "input": {**base, **input_}}


@pytest.fixture(scope="module")
def init(stack: LocalStack) -> tuple[str, Image.Image]:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return _upload(stack, "workload-init", img), img


def test_inpainting_end_to_end(stack: LocalStack, acme: EaselClient, init: tuple[str, Image.Image]) -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 40))
    mask_uri = _upload(stack, "workload-mask", mask)
    (task,) = _run(
        acme, _gen("image-to-image", init_images=[init[0]], mask=mask_uri, mask_blur=0, denoising_strength=1)
    )
    out = np.asarray(_image(acme, task).convert("RGB"))
    outside = np.asarray(mask) == 0
    assert (out[outside] == np.asarray(init[1])[outside]).all()
    assert (out[~outside] != np.asarray(init[1])[~outside]).any()


def test_hires_fix_end_to_end(acme: EaselClient) -> None:
    (task,) = _run(acme, _gen(enable_hr=True, hr_scale=2, hr_upscaler="Lanczos", denoising_strength=0.6))
    assert _image(acme, task).size == (128, 128)


def test_controlnet_end_to_end(stack: LocalStack, acme: EaselClient, init: tuple[str, Image.Image]) -> None:
    from runtime_image.server.tiny import make_tiny

    # ControlNets live beside the checkpoints; the runtime lists the store on every request.
    make_tiny(stack.models_dir / "controlnet" / "cn-e2e", "controlnet-sd15")
    unit = {"model": "cn-e2e", "image": init[0], "module": "canny", "weight": 1.0}
    plain, controlled, disabled = _run(
        acme, _gen(), _gen(controlnet=[unit]), _gen(controlnet=[{**unit, "enabled": False}])
    )
    a, b, c = (np.asarray(_image(acme, t)) for t in (plain, controlled, disabled))
    assert (a != b).any()
    assert (a == c).all()


def test_upscale_end_to_end(acme: EaselClient, init: tuple[str, Image.Image]) -> None:
    by, to = _run(
        acme,
        {"task_type": "upscale", "model": "sd15", "input": {"image": init[0], "upscaler": "Lanczos", "upscaling_resize": 2}},
        {"task_type": "upscale", "model": "sd15",
         "input": {"image": init[0], "upscaler": "Nearest", "upscaling_resize_w": 96, "upscaling_resize_h": 80}},
    )  # fmt: skip
    assert _image(acme, by).size == (128, 128)
    assert _image(acme, to).size == (96, 80)


@pytest.mark.parametrize(("fmt", "pil", "ext", "content_type"), [
    ("jpeg", "JPEG", "jpg", "image/jpeg"), ("webp", "WEBP", "webp", "image/webp"), ("png", "PNG", "png", "image/png"),
])  # fmt: skip
def test_output_format_end_to_end(
    stack: LocalStack, acme: EaselClient, fmt: str, pil: str, ext: str, content_type: str
) -> None:
    from runtime_image.server.formats import read_infotext

    (task,) = _run(acme, _gen(output_format=fmt, jpeg_quality=90))
    uri = task["output"]["images"][0]
    assert uri.endswith(f"/0.{ext}")
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    head = stack.client("s3").head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == content_type
    data = acme.download(task["output"]["urls"][0])
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.mode, img.size) == (pil, "RGB", (64, 64))
    text = read_infotext(data)
    assert text is not None and text.startswith("a lighthouse\nSteps: 3") and "Seed: 11" in text
