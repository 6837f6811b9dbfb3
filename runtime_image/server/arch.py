"""Which architecture a checkpoint is, read from its files (never from its name).

A diffusers folder says it in ``model_index.json`` (pipeline class, which text encoders exist) and in the
UNet config (9 input channels: an inpainting UNet). A single-file checkpoint says it in its tensor names and
shapes, read from the safetensors header alone (no weights are loaded): SDXL has ``conditioner.embedders``
(the refiner only one, OpenCLIP), and the first UNet convolution takes 9 channels in an inpainting model.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from runtime_image.server.errors import ModelLoadError


class Arch(StrEnum):
    SD15 = "sd15"  # SD 1.x and 2.x: one text encoder, the same pipelines
    SD15_INPAINT = "sd15-inpaint"
    SDXL = "sdxl"
    SDXL_INPAINT = "sdxl-inpaint"
    SDXL_REFINER = "sdxl-refiner"

    @property
    def family(self) -> str:
        """``sd15`` or ``sdxl``: which pipelines (and which ControlNets) fit."""
        return "sdxl" if self.value.startswith("sdxl") else "sd15"

    @property
    def inpainting(self) -> bool:
        """A 9-channel UNet: every mode runs through the inpainting pipeline (as A1111 does)."""
        return self in (Arch.SD15_INPAINT, Arch.SDXL_INPAINT)


_SDXL_CLASSES = {
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
}
_SD_CLASSES = {"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"}
SUPPORTED_CLASSES = _SDXL_CLASSES | _SD_CLASSES


def _read_json(path: Path, model: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(model, f"{path.name} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(model, f"{path.name} is not a JSON object")
    return data


def _present(index: dict[str, Any], component: str) -> bool:
    value = index.get(component)
    return isinstance(value, list) and len(value) == 2 and value[0] is not None


def detect_folder(folder: Path, model: str) -> Arch:
    index = _read_json(folder / "model_index.json", model)
    cls = index.get("_class_name")
    if cls not in SUPPORTED_CLASSES:
        raise ModelLoadError(
            model, f"pipeline class {cls!r} is not supported; use one of {sorted(SUPPORTED_CLASSES)}"
        )
    unet = _read_json(folder / "unet" / "config.json", model) if (folder / "unet").is_dir() else {}
    nine = unet.get("in_channels") == 9
    if cls in _SDXL_CLASSES:
        if not _present(index, "text_encoder"):
            return Arch.SDXL_REFINER
        return Arch.SDXL_INPAINT if nine else Arch.SDXL
    return Arch.SD15_INPAINT if nine else Arch.SD15


def detect_single_file(path: Path, model: str) -> Arch:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            first = "model.diffusion_model.input_blocks.0.0.weight"
            channels = f.get_slice(first).get_shape()[1] if first in keys else 4
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise ModelLoadError(model, f"not a readable safetensors checkpoint: {type(exc).__name__}") from exc
    if any(k.startswith("conditioner.embedders.") for k in keys):
        # The refiner has OpenCLIP alone, as embedder 0; the base has CLIP-L first, OpenCLIP second.
        if not any(k.startswith("conditioner.embedders.1.") for k in keys):
            return Arch.SDXL_REFINER
        return Arch.SDXL_INPAINT if channels == 9 else Arch.SDXL
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ModelLoadError(model, "no model.diffusion_model.* tensors: not a Stable Diffusion checkpoint")
    return Arch.SD15_INPAINT if channels == 9 else Arch.SD15
