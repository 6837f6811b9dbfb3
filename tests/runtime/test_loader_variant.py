"""Which weight files of a diffusers folder the loader reads: the fp16 variant (``*.fp16.safetensors``, as the
SDXL release ships it) for a half-precision plan or when it is all there is, else the default files. Real
diffusers on tiny SDXL folders; the variant's weights differ from the default ones, so the loaded values
show which files were read."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime_image.server.device import DeviceCapabilities, DevicePlan, plan_for
from runtime_image.server.loader import choose_variant, load_pipeline
from runtime_image.server.store import ModelStore
from runtime_image.server.tiny import make_tiny_sdxl

CPU_PLAN = plan_for(DeviceCapabilities(kind="cpu"))
# A GPU node's dtype on this CPU: what the loader reads before the host -> device copy.
HALF_PLAN: DevicePlan = dataclasses.replace(CPU_PLAN, dtype=torch.float16)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``both``: float32 default files (seed 0) + an fp16 variant of other weights (seed 1), like the SDXL
    release; ``half-only``: the fp16 variant alone (``--include "*.fp16.safetensors"`` downloads)."""
    from diffusers import StableDiffusionXLPipeline

    root = tmp_path_factory.mktemp("variants")
    both = make_tiny_sdxl(root / "both", seed=0)
    other = make_tiny_sdxl(root / "other", seed=1)
    half: Any = StableDiffusionXLPipeline.from_pretrained(str(other), dtype=torch.float16)
    half.save_pretrained(str(root / "half-only"), variant="fp16")
    for f in (root / "half-only").rglob("*.fp16.safetensors"):
        shutil.copy2(f, both / f.relative_to(root / "half-only"))
    shutil.rmtree(other)
    return {"both": both, "half-only": root / "half-only"}


def _unet_weight(path: Path, variant: str | None) -> torch.Tensor:
    from safetensors import safe_open

    name = "diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"
    with safe_open(str(path / "unet" / name), framework="pt") as f:
        return f.get_tensor("conv_in.weight")


def test_choose_variant(folders: dict[str, Path]) -> None:
    assert choose_variant(folders["both"], torch.float32) is None  # fp32 files exist: no conversion
    assert choose_variant(folders["both"], torch.float16) == "fp16"  # half the bytes, no conversion
    assert choose_variant(folders["both"], torch.bfloat16) == "fp16"
    assert choose_variant(folders["half-only"], torch.float32) == "fp16"
    assert choose_variant(folders["half-only"], torch.float16) == "fp16"


def test_a_folder_without_the_variant_reads_its_default_files(tmp_path: Path) -> None:
    folder = make_tiny_sdxl(tmp_path / "plain")
    assert choose_variant(folder, torch.float16) is None
    # One component without the variant: the default files for all (diffusers does not mix them).
    (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    assert choose_variant(folder, torch.float16) is None


@pytest.mark.parametrize(
    ("name", "plan", "read", "dtype"),
    [
        ("both", CPU_PLAN, None, torch.float32),
        ("both", HALF_PLAN, "fp16", torch.float16),
        ("half-only", CPU_PLAN, "fp16", torch.float32),  # failed to load before: no default files
    ],
)
def test_the_loader_reads_the_chosen_files(
    folders: dict[str, Path], name: str, plan: DevicePlan, read: str | None, dtype: torch.dtype
) -> None:
    store = ModelStore(folders[name].parent)
    pipe = load_pipeline(store.model(name), plan, store)
    loaded = pipe.unet.conv_in.weight
    assert loaded.dtype == dtype
    expected = _unet_weight(folders[name], read)
    assert torch.equal(loaded, expected.to(dtype))
    if name == "both":  # the two sets of files differ, so equality above names the files read
        other = _unet_weight(folders[name], "fp16" if read is None else None)
        assert not torch.equal(loaded, other.to(dtype))
