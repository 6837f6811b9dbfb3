"""Device plans from faked capabilities (no GPU needed), and applying a plan on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runtime_image.server.device import (
    VAE_SLICING_MIN_BATCH,
    DeviceCapabilities,
    DevicePlan,
    DtypePreference,
    apply_plan,
    plan_for,
    probe_device,
    use_vae_slicing,
)

L4 = DeviceCapabilities(
    kind="cuda",
    name="NVIDIA L4",
    bf16_supported=True,
    compute_capability=(8, 9),
    total_memory_bytes=24 * 2**30,
)
T4 = DeviceCapabilities(
    kind="cuda",
    name="Tesla T4",
    bf16_supported=False,
    compute_capability=(7, 5),
    total_memory_bytes=16 * 2**30,
)
CPU = DeviceCapabilities(kind="cpu")


def test_cuda_defaults_to_fp16_channels_last_sdpa_and_slicing_for_big_batches() -> None:
    plan = plan_for(L4)
    assert (plan.device, plan.dtype, plan.channels_last, plan.attention) == (
        "cuda",
        torch.float16,
        True,
        "sdpa",
    )
    assert plan.vae_slicing_min_batch == VAE_SLICING_MIN_BATCH
    assert not plan.compile_unet
    assert plan.reasons == ()


def test_bf16_when_asked_and_supported_else_fp16_with_a_reason() -> None:
    assert plan_for(L4, dtype=DtypePreference.BF16).dtype == torch.bfloat16
    fallback = plan_for(T4, dtype=DtypePreference.BF16)
    assert fallback.dtype == torch.float16
    assert "Tesla T4" in fallback.reasons[0]
    assert plan_for(T4, dtype=DtypePreference.FP32).dtype == torch.float32


@pytest.mark.parametrize("pref", list(DtypePreference))
def test_cpu_is_always_fp32_without_gpu_tricks(pref: DtypePreference) -> None:
    plan = plan_for(CPU, dtype=pref)
    assert (plan.device, plan.dtype, plan.channels_last, plan.vae_slicing_min_batch) == (
        "cpu",
        torch.float32,
        False,
        None,
    )
    assert bool(plan.reasons) == (pref in (DtypePreference.FP16, DtypePreference.BF16))


def test_compile_flag_is_carried_into_the_plan() -> None:
    assert plan_for(L4, compile_unet=True).compile_unet
    assert plan_for(CPU, compile_unet=True).compile_unet


def test_vae_slicing_threshold() -> None:
    plan = plan_for(L4)
    assert not use_vae_slicing(plan, VAE_SLICING_MIN_BATCH - 1)
    assert use_vae_slicing(plan, VAE_SLICING_MIN_BATCH)
    assert not use_vae_slicing(plan_for(CPU), 16)


def test_probe_on_this_machine_is_consistent_with_torch() -> None:
    caps = probe_device()
    assert caps.kind == ("cuda" if torch.cuda.is_available() else "cpu")


def test_apply_plan_sets_memory_format_and_attention(tiny_store: Path) -> None:
    from diffusers import StableDiffusionPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_store / "a"), local_files_only=True)
    # The CUDA plan's switches, exercised on the CPU.
    plan = DevicePlan(
        device="cpu",
        dtype=torch.float32,
        channels_last=True,
        attention="sdpa",
        vae_slicing_min_batch=4,
        compile_unet=False,
    )
    apply_plan(pipe, plan)
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    assert plan.describe()["dtype"] == "float32"
