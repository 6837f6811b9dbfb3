"""The SD WebUI dialect's request bodies, from a task's input (pure functions)."""

from __future__ import annotations

import base64
from typing import Any

from easel.contract import GenerationInput, TrainLoraInput, UpscaleInput


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def runtime_body(
    data: GenerationInput,
    *,
    init_images: list[bytes] | None = None,
    lora_style: str = "field",
    lora_names: dict[str, str] | None = None,
    mask: bytes | None = None,
    control_images: list[bytes] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Map a task's input to the SD WebUI request: ``("txt2img"|"img2img", body)``.

    Only fields with a meaning are sent (neutral WebUI fields are left to their defaults), so the body is
    accepted by the Easel runtime and by a stock AUTOMATIC1111 alike. LoRAs travel as a ``loras`` list
    (Easel runtime) or as ``<lora:name:weight>`` prompt tags (stock WebUI), per ``EASEL_AGENT_LORA_STYLE``.
    ``lora_names`` maps a task's LoRA name to the runtime's (a tenant's private ``<tenant>/<name>``).
    """
    names = lora_names or {}
    body: dict[str, Any] = {
        "prompt": data.prompt,
        "negative_prompt": data.negative_prompt,
        "steps": data.steps,
        "width": data.width,
        "height": data.height,
        "cfg_scale": data.cfg_scale,
        "sampler_name": data.sampler_name,
        "seed": data.seed,
        "batch_size": data.batch_size,
    }
    if data.loras:
        if lora_style == "prompt":
            tags = " ".join(f"<lora:{lora.name}:{lora.weight:g}>" for lora in data.loras)
            body["prompt"] = f"{data.prompt} {tags}"
        else:
            body["loras"] = [
                {"name": names.get(lora.name, lora.name), "weight": lora.weight} for lora in data.loras
            ]
    if data.output_format != "png":
        # A1111's own settings (stock WebUI and Easel runtime alike); the agent stores what it asked for.
        body["override_settings"] = {"samples_format": data.output_format, "jpeg_quality": data.jpeg_quality}
    if data.controlnet:
        images = control_images or []
        units = []
        for unit, image in zip(data.controlnet, images, strict=True):
            units.append({**unit.model_dump(mode="json"), "image": _b64(image)})
        # The extension's own format: a stock WebUI with sd-webui-controlnet reads the same units.
        body["alwayson_scripts"] = {"controlnet": {"args": units}}
    if init_images:
        body["init_images"] = [_b64(img) for img in init_images]
        body["denoising_strength"] = data.denoising_strength
        if mask is not None:
            body.update(
                mask=_b64(mask),
                mask_blur=data.mask_blur,
                inpainting_fill=data.inpainting_fill,
                inpaint_full_res=data.inpaint_full_res,
                inpaint_full_res_padding=data.inpaint_full_res_padding,
                inpainting_mask_invert=data.inpainting_mask_invert,
            )
        return "img2img", body
    if data.enable_hr:
        body.update(
            enable_hr=True,
            hr_scale=data.hr_scale,
            hr_resize_x=data.hr_resize_x,
            hr_resize_y=data.hr_resize_y,
            hr_upscaler=data.hr_upscaler,
            hr_second_pass_steps=data.hr_second_pass_steps,
            hr_prompt=data.hr_prompt,
            hr_negative_prompt=data.hr_negative_prompt,
            denoising_strength=data.denoising_strength,
        )
        if data.hr_sampler_name:
            body["hr_sampler_name"] = data.hr_sampler_name
    return "txt2img", body


def upscale_body(data: UpscaleInput, *, image: bytes) -> tuple[str, dict[str, Any]]:
    """A1111's ``POST /sdapi/v1/extra-single-image`` body (scale by, or scale to when a size is given)."""
    body: dict[str, Any] = {
        "image": _b64(image),
        "upscaler_1": data.upscaler,
        "upscaling_crop": data.upscaling_crop,
    }
    if data.upscaling_resize_w is not None and data.upscaling_resize_h is not None:
        body.update(
            resize_mode=1,
            upscaling_resize_w=data.upscaling_resize_w,
            upscaling_resize_h=data.upscaling_resize_h,
        )
    else:
        body.update(resize_mode=0, upscaling_resize=data.upscaling_resize)
    return "extra-single-image", body


def train_body(data: TrainLoraInput, *, images: list[bytes], model: str) -> dict[str, Any]:
    """The runtime's ``POST /easel/v1/train-lora`` body: nothing written into the (read-only) models store,
    the adapter returned as ``weights_b64`` for the agent to upload."""
    return {
        "model": model,
        "images": [base64.b64encode(img).decode("ascii") for img in images],
        "instance_prompt": data.instance_prompt,
        "output_name": data.output_name,
        "steps": data.steps,
        "learning_rate": data.learning_rate,
        "rank": data.rank,
        "resolution": data.resolution,
        "seed": data.seed,
        "save": False,
        "return_weights": True,
    }
