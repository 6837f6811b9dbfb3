"""The agent's side of the workloads: request bodies in the SD WebUI dialect and outputs in the asked format."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from easel.contract import GenerationInput, UpscaleInput
from queue_agent.outputs import as_format, suffix
from queue_agent.runtimes.webui_bodies import runtime_body, upscale_body

IMG = "s3://b/tenants/acme/inputs/a.png"


def _png(color: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_inpainting_body_carries_the_mask_and_its_fields() -> None:
    data = GenerationInput(prompt="a", init_images=[IMG], mask=IMG, mask_blur=0, inpainting_fill=1)
    kind, body = runtime_body(data, init_images=[_png()], mask=_png((255, 255, 255)))
    assert kind == "img2img"
    assert body["mask"] == _b64(_png((255, 255, 255)))
    assert (body["mask_blur"], body["inpainting_fill"], body["inpaint_full_res"]) == (0, 1, True)
    assert "override_settings" not in body  # png: the WebUI default, nothing to override


def test_hires_controlnet_and_format_body() -> None:
    unit: dict[str, Any] = {"model": "cn", "image": IMG, "module": "canny", "weight": 0.5}
    data = GenerationInput(
        prompt="a", enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", hr_sampler_name="DDIM",
        controlnet=[unit], output_format="webp", jpeg_quality=90,
    )  # fmt: skip
    kind, body = runtime_body(data, control_images=[_png()])
    assert kind == "txt2img"
    assert (body["enable_hr"], body["hr_scale"], body["hr_upscaler"], body["hr_sampler_name"]) == (
        True,
        1.5,
        "Lanczos",
        "DDIM",
    )
    sent = body["alwayson_scripts"]["controlnet"]["args"]
    assert len(sent) == 1 and sent[0]["image"] == _b64(_png()) and sent[0]["module"] == "canny"
    assert sent[0]["enabled"] is True and sent[0]["weight"] == 0.5
    assert body["override_settings"] == {"samples_format": "webp", "jpeg_quality": 90}


def test_upscale_body_scale_by_and_scale_to() -> None:
    kind, body = upscale_body(UpscaleInput(image=IMG, upscaler="Nearest", upscaling_resize=3), image=_png())
    assert kind == "extra-single-image"
    assert body == {"image": _b64(_png()), "upscaler_1": "Nearest", "upscaling_crop": True, "resize_mode": 0,
                    "upscaling_resize": 3.0}  # fmt: skip
    _, body = upscale_body(
        UpscaleInput(image=IMG, upscaling_resize_w=64, upscaling_resize_h=32), image=_png()
    )
    assert (body["resize_mode"], body["upscaling_resize_w"], body["upscaling_resize_h"]) == (1, 64, 32)


@pytest.mark.parametrize(
    ("fmt", "pil", "ext"), [("png", "PNG", "png"), ("jpeg", "JPEG", "jpg"), ("webp", "WEBP", "webp")]
)
def test_outputs_are_stored_in_the_asked_format(fmt: str, pil: str, ext: str) -> None:
    data = as_format(_png(), fmt, 90)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == pil
    assert suffix(fmt) == ext
    assert as_format(data, fmt) == data  # already in that format: kept byte for byte
