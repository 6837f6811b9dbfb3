"""/v1 contract additions: output formats, inpainting, hires fix, ControlNet units and the upscale task type."""

from __future__ import annotations

from typing import Any

import pytest

from easel.config import Limits
from easel.contract import TaskType, UpscaleInput, parse_task_request
from easel.contract.tasks import CONTROLNET_MODULES, GenerationInput
from easel.errors import FieldError
from easel.limits import check_limits

IMG = "s3://easel-outputs/tenants/acme/in/a.png"
T2I: dict[str, Any] = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog"}}
I2I: dict[str, Any] = {
    "task_type": "image-to-image",
    "model": "sd15",
    "input": {"prompt": "a dog", "init_images": [IMG]},
}
UNIT: dict[str, Any] = {"model": "cn-canny", "image": IMG, "module": "canny"}


def _with(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**base, "input": {**base["input"], **fields}}


def test_new_fields_default_to_a1111_api_defaults() -> None:
    inp = parse_task_request(T2I).input
    assert isinstance(inp, GenerationInput)
    assert (inp.output_format, inp.jpeg_quality, inp.mask, inp.mask_blur, inp.inpainting_fill) == (
        "png",
        80,
        None,
        4,
        0,
    )
    assert (inp.inpaint_full_res, inp.inpaint_full_res_padding, inp.inpainting_mask_invert) == (True, 0, 0)
    assert (inp.enable_hr, inp.hr_scale, inp.hr_upscaler, inp.hr_second_pass_steps) == (
        False,
        2.0,
        "Latent",
        0,
    )
    assert inp.controlnet == [] and inp.hires_size() is None


def test_every_feature_parses() -> None:
    hires = parse_task_request(
        _with(T2I, enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", output_format="webp")
    )
    assert hires.input.hires_size() == (768, 768)  # type: ignore[union-attr]
    masked = parse_task_request(_with(I2I, mask=IMG, mask_blur=0, inpainting_fill=1, controlnet=[UNIT, UNIT]))
    assert len(masked.input.controlnet) == 2  # type: ignore[union-attr]
    up = parse_task_request(
        {"task_type": "upscale", "model": "sd15", "input": {"image": IMG, "upscaler": "4x-UltraSharp"}}
    )
    assert isinstance(up.input, UpscaleInput) and up.task_type is TaskType.UPSCALE
    assert (up.input.upscaling_resize, up.input.output_format) == (2.0, "png")


def test_contract_modules_match_the_runtime() -> None:
    from runtime_image.server.controlnet import PREPROCESSORS

    assert set(CONTROLNET_MODULES) == set(PREPROCESSORS)


UP: dict[str, Any] = {"task_type": "upscale", "model": "sd15", "input": {"image": IMG}}
MALFORMED = [
    (_with(T2I, output_format="gif"), "input.output_format"),
    (_with(T2I, jpeg_quality=0), "input.jpeg_quality"),
    (_with(T2I, jpeg_quality=101), "input.jpeg_quality"),
    (_with(T2I, mask=IMG), "input.mask"),
    (_with(I2I, mask=""), "input.mask"),
    (_with(I2I, mask=IMG, mask_blur=-1), "input.mask_blur"),
    (_with(I2I, mask=IMG, inpainting_fill=4), "input.inpainting_fill"),
    (_with(I2I, mask=IMG, inpainting_mask_invert=2), "input.inpainting_mask_invert"),
    (_with(I2I, mask=IMG, inpaint_full_res_padding=1000), "input.inpaint_full_res_padding"),
    (_with(I2I, enable_hr=True), "input.enable_hr"),
    (_with(T2I, enable_hr=True, hr_scale=0), "input.hr_scale"),
    (_with(T2I, enable_hr=True, hr_scale=10), "input.hr_scale"),
    (_with(T2I, enable_hr=True, hr_resize_x=100), "input.hr_resize_x"),
    (_with(T2I, enable_hr=True, hr_upscaler="../x"), "input.hr_upscaler"),
    (_with(T2I, enable_hr=True, hr_sampler_name="Euler z"), "input.hr_sampler_name"),
    (_with(T2I, enable_hr=True, hr_second_pass_steps=-1), "input.hr_second_pass_steps"),
    (_with(T2I, controlnet=[{**UNIT, "module": "depth_midas"}]), "input.controlnet.0.module"),
    (_with(T2I, controlnet=[{**UNIT, "module": "zigzag"}]), "input.controlnet.0.module"),
    (_with(T2I, controlnet=[{**UNIT, "model": "../cn"}]), "input.controlnet.0.model"),
    (_with(T2I, controlnet=[{**UNIT, "weight": 3}]), "input.controlnet.0.weight"),
    (_with(T2I, controlnet=[{**UNIT, "guidance_start": 0.9, "guidance_end": 0.1}]), "input.controlnet.0"),
    (
        _with(T2I, controlnet=[{**UNIT, "control_mode": "My prompt is more important"}]),
        "input.controlnet.0.control_mode",
    ),
    (_with(T2I, controlnet=[{**UNIT, "image": None}]), "input.controlnet.0.image"),
    (_with(T2I, controlnet=[{**UNIT, "colour": "red"}]), "input.controlnet.0.colour"),
    (_with(T2I, controlnet=[UNIT] * 5), "input.controlnet"),
    (_with(UP, upscaler="Latent"), "input.upscaler"),
    (_with(UP, upscaling_resize=0), "input.upscaling_resize"),
    (_with(UP, upscaling_resize=9), "input.upscaling_resize"),
    (_with(UP, upscaling_resize_w=512), "input"),
    (_with(UP, prompt="a dog"), "input.prompt"),
    ({"task_type": "upscale", "model": "sd15", "input": {}}, "input.image"),
]


@pytest.mark.parametrize(("body", "field"), MALFORMED, ids=[f"{i}-{f}" for i, (_, f) in enumerate(MALFORMED)])
def test_malformed_inputs_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as err:
        parse_task_request(body)
    assert err.value.field == field, err.value


def test_hires_final_size_obeys_the_configured_limits() -> None:
    limits = Limits(max_width=1024, max_height=1024)
    check_limits(parse_task_request(_with(T2I, enable_hr=True, hr_scale=2)), limits)
    with pytest.raises(FieldError) as err:
        check_limits(parse_task_request(_with(T2I, enable_hr=True, hr_scale=2.5)), limits)
    assert err.value.field == "input.hr_scale"
    with pytest.raises(FieldError) as err:
        check_limits(parse_task_request(_with(T2I, enable_hr=True, hr_resize_x=1536)), limits)
    assert err.value.field == "input.hr_resize_x"
