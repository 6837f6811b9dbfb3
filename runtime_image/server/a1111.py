"""Translation between the SD WebUI API dialect and the runtime's own jobs and results."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from runtime_image.server.errors import RequestError
from runtime_image.server.images import decode_image, encode_png
from runtime_image.server.lora import LoraUse, merge_uses, parse_prompt_loras
from runtime_image.server.pipelines import GenerationJob, GenerationResult
from runtime_image.server.policy import check_supported
from runtime_image.server.samplers import DEFAULT_SAMPLER, find_sampler
from runtime_image.server.schemas import GenerationRequest, Img2ImgRequest

VERSION = "easel-runtime"


@dataclass(frozen=True)
class Translated:
    job: GenerationJob
    model: str | None  # from override_settings; None: the loaded model
    clip_stop: int
    restore: bool = True  # override_settings_restore_afterwards


def translate(req: GenerationRequest, *, clip_stop: int) -> Translated:
    """Validate what pydantic cannot (support policy, cross-field rules) and build the job."""
    sampler_field = "sampler_name" if req.sampler_name else "sampler_index"
    sampler = find_sampler(req.sampler_name or req.sampler_index or DEFAULT_SAMPLER, field_name=sampler_field)
    check_supported(req, sampler.name)
    overrides = req.override_settings or {}
    model = overrides.get("sd_model_checkpoint") or None
    if model is not None and not isinstance(model, str):
        raise RequestError("override_settings.sd_model_checkpoint", model, "must be a model name")
    stop = overrides.get("CLIP_stop_at_last_layers", clip_stop)
    if not isinstance(stop, int) or not 1 <= stop <= 12:
        raise RequestError("override_settings.CLIP_stop_at_last_layers", stop, "must be an integer 1..12")

    prompt, tagged = parse_prompt_loras(req.prompt)
    if req.disable_extra_networks:
        # A1111 strips the tags but applies nothing when extra networks are disabled.
        tagged = []
    uses = merge_uses([LoraUse(i.name, i.weight, allow_private=True) for i in req.loras], tagged)

    init_image = None
    strength = 0.75
    if isinstance(req, Img2ImgRequest):
        init_image = decode_image(req.init_images[0], "init_images.0")
        strength = req.denoising_strength
        if int(req.steps * strength) < 1:
            raise RequestError(
                "denoising_strength", strength, f"with steps={req.steps} no denoising step would run"
            )
    seed = req.seed if req.seed != -1 else secrets.randbelow(2**32)
    job = GenerationJob(
        prompt=prompt,
        negative_prompt=req.negative_prompt or "",
        steps=req.steps,
        cfg_scale=req.cfg_scale,
        width=req.width,
        height=req.height,
        sampler=sampler,
        seed=seed,
        batch_size=req.batch_size,
        n_iter=req.n_iter,
        sigma_schedule=req.scheduler,
        init_image=init_image,
        denoising_strength=strength,
        loras=tuple(uses),
        # A1111 counts the last layer as 1 ("stop at last layer"); diffusers counts layers skipped.
        clip_skip=stop - 1 if stop > 1 else None,
        eta=req.eta,
    )
    return Translated(job=job, model=model, clip_stop=stop, restore=req.override_settings_restore_afterwards)


def infotext(job: GenerationJob, model: str, seed: int) -> str:
    """A1111's ``parameters`` text (PNG chunk and ``infotexts``)."""
    fields = [
        f"Steps: {job.steps}",
        f"Sampler: {job.sampler.name}",
        f"Schedule type: {job.sigma_schedule or 'Automatic'}",
        f"CFG scale: {job.cfg_scale:g}",
        f"Seed: {seed}",
        f"Size: {job.width}x{job.height}",
        f"Model: {model}",
    ]
    if job.init_image is not None:
        fields.append(f"Denoising strength: {job.denoising_strength:g}")
    if job.clip_skip:
        fields.append(f"Clip skip: {job.clip_skip + 1}")
    if job.loras:
        fields.append("Lora: " + ", ".join(f"{u.name}:{u.weight:g}" for u in job.loras))
    fields.append(f"Version: {VERSION}")
    lines = [job.prompt]
    if job.negative_prompt:
        lines.append(f"Negative prompt: {job.negative_prompt}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def build_response(
    req: GenerationRequest, tr: Translated, result: GenerationResult, model: str
) -> dict[str, Any]:
    job = tr.job
    texts = [infotext(job, model, s) for s in result.seeds]
    images = [encode_png(img, text) for img, text in zip(result.images, texts, strict=True)]
    info = {
        "prompt": job.prompt,
        "all_prompts": [job.prompt] * len(result.seeds),
        "negative_prompt": job.negative_prompt,
        "all_negative_prompts": [job.negative_prompt] * len(result.seeds),
        "seed": job.seed,
        "all_seeds": result.seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(result.seeds),
        "subseed_strength": 0,
        "width": job.width,
        "height": job.height,
        "sampler_name": job.sampler.name,
        "scheduler": job.sigma_schedule or "Automatic",
        "cfg_scale": job.cfg_scale,
        "steps": job.steps,
        "batch_size": job.batch_size,
        "n_iter": job.n_iter,
        "restore_faces": False,
        "sd_model_name": model,
        "sd_model_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": job.denoising_strength if job.init_image is not None else None,
        "clip_skip": tr.clip_stop,
        "extra_generation_params": {"Lora": [{"name": u.name, "weight": u.weight} for u in job.loras]}
        if job.loras
        else {},
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": [],
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
        "interrupted": result.interrupted,
        "steps_completed": result.steps_completed,
    }
    parameters = req.model_dump(mode="json")
    if isinstance(req, Img2ImgRequest) and not req.include_init_images:
        # As A1111: do not echo megabytes of input back.
        parameters["init_images"] = None
        parameters["mask"] = None
    return {
        "images": images if req.send_images else [],
        "parameters": parameters,
        "info": json.dumps(info),
    }
