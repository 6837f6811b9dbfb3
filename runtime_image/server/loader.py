"""Load a model of the store into a Stable Diffusion pipeline placed on the planned device. No hub access."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from runtime_image.server.arch import Arch
from runtime_image.server.device import DevicePlan, apply_plan
from runtime_image.server.errors import ModelLoadError
from runtime_image.server.store import FileEntry, ModelEntry, ModelFormat, ModelStore

if TYPE_CHECKING:
    from diffusers import ControlNetModel

# The class each architecture loads as; the other modes are views of it (see pipelines.py).
PIPELINE_CLASS: dict[Arch, str] = {
    Arch.SD15: "StableDiffusionPipeline",
    Arch.SD15_INPAINT: "StableDiffusionInpaintPipeline",
    Arch.SDXL: "StableDiffusionXLPipeline",
    Arch.SDXL_INPAINT: "StableDiffusionXLInpaintPipeline",
    Arch.SDXL_REFINER: "StableDiffusionXLImg2ImgPipeline",
}
# The diffusers variant of half-precision weights (``unet/diffusion_pytorch_model.fp16.safetensors``), as the
# SDXL release and most hub repositories ship them beside (or instead of) the float32 files.
HALF_VARIANT = "fp16"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _is_half_variant(name: str) -> bool:
    # model.fp16.safetensors, diffusion_pytorch_model.fp16-00001-of-00002.safetensors (sharded)
    return f".{HALF_VARIANT}." in name or f".{HALF_VARIANT}-" in name


def choose_variant(folder: Path, dtype: torch.dtype) -> str | None:
    """Which weight files of a diffusers folder to read: the fp16 variant when every weighted component has
    it and either the plan computes in half precision (the bytes load as they are: half of what the float32
    files hold, no conversion) or there are no other files (a folder of the fp16 variant only); else the
    default files (``None``)."""
    parts = [
        [f.name for f in d.iterdir() if f.suffix in _WEIGHT_SUFFIXES]
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".")
    ]
    parts = [names for names in parts if names]
    if not parts or not all(any(_is_half_variant(n) for n in names) for names in parts):
        return None
    if dtype in (torch.float16, torch.bfloat16):
        return HALF_VARIANT
    only_half = not any(not _is_half_variant(n) for names in parts for n in names)
    return HALF_VARIANT if only_half else None


def load_pipeline(entry: ModelEntry, plan: DevicePlan, store: ModelStore) -> Any:
    import diffusers

    arch = entry.arch()
    cls = getattr(diffusers, PIPELINE_CLASS[arch])
    common: dict[str, Any] = {"dtype": plan.dtype, "local_files_only": True}
    if arch.family == "sd15":
        # As in the SD WebUI, no safety checker: it costs a CLIP vision model per image; policy is the API's.
        common.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        if entry.format is ModelFormat.DIFFUSERS:
            variant = choose_variant(entry.path, plan.dtype)
            pipe = cls.from_pretrained(str(entry.path), variant=variant, **common)
        else:
            config = store.single_file_config(entry.name)
            if config is None:
                raise ModelLoadError(
                    entry.name,
                    "a single-file checkpoint needs its diffusers configs (model_index.json and the "
                    f"component config.json files) in {store.root}/configs/{entry.name}/ or "
                    f"{store.root}/configs/default/; the runtime never fetches them from the hub",
                )
            pipe = cls.from_single_file(str(entry.path), config=str(config), **common)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(entry.name, f"{type(exc).__name__}: {exc}") from exc
    return apply_plan(pipe, plan)


def load_controlnet(entry: FileEntry, plan: DevicePlan) -> ControlNetModel:
    from diffusers import ControlNetModel

    try:
        model = ControlNetModel.from_pretrained(
            str(entry.path), torch_dtype=plan.dtype, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(entry.name, f"{type(exc).__name__}: {exc}") from exc
    model.to(plan.device)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def module_nbytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def pipeline_nbytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch modules."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in component.parameters())
            total += sum(t.numel() * t.element_size() for t in component.buffers())
    return total
