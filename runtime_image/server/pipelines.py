"""The diffusion layer: one loaded model serving every mode from one set of modules.

A :class:`GenerationJob` is already validated (the http layer did that); this module only runs it. Per image
``i`` of a job the seed is ``seed + i`` (as in the SD WebUI), and each image gets its own CPU generator, so
a given seed gives the same image on any device and in any position of a batch.

Modes (text-to-image, image-to-image, inpainting, each with or without ControlNet) are diffusers pipelines
built with ``from_pipe`` over the loaded one: the very same UNet/VAE/text encoder objects, no second copy of
the weights. A model with an inpainting UNet (9 input channels) runs every mode through the inpainting
pipeline, with a full mask when the request has none (what A1111 does for such checkpoints).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from runtime_image.server.arch import Arch
from runtime_image.server.device import DevicePlan, use_vae_slicing, use_vae_tiling
from runtime_image.server.inpaint import InpaintSpec, composite, prepare_inpaint
from runtime_image.server.lora import AdapterSet, LoraUse
from runtime_image.server.samplers import SamplerSpec, make_scheduler
from runtime_image.server.store import ModelStore
from runtime_image.server.upscalers import LATENT_MODES, Upscaler, upscale_image

# Called after every denoising step with (iteration, step done, steps in this iteration); True stops the run.
StepHook = Callable[[int, int, int], bool]

_VIEWS: dict[tuple[str, str, bool], str] = {
    ("sd15", "txt2img", False): "StableDiffusionPipeline",
    ("sd15", "img2img", False): "StableDiffusionImg2ImgPipeline",
    ("sd15", "inpaint", False): "StableDiffusionInpaintPipeline",
    ("sd15", "txt2img", True): "StableDiffusionControlNetPipeline",
    ("sd15", "img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd15", "inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "txt2img", False): "StableDiffusionXLPipeline",
    ("sdxl", "img2img", False): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", "inpaint", False): "StableDiffusionXLInpaintPipeline",
    ("sdxl", "txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}


@dataclass(frozen=True)
class HiresSpec:
    """A1111's hires fix: a second, image-to-image pass at the upscaled size."""

    width: int
    height: int
    upscaler: str
    steps: int
    denoising_strength: float
    prompt: str
    negative_prompt: str
    sampler: SamplerSpec
    sigma_schedule: str | None = None


@dataclass(frozen=True)
class ControlSpec:
    """One enabled ControlNet unit, its control map already preprocessed at the request size."""

    model: str
    image: Image.Image
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    # "ControlNet is more important": diffusers' guess mode (control on the conditional half only).
    guess_mode: bool = False


