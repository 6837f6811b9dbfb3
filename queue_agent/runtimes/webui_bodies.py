"""The SD WebUI dialect's request bodies, from a task's input (pure functions)."""

from __future__ import annotations

import base64
from typing import Any

from easel.contract import GenerationInput, TrainLoraInput


def runtime_body(
    data: GenerationInput,
    *,
    init_images: list[bytes] | None = None,
    lora_style: str = "field",
    lora_names: dict[str, str] | None = None,
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
    if init_images:
        body["init_images"] = [base64.b64encode(img).decode("ascii") for img in init_images]
        body["denoising_strength"] = data.denoising_strength
        return "img2img", body
    return "txt2img", body


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
