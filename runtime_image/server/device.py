"""Device selection: one code path for every pipeline, with the choices made here from what the device can do.

:func:`probe_device` asks torch what is present; :func:`plan_for` turns those capabilities (a plain dataclass,
so tests can fake a GPU) and the operator's preferences into a :class:`DevicePlan`; :func:`apply_plan` applies
the plan to a loaded pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import torch

DeviceKind = Literal["cuda", "cpu"]

# VAE slicing decodes one image at a time: it caps peak memory for big batches and costs a little speed, so
# it only pays off from this batch size on.
VAE_SLICING_MIN_BATCH = 4
# VAE tiling decodes in overlapping tiles: above about 1536x1536 (hires fix, SDXL upscales) the full-frame
# decode's activations are what runs a 24 GB GPU out of memory; below it tiling only costs time.
VAE_TILING_MIN_PIXELS = 1536 * 1536


class DtypePreference(StrEnum):
    AUTO = "auto"
    FP16 = "fp16"
    BF16 = "bf16"
    FP32 = "fp32"


@dataclass(frozen=True)
class DeviceCapabilities:
    kind: DeviceKind
    name: str = "cpu"
    bf16_supported: bool = False
    compute_capability: tuple[int, int] | None = None
    total_memory_bytes: int | None = None


@dataclass(frozen=True)
class DevicePlan:
    device: DeviceKind
    dtype: torch.dtype
    channels_last: bool
    attention: Literal["sdpa", "default"]
    vae_slicing_min_batch: int | None
    compile_unet: bool
    reasons: tuple[str, ...] = field(default=())
    vae_tiling_min_pixels: int | None = None

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> dict[str, object]:
        return {
            "device": self.device,
            "dtype": self.dtype_name,
            "channels_last": self.channels_last,
            "attention": self.attention,
            "vae_slicing_min_batch": self.vae_slicing_min_batch,
            "compile_unet": self.compile_unet,
            "vae_tiling_min_pixels": self.vae_tiling_min_pixels,
            "reasons": list(self.reasons),
        }


def probe_device() -> DeviceCapabilities:
    """What torch sees on this machine (the first CUDA device, else the CPU)."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return DeviceCapabilities(
            kind="cuda",
            name=props.name,
            bf16_supported=torch.cuda.is_bf16_supported(),
            compute_capability=(props.major, props.minor),
            total_memory_bytes=props.total_memory,
        )
    return DeviceCapabilities(kind="cpu")


def plan_for(
    caps: DeviceCapabilities,
    *,
    dtype: DtypePreference = DtypePreference.AUTO,
    compile_unet: bool = False,
) -> DevicePlan:
    """Choose dtype, memory format, attention and VAE slicing for ``caps``."""
    reasons: list[str] = []
    if caps.kind == "cpu":
        if dtype not in (DtypePreference.AUTO, DtypePreference.FP32):
            # Half precision on CPU is slower than fp32 and several CPU kernels lack fp16 support.
            reasons.append(f"dtype {dtype} requested but the device is a CPU: using float32")
        return DevicePlan(
            device="cpu",
            dtype=torch.float32,
            channels_last=False,
            attention="sdpa",
            vae_slicing_min_batch=None,
            compile_unet=compile_unet,
            reasons=tuple(reasons),
        )

    chosen = torch.float16
    if dtype is DtypePreference.FP32:
        chosen = torch.float32
    elif dtype is DtypePreference.BF16:
        if caps.bf16_supported:
            chosen = torch.bfloat16
        else:
            reasons.append(f"bf16 requested but {caps.name} does not support it: using float16")
    return DevicePlan(
        device="cuda",
        dtype=chosen,
        # Convolutions in NHWC hit the tensor-core kernels directly on CUDA; on CPU it only adds copies.
        channels_last=True,
        attention="sdpa",
        vae_slicing_min_batch=VAE_SLICING_MIN_BATCH,
        compile_unet=compile_unet,
        reasons=tuple(reasons),
        vae_tiling_min_pixels=VAE_TILING_MIN_PIXELS,
    )


def apply_plan(pipe: Any, plan: DevicePlan) -> Any:
    """Move ``pipe`` to the plan's device and dtype and switch on the plan's optimizations."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.to(plan.device, plan.dtype)
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        if plan.attention == "sdpa":
            module.set_attn_processor(AttnProcessor2_0())
        if plan.channels_last:
            module.to(memory_format=torch.channels_last)
    if plan.compile_unet:
        # In-place compile keeps the module's class, so LoRA loading and isinstance checks still work.
        pipe.unet.compile(fullgraph=False, dynamic=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def use_vae_slicing(plan: DevicePlan, batch_size: int) -> bool:
    return plan.vae_slicing_min_batch is not None and batch_size >= plan.vae_slicing_min_batch


def use_vae_tiling(plan: DevicePlan, width: int, height: int) -> bool:
    return plan.vae_tiling_min_pixels is not None and width * height >= plan.vae_tiling_min_pixels