@dataclass(frozen=True)
class RefinerSpec:
    model: str
    switch_at: float


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
    inpaint: InpaintSpec | None = None
    hires: HiresSpec | None = None
    controls: tuple[ControlSpec, ...] = ()
    refiner: RefinerSpec | None = None

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
    """A cached model: the pipeline it loaded as, views of it for the other modes, its adapters."""

    def __init__(
        self,
        name: str,
        pipe: Any,
        plan: DevicePlan,
        adapters: AdapterSet,
        nbytes: int,
        arch: Arch = Arch.SD15,
    ) -> None:
        self.name = name
        self.plan = plan
        self.arch = arch
        self.base = pipe
        self._views: dict[str, Any] = {}
        self.adapters = adapters
        self.nbytes = nbytes
        self.base_scheduler_config = pipe.scheduler.config
        self._placed_on: str = plan.device

    @property
    def text2img(self) -> Any:
        return self.view("txt2img")

    def view(self, mode: str, controlnet: Any = None) -> Any:
        """The pipeline of ``mode`` over the loaded modules (inpainting models: always the inpaint one)."""
        import diffusers

        if self.arch.inpainting:
            mode = "inpaint"
        cls = getattr(diffusers, _VIEWS[(self.arch.family, mode, controlnet is not None)])
        if controlnet is not None:
            pipe = cls.from_pipe(self.base, controlnet=controlnet)
            pipe.set_progress_bar_config(disable=True)
            return pipe
        if mode not in self._views:
            if isinstance(self.base, cls):
                self._views[mode] = self.base
            else:
                self._views[mode] = cls.from_pipe(self.base)
                self._views[mode].set_progress_bar_config(disable=True)
        return self._views[mode]

    def place(self, device: str) -> None:
        """Move the weights (parking on the host / returning to the GPU); a no-op when already there."""
        if self._placed_on != device:
            self.base.to(device)
            self._placed_on = device

    def release(self) -> None:
        self.place("cpu")

    def generate(
        self,
        job: GenerationJob,
        store: ModelStore,
        on_step: StepHook,
        *,
        controlnets: list[Any] | None = None,
        refiner: LoadedModel | None = None,
        upscaler: Upscaler | None = None,
    ) -> GenerationResult:
        """Run ``job``; ``controlnets`` are the loaded models of ``job.controls`` (same order)."""
        controlnet = _combine(controlnets or [])
        mode = "inpaint" if job.inpaint is not None else job.mode
        pipe = self.view(mode, controlnet)
        vae = self.base.vae
        if use_vae_slicing(self.plan, job.batch_size):
            vae.enable_slicing()
        else:
            vae.disable_slicing()
        final_w, final_h = (job.hires.width, job.hires.height) if job.hires else (job.width, job.height)
        if use_vae_tiling(self.plan, final_w, final_h):
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        result = GenerationResult(images=[], seeds=job.seeds)
        run = _Run(self, job, on_step, controlnet, refiner, upscaler)
        with self.adapters.applied(pipe, list(job.loras), store, self.name):
            for iteration in range(job.n_iter):
                if iteration and on_step(iteration, 0, job.steps):
                    # Interrupted between two batches: keep what the finished ones made.
                    result.interrupted = True
                    break
                images, stopped, done = run.batch(pipe, iteration)
                result.images.extend(images)
                result.steps_completed = done
                if stopped:
                    result.interrupted = True
                    break
        result.seeds = result.seeds[: len(result.images)]
        return result

    def generate_batch(
        self, jobs: list[GenerationJob], store: ModelStore, on_step: StepHook
    ) -> list[GenerationResult]:
        """One text-to-image denoising loop over the images of several jobs of one shape (see
        :mod:`runtime_image.server.batch`): per-image prompts, negative prompts and generators, so image
        ``i`` of job ``k`` gets the very noise it gets when job ``k`` runs alone."""
        first = jobs[0]
        total = sum(j.batch_size for j in jobs)
        merged = dataclasses.replace(first, batch_size=total, seed=0)
        pipe = self.view("txt2img")
        vae = self.base.vae
        if use_vae_slicing(self.plan, total):
            vae.enable_slicing()
        else:
            vae.disable_slicing()
        if use_vae_tiling(self.plan, first.width, first.height):
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        run = _Run(self, merged, on_step, None, None, None)
        with self.adapters.applied(pipe, list(first.loras), store, self.name):
            kwargs = run._common(pipe, 0, sampler=first.sampler, schedule=first.sigma_schedule)
            kwargs.update(
                prompt=[j.prompt for j in jobs for _ in range(j.batch_size)],
                negative_prompt=[j.negative_prompt for j in jobs for _ in range(j.batch_size)],
                num_images_per_prompt=1,
                generator=[torch.Generator("cpu").manual_seed(s) for j in jobs for s in j.seeds],
                num_inference_steps=first.steps,
                width=first.width,
                height=first.height,
            )
            run._sdxl_sizes(kwargs, first.width, first.height)
            if self.arch.inpainting:
                kwargs.update(
                    image=Image.new("RGB", (first.width, first.height), (127, 127, 127)),
                    mask_image=Image.new("L", (first.width, first.height), 255),
                    strength=1.0,
                )
            images = run._call(pipe, kwargs)
        results = []
        at = 0
        for j in jobs:
            mine = images[at : at + j.batch_size]
            at += j.batch_size
            results.append(
                GenerationResult(
                    images=mine, seeds=j.seeds, interrupted=run.stopped, steps_completed=run.done
                )
            )
        return results


def _combine(controlnets: list[Any]) -> Any:
    if not controlnets:
        return None
    if len(controlnets) == 1:
        return controlnets[0]
    from diffusers import MultiControlNetModel

    return MultiControlNetModel(controlnets)


