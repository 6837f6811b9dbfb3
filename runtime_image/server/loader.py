"""Load a model of the store into a Stable Diffusion pipeline placed on the planned device. No hub access."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from runtime_image.server.device import DevicePlan, apply_plan
from runtime_image.server.errors import ModelLoadError
from runtime_image.server.store import ModelEntry, ModelFormat, ModelStore

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

# model_index.json classes this runtime can drive (SD 1.x / 2.x layouts).
SUPPORTED_CLASSES = {"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"}


def load_pipeline(entry: ModelEntry, plan: DevicePlan, store: ModelStore) -> StableDiffusionPipeline:
    from diffusers import StableDiffusionPipeline

    common: dict[str, Any] = {
        "dtype": plan.dtype,
        # As in the SD WebUI, no safety checker: it costs a CLIP vision model per image; policy is the API's.
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
        "local_files_only": True,
    }
    try:
        if entry.format is ModelFormat.DIFFUSERS:
            _check_class(entry)
            pipe = StableDiffusionPipeline.from_pretrained(str(entry.path), **common)
        else:
            config = store.single_file_config(entry.name)
            if config is None:
                raise ModelLoadError(
                    entry.name,
                    "a single-file checkpoint needs its diffusers configs (model_index.json and the "
                    f"component config.json files) in {store.root}/configs/{entry.name}/ or "
                    f"{store.root}/configs/default/; the runtime never fetches them from the hub",
                )
            pipe = StableDiffusionPipeline.from_single_file(str(entry.path), config=str(config), **common)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(entry.name, f"{type(exc).__name__}: {exc}") from exc
    return apply_plan(pipe, plan)


def _check_class(entry: ModelEntry) -> None:
    try:
        index = json.loads((entry.path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(entry.name, f"model_index.json is unreadable: {exc}") from exc
    cls = index.get("_class_name")
    if cls not in SUPPORTED_CLASSES:
        raise ModelLoadError(
            entry.name, f"pipeline class {cls!r} is not supported; use one of {sorted(SUPPORTED_CLASSES)}"
        )


def pipeline_nbytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch modules."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in component.parameters())
            total += sum(t.numel() * t.element_size() for t in component.buffers())
    return total
