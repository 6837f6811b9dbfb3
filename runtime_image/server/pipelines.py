"""The diffusion layer: one loaded model serving text-to-image and image-to-image from one set of modules.

A :class:`GenerationJob` is already validated (the http layer did that); this module only runs it. Per image
``i`` of a job the seed is ``seed + i`` (as in the SD WebUI), and each image gets its own CPU generator, so
a given seed gives the same image on any device and in any position of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from runtime_image.server.device import DevicePlan, use_vae_slicing
from runtime_image.server.lora import AdapterSet, LoraUse
from runtime_image.server.samplers import SamplerSpec, make_scheduler
from runtime_image.server.store import ModelStore

# Called after every denoising step with (iteration, step done, steps in this iteration); True stops the run.
StepHook = Callable[[int, int, int], bool]


@dataclass(frozen=True)
class GenerationJob:
    prompt: str
    negative_prompt: str
    steps: int
    cfg_scale: float
    width: int
    height: int
    sampler: SamplerSpec
    seed: int
    batch_size: int = 1
    n_iter: int = 1
    sigma_schedule: str | None = None
    init_image: Image.Image | None = None
    denoising_strength: float = 0.75
    loras: tuple[LoraUse, ...] = ()
    clip_skip: int | None = None
    eta: float | None = None

    @property
    def mode(self) -> str:
        return "img2img" if self.init_image is not None else "txt2img"

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.batch_size * self.n_iter)]


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    interrupted: bool = False
    steps_completed: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class LoadedModel:
    """A cached model: its text-to-image pipeline, an image-to-image view of the same modules, adapters."""

    def __init__(self, name: str, pipe: Any, plan: DevicePlan, adapters: AdapterSet, nbytes: int) -> None:
        from diffusers import StableDiffusionImg2ImgPipeline

        self.name = name
        self.plan = plan
        self.text2img = pipe
        # from_pipe reuses the very same UNet/VAE/text encoder objects: no second copy of the weights.
        self.img2img = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
        self.img2img.set_progress_bar_config(disable=True)
        self.adapters = adapters
        self.nbytes = nbytes
        self.base_scheduler_config = pipe.scheduler.config
        self._placed_on: str = plan.device

    def place(self, device: str) -> None:
        """Move the weights (parking on the host / returning to the GPU); a no-op when already there."""
        if self._placed_on != device:
            self.text2img.to(device)
            self._placed_on = device

    def release(self) -> None:
        self.place("cpu")

    def generate(self, job: GenerationJob, store: ModelStore, on_step: StepHook) -> GenerationResult:
        pipe = self.img2img if job.init_image is not None else self.text2img
        pipe.scheduler = make_scheduler(job.sampler, self.base_scheduler_config, job.sigma_schedule)
        if use_vae_slicing(self.plan, job.batch_size):
            pipe.vae.enable_slicing()
        else:
            pipe.vae.disable_slicing()
        result = GenerationResult(images=[], seeds=job.seeds)
        with self.adapters.applied(pipe, list(job.loras), store, self.name):
            for iteration in range(job.n_iter):
                if iteration and on_step(iteration, 0, job.steps):
                    # Interrupted between two batches: keep what the finished ones made.
                    result.interrupted = True
                    break
                images, stopped, done = self._one_batch(pipe, job, iteration, on_step)
                result.images.extend(images)
                result.steps_completed = done
                if stopped:
                    result.interrupted = True
                    break
        result.seeds = result.seeds[: len(result.images)]
        return result

    def _one_batch(
        self, pipe: Any, job: GenerationJob, iteration: int, on_step: StepHook
    ) -> tuple[list[Image.Image], bool, int]:
        first = iteration * job.batch_size
        generators = [
            torch.Generator("cpu").manual_seed(s) for s in job.seeds[first : first + job.batch_size]
        ]
        state = {"stopped": False, "done": 0}

        def step_end(p: Any, i: int, _t: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
            state["done"] = i + 1
            if on_step(iteration, i + 1, p.num_timesteps):
                # The pipeline skips its remaining steps and decodes the latents it has.
                p._interrupt = True
                state["stopped"] = True
            return {}

        kwargs: dict[str, Any] = {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "num_inference_steps": job.steps,
            "guidance_scale": job.cfg_scale,
            "num_images_per_prompt": job.batch_size,
            "generator": generators,
            "clip_skip": job.clip_skip,
            # eta only reaches schedulers whose step() takes it (DDIM); the others ignore it.
            "eta": job.eta if job.eta is not None else 0.0,
            "callback_on_step_end": step_end,
        }
        if job.init_image is not None:
            kwargs["image"] = job.init_image.resize((job.width, job.height), Image.Resampling.LANCZOS)
            kwargs["strength"] = job.denoising_strength
        else:
            kwargs["width"] = job.width
            kwargs["height"] = job.height
        with torch.inference_mode():
            out = pipe(**kwargs)
        return list(out.images), bool(state["stopped"]), int(state["done"])