class _Run:
    """One job's passes over one batch: base pass, then the refiner or the hires pass when asked."""

    def __init__(
        self,
        model: LoadedModel,
        job: GenerationJob,
        on_step: StepHook,
        controlnet: Any,
        refiner: LoadedModel | None,
        upscaler: Upscaler | None,
    ) -> None:
        self.model = model
        self.job = job
        self.on_step = on_step
        self.controlnet = controlnet
        self.refiner = refiner
        self.upscaler = upscaler
        self.stopped = False
        self.done = 0

    def generators(self, iteration: int) -> list[torch.Generator]:
        first = iteration * self.job.batch_size
        seeds = self.job.seeds[first : first + self.job.batch_size]
        return [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def _step_end(self, iteration: int) -> Any:
        def step_end(p: Any, i: int, _t: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
            self.done = i + 1
            if self.on_step(iteration, i + 1, p.num_timesteps):
                # The pipeline skips its remaining steps and decodes the latents it has.
                p._interrupt = True
                self.stopped = True
            return {}

        return step_end

    def _common(
        self, pipe: Any, iteration: int, *, sampler: SamplerSpec, schedule: str | None
    ) -> dict[str, Any]:
        job = self.job
        pipe.scheduler = make_scheduler(sampler, self.model.base_scheduler_config, schedule)
        kwargs: dict[str, Any] = {
            "num_images_per_prompt": job.batch_size,
            "guidance_scale": job.cfg_scale,
            "generator": self.generators(iteration),
            "clip_skip": job.clip_skip,
            # eta only reaches schedulers whose step() takes it (DDIM); the others ignore it.
            "eta": job.eta if job.eta is not None else 0.0,
            "callback_on_step_end": self._step_end(iteration),
        }
        return kwargs

    def _control(self, kwargs: dict[str, Any], mode: str, width: int, height: int) -> None:
        controls = self.job.controls
        if not controls:
            return
        images = [c.image.resize((width, height), Image.Resampling.LANCZOS) for c in controls]
        one = len(controls) == 1
        # The text-to-image ControlNet pipelines take the control map as ``image``; the others need ``image``
        # for the init image and take it as ``control_image``.
        kwargs["image" if mode == "txt2img" else "control_image"] = images[0] if one else images
        kwargs["controlnet_conditioning_scale"] = controls[0].weight if one else [c.weight for c in controls]
        kwargs["control_guidance_start"] = (
            controls[0].guidance_start if one else [c.guidance_start for c in controls]
        )
        kwargs["control_guidance_end"] = (
            controls[0].guidance_end if one else [c.guidance_end for c in controls]
        )
        kwargs["guess_mode"] = all(c.guess_mode for c in controls)

    def _sdxl_sizes(self, kwargs: dict[str, Any], width: int, height: int) -> None:
        if self.model.arch.family == "sdxl":
            # As A1111 conditions SDXL: original and target size = the generated size, crop at (0, 0).
            kwargs.update(
                original_size=(height, width), target_size=(height, width), crops_coords_top_left=(0, 0)
            )

    def batch(self, pipe: Any, iteration: int) -> tuple[list[Image.Image], bool, int]:
        job = self.job
        kwargs = self._common(pipe, iteration, sampler=job.sampler, schedule=job.sigma_schedule)
        kwargs.update(prompt=job.prompt, negative_prompt=job.negative_prompt, num_inference_steps=job.steps)
        self._sdxl_sizes(kwargs, job.width, job.height)
        if job.inpaint is not None and job.init_image is not None:
            return self._inpaint(pipe, kwargs)
        if job.init_image is not None:
            init = job.init_image.resize((job.width, job.height), Image.Resampling.LANCZOS)
            if self.model.arch.inpainting:
                kwargs.update(mask_image=Image.new("L", init.size, 255), width=job.width, height=job.height)
            self._control(
                kwargs, "img2img" if not self.model.arch.inpainting else "inpaint", job.width, job.height
            )
            kwargs.update(image=init, strength=job.denoising_strength)
            images = self._call(pipe, kwargs)
            return images, self.stopped, self.done
        kwargs.update(width=job.width, height=job.height)
        if self.model.arch.inpainting:
            # An inpainting checkpoint in text-to-image: everything masked over a neutral image.
            kwargs.update(
                image=Image.new("RGB", (job.width, job.height), (127, 127, 127)),
                mask_image=Image.new("L", (job.width, job.height), 255),
                strength=1.0,
            )
            self._control(kwargs, "inpaint", job.width, job.height)
        else:
            self._control(kwargs, "txt2img", job.width, job.height)
        latent_hires = job.hires is not None and job.hires.upscaler in LATENT_MODES
        if self.refiner is not None and job.refiner is not None:
            kwargs.update(denoising_end=job.refiner.switch_at, output_type="latent")
            latents = self._call(pipe, kwargs, raw=True)
            if self.stopped:
                return self._decode(pipe, latents), True, self.done
            return self._refine(latents, iteration), self.stopped, self.done
        if latent_hires:
            kwargs["output_type"] = "latent"
            first = self._call(pipe, kwargs, raw=True)
        else:
            first = self._call(pipe, kwargs)
        if job.hires is None:
            return first, self.stopped, self.done
        if self.stopped:
            return (self._decode(pipe, first) if latent_hires else first), True, self.done
        return self._hires(first, iteration), self.stopped, self.done

    def _call(self, pipe: Any, kwargs: dict[str, Any], *, raw: bool = False) -> Any:
        with torch.inference_mode():
            out = pipe(**kwargs)
        return out.images if raw else list(out.images)

    def _decode(self, pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
        """Latents of an interrupted first pass -> images (what an interrupted A1111 run returns)."""
        vae = pipe.vae
        with torch.inference_mode():
            decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        images: list[Image.Image] = pipe.image_processor.postprocess(decoded, output_type="pil")
        return images

    def _hires(self, first: Any, iteration: int) -> list[Image.Image]:
        job = self.job
        hr = job.hires
        assert hr is not None
        if hr.upscaler in LATENT_MODES:
            mode, antialias = LATENT_MODES[hr.upscaler]
            image: Any = torch.nn.functional.interpolate(
                first, size=(hr.height // 8, hr.width // 8), mode=mode, antialias=antialias
            )
        else:
            assert self.upscaler is not None
            image = [upscale_image(self.upscaler, im, hr.width, hr.height) for im in first]
            if len(image) == 1:
                image = image[0]
        pipe = self.model.view("img2img", self.controlnet)
        kwargs = self._common(pipe, iteration, sampler=hr.sampler, schedule=hr.sigma_schedule)
        # One image per prompt: the first pass already made the batch.
        kwargs.update(
            prompt=[hr.prompt] * job.batch_size,
            negative_prompt=[hr.negative_prompt] * job.batch_size,
            num_images_per_prompt=1,
            num_inference_steps=hr.steps,
            image=image,
            strength=hr.denoising_strength,
        )
        self._sdxl_sizes(kwargs, hr.width, hr.height)
        if self.model.arch.inpainting:
            # The inpainting pipeline of a 9-channel model: everything masked, as in its first pass.
            kwargs.update(
                mask_image=Image.new("L", (hr.width, hr.height), 255), width=hr.width, height=hr.height
            )
        self._control(kwargs, "inpaint" if self.model.arch.inpainting else "img2img", hr.width, hr.height)
        self.done = 0
        images: list[Image.Image] = self._call(pipe, kwargs)
        return images

    def _refine(self, latents: torch.Tensor, iteration: int) -> list[Image.Image]:
        job = self.job
        assert self.refiner is not None and job.refiner is not None
        pipe = self.refiner.view("img2img")
        pipe.scheduler = make_scheduler(job.sampler, self.refiner.base_scheduler_config, job.sigma_schedule)
        kwargs = {
            "prompt": [job.prompt] * job.batch_size,
            "negative_prompt": [job.negative_prompt] * job.batch_size,
            "image": latents,
            "num_inference_steps": job.steps,
            "denoising_start": job.refiner.switch_at,
            "guidance_scale": job.cfg_scale,
            "generator": self.generators(iteration),
            "callback_on_step_end": self._step_end(iteration),
            "original_size": (job.height, job.width),
            "target_size": (job.height, job.width),
        }
        images: list[Image.Image] = self._call(pipe, kwargs)
        return images

    def _inpaint(self, pipe: Any, kwargs: dict[str, Any]) -> tuple[list[Image.Image], bool, int]:
        job = self.job
        assert job.inpaint is not None and job.init_image is not None
        prepared = prepare_inpaint(job.init_image, job.inpaint, job.width, job.height, seed=job.seeds[0])
        kwargs.update(
            image=prepared.image,
            mask_image=prepared.mask,
            strength=job.denoising_strength,
            width=job.width,
            height=job.height,
        )
        self._control(kwargs, "inpaint", job.width, job.height)
        generated = self._call(pipe, kwargs)
        return [composite(img, prepared) for img in generated], self.stopped, self.done
