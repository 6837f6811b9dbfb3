"""A minimal LoRA fine-tune (DreamBooth-style, UNet attention only) on a loaded model.

The adapter is trained inside the cached UNet under its own adapter name, saved to
``<store>/loras/<output_name>.safetensors`` in the diffusers LoRA format (unless ``save`` is false: the store
is read-only in production) and/or returned as safetensors bytes (``return_weights``: the queue agent uploads
them to the tenant's prefix), and deleted from the UNet again, so the model serves exactly as before.
Latents and the prompt embedding are computed once up front; each step draws noise and a timestep from a
seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from runtime_image.server.images import decode_image
from runtime_image.server.pipelines import LoadedModel
from runtime_image.server.schemas import TrainLoraRequest
from runtime_image.server.store import LORAS_DIR, ModelStore

ADAPTER = "easel_training"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# Fixed noise draws for the before/after loss: the same for both, so the difference is the training.
EVAL_DRAWS = 8

# Called after each step with (step done, total); True stops the run.
TrainHook = Callable[[int, int], bool]


@dataclass(frozen=True)
class TrainJob:
    images: tuple[Image.Image, ...]
    instance_prompt: str
    output_name: str
    steps: int
    learning_rate: float
    rank: int
    resolution: int
    seed: int
    save: bool = True
    return_weights: bool = False


@dataclass(frozen=True)
class TrainResult:
    path: Path | None
    weights: bytes | None
    steps_completed: int
    interrupted: bool
    eval_loss_before: float
    eval_loss_after: float
    seconds: float


def _pixels(img: Image.Image, size: int) -> torch.Tensor:
    square = ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(square, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def train_lora(model: LoadedModel, job: TrainJob, store: ModelStore, on_step: TrainHook) -> TrainResult:
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    start = time.monotonic()
    pipe = model.text2img
    unet, device, dtype = pipe.unet, pipe.device, pipe.unet.dtype
    noise_scheduler = DDPMScheduler.from_config(model.base_scheduler_config)
    gen = torch.Generator("cpu").manual_seed(job.seed)

    with torch.no_grad():
        pixels = torch.stack([_pixels(i, job.resolution) for i in job.images]).to(device, pipe.vae.dtype)
        latents = pipe.vae.encode(pixels).latent_dist.sample(gen) * pipe.vae.config.scaling_factor
        ids = pipe.tokenizer(
            job.instance_prompt,
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        embeds = pipe.text_encoder(ids)[0].to(dtype)

    def loss_on(batch: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        noisy = noise_scheduler.add_noise(batch, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=embeds.expand(batch.shape[0], -1, -1)).sample
        if noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(batch, noise, t)
        else:
            target = noise
        return F.mse_loss(pred.float(), target.float())

    eval_gen = torch.Generator("cpu").manual_seed(job.seed + 1)
    eval_draws = [
        (
            torch.randn(latents.shape, generator=eval_gen).to(device, dtype),
            torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=eval_gen
            ),
        )
        for _ in range(EVAL_DRAWS)
    ]

    def eval_loss() -> float:
        with torch.no_grad():
            return float(np.mean([loss_on(latents, n, t.to(device)).item() for n, t in eval_draws]))

    # Start from the base weights only: any adapter of an earlier request stays switched off.
    pipe.disable_lora()
    before = eval_loss()
    unet.add_adapter(
        LoraConfig(r=job.rank, lora_alpha=job.rank, init_lora_weights="gaussian", target_modules=TARGETS),
        adapter_name=ADAPTER,
    )
    done, stopped, path, weights = 0, False, None, None
    try:
        unet.set_adapter(ADAPTER)
        unet.enable_adapters()
        for p in unet.parameters():
            p.requires_grad_(False)
        for name, p in unet.named_parameters():
            if f".{ADAPTER}." in name:
                p.requires_grad_(True)
        # Adapter weights train in fp32 even when the model runs in half precision.
        cast_training_params(unet, dtype=torch.float32)
        params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=job.learning_rate)
        unet.train()
        with torch.enable_grad():
            for step in range(job.steps):
                i = step % latents.shape[0]
                noise = torch.randn(latents[i : i + 1].shape, generator=gen).to(device, dtype)
                t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,), generator=gen).to(
                    device
                )
                loss = loss_on(latents[i : i + 1], noise, t)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                if on_step(done, job.steps):
                    stopped = True
                    break
        unet.eval()
        after = eval_loss()
        if not stopped:
            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=ADAPTER))
            layers = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in layers.items()}
            if job.save:
                path = store.root / LORAS_DIR / f"{job.output_name}.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                StableDiffusionPipeline.save_lora_weights(
                    str(path.parent), unet_lora_layers=layers, weight_name=path.name
                )
            if job.return_weights:
                weights = lora_bytes(layers)
    finally:
        unet.eval()
        unet.delete_adapters(ADAPTER)
        # enable_adapters() above switched every resident LoRA layer on again; requests expect them off.
        pipe.disable_lora()
    return TrainResult(path, weights, done, stopped, before, after, time.monotonic() - start)


def lora_bytes(unet_layers: dict[str, torch.Tensor]) -> bytes:
    """The same safetensors file ``save_lora_weights`` writes (keys ``unet.<module>``), in memory."""
    from safetensors.torch import save

    return save({f"unet.{k}": v for k, v in unet_layers.items()}, metadata={"format": "pt"})


def training_job(req: TrainLoraRequest) -> TrainJob:
    """Decode the request's images (errors name ``images.<i>``) into a job."""
    return TrainJob(
        images=tuple(decode_image(data, f"images.{i}") for i, data in enumerate(req.images)),
        instance_prompt=req.instance_prompt,
        output_name=req.output_name,
        steps=req.steps,
        learning_rate=req.learning_rate,
        rank=req.rank,
        resolution=req.resolution,
        seed=req.seed,
        save=req.save,
        return_weights=req.return_weights,
    )


def describe(result: TrainResult, output_name: str, *, with_weights: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "output_name": output_name,
        "path": str(result.path) if result.path else None,
        "steps_completed": result.steps_completed,
        "interrupted": result.interrupted,
        "eval_loss_before": round(result.eval_loss_before, 6),
        "eval_loss_after": round(result.eval_loss_after, 6),
        "seconds": round(result.seconds, 3),
    }
    if with_weights:
        # None when interrupted: an unfinished adapter is never handed out.
        data = result.weights
        body["weights_b64"] = base64.b64encode(data).decode("ascii") if data is not None else None
        body["weights_bytes"] = len(data) if data is not None else 0
        body["weights_sha256"] = hashlib.sha256(data).hexdigest() if data is not None else None
    return body
