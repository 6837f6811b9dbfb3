"""Translation between the SD WebUI API dialect and the runtime's own jobs and results."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from PIL import Image

from runtime_image.server import controlnet
from runtime_image.server.errors import RequestError
from runtime_image.server.formats import OutputFormat, encode_b64, output_format
from runtime_image.server.images import decode_image
from runtime_image.server.inpaint import InpaintSpec, invert
from runtime_image.server.lora import LoraUse, merge_uses, parse_prompt_loras
from runtime_image.server.pipelines import GenerationJob, GenerationResult, HiresSpec, RefinerSpec
from runtime_image.server.policy import check_supported
from runtime_image.server.samplers import DEFAULT_SAMPLER, find_sampler
from runtime_image.server.schemas import (
    MAX_SIDE,
    MAX_STEPS,
    GenerationRequest,
    Img2ImgRequest,
    Txt2ImgRequest,
)
from runtime_image.server.upscalers import check_name

VERSION = "easel-runtime"


@dataclass(frozen=True)
class Translated:
    job: GenerationJob
    model: str | None  # from override_settings; None: the loaded model
    clip_stop: int
    restore: bool = True  # override_settings_restore_afterwards
    output: OutputFormat = OutputFormat("PNG")  # noqa: RUF009 - frozen, so one shared default is safe
    # Easel: units actually used, for the infotext ("ControlNet 0: ...", as the extension writes it).
    control_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreView:
    """What translation may ask of the store: names only (loading happens on the worker)."""

    controlnet: Any  # (name, field) -> None or RequestError
    upscalers: list[str]


def translate(req: GenerationRequest, *, clip_stop: int, store: StoreView | None = None) -> Translated:
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

    fmt = output_format(
        overrides.get("samples_format"),
        overrides.get("jpeg_quality"),
        overrides.get("webp_lossless"),
        field="override_settings.samples_format",
    )
    init_image = None
    strength = 0.75
    inpaint = None
    if isinstance(req, Img2ImgRequest):
        init_image = decode_image(req.init_images[0], "init_images.0")
        strength = req.denoising_strength
        if int(req.steps * strength) < 1:
            raise RequestError(
                "denoising_strength", strength, f"with steps={req.steps} no denoising step would run"
            )
        inpaint = _inpaint_spec(req, init_image)
    hires = None
    if isinstance(req, Txt2ImgRequest) and req.enable_hr:
        hires = _hires_spec(req, sampler, store)
    refiner = _refiner_spec(req)
    if refiner is not None and (init_image is not None or hires is not None):
        raise RequestError(
            "refiner_checkpoint",
            req.refiner_checkpoint,
            "the refiner runs after text-to-image without hires fix only",
        )
    controls, control_texts = _controls(req, init_image, store)
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
        inpaint=inpaint,
        hires=hires,
        controls=controls,
        refiner=refiner,
    )
    return Translated(
        job=job,
        model=model,
        clip_stop=stop,
        restore=req.override_settings_restore_afterwards,
        output=fmt,
        control_texts=control_texts,
    )


def _mask(data: str, round_: bool) -> Image.Image:
    """A1111's create_binary_mask: the alpha channel of a partly transparent RGBA mask, else its luminance."""
    import base64
    import io

    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        raw = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        raw.load()
    except Exception:
        decode_image(data, "mask")
        raise
    if raw.mode == "RGBA" and raw.getextrema()[-1] != (255, 255):
        mask = raw.split()[-1].convert("L")
    else:
        mask = raw.convert("L")
    return mask.point(lambda x: 255 if x > 128 else 0) if round_ else mask


def _inpaint_spec(req: Img2ImgRequest, init: Image.Image) -> InpaintSpec | None:
    if not req.mask:
        return None
    decode_image(req.mask, "mask")  # field-named 422 for non-image or oversized data
    mask = _mask(req.mask, req.mask_round)
    if mask.size != init.size:
        raise RequestError(
            "mask", f"{mask.width}x{mask.height}", f"must be the init image's size {init.width}x{init.height}"
        )
    if req.inpainting_mask_invert not in (0, 1):
        raise RequestError(
            "inpainting_mask_invert", req.inpainting_mask_invert, "must be 0 (masked) or 1 (not masked)"
        )
    if req.inpainting_mask_invert == 1:
        mask = invert(mask)
    if req.inpainting_fill not in (0, 1, 2, 3):
        raise RequestError(
            "inpainting_fill",
            req.inpainting_fill,
            "must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing)",
        )
    blur_x, blur_y = (
        (req.mask_blur, req.mask_blur) if req.mask_blur is not None else (req.mask_blur_x, req.mask_blur_y)
    )
    for name, value in (
        ("mask_blur" if req.mask_blur is not None else "mask_blur_x", blur_x),
        ("mask_blur_y", blur_y),
    ):
        if not 0 <= value <= 64:
            raise RequestError(name, value, "must be 0..64")
    if not 0 <= req.inpaint_full_res_padding <= 256:
        raise RequestError("inpaint_full_res_padding", req.inpaint_full_res_padding, "must be 0..256")
    if mask.getbbox() is None:
        raise RequestError("mask", "empty", "masks nothing (all black after inpainting_mask_invert)")
    return InpaintSpec(
        mask=mask,
        blur_x=blur_x,
        blur_y=blur_y,
        fill=req.inpainting_fill,
        full_res=bool(req.inpaint_full_res),
        padding=req.inpaint_full_res_padding,
    )


def _hires_spec(req: Txt2ImgRequest, sampler: Any, store: StoreView | None) -> HiresSpec:
    if req.hr_resize_x or req.hr_resize_y:
        for name, value in (("hr_resize_x", req.hr_resize_x), ("hr_resize_y", req.hr_resize_y)):
            if value < 0 or value > MAX_SIDE:
                raise RequestError(name, value, f"must be 0..{MAX_SIDE}")
        # A1111: one of them 0 keeps the aspect ratio.
        w = req.hr_resize_x or round(req.hr_resize_y * req.width / req.height)
        h = req.hr_resize_y or round(req.hr_resize_x * req.height / req.width)
    else:
        if not 1.0 <= req.hr_scale <= 4.0:
            raise RequestError("hr_scale", req.hr_scale, "must be 1..4")
        w, h = int(req.width * req.hr_scale), int(req.height * req.hr_scale)
    # Latents are 1/8 of the image: the hires size snaps down to a multiple of 8.
    w, h = w // 8 * 8, h // 8 * 8
    if not (64 <= w <= MAX_SIDE and 64 <= h <= MAX_SIDE):
        raise RequestError("hr_scale", req.hr_scale, f"the hires size {w}x{h} is outside 64..{MAX_SIDE}")
    upscaler = check_name(req.hr_upscaler, "hr_upscaler", store.upscalers if store else [], latent=True)
    if not 0 <= req.hr_second_pass_steps <= MAX_STEPS:
        raise RequestError("hr_second_pass_steps", req.hr_second_pass_steps, f"must be 0..{MAX_STEPS}")
    strength = 0.75 if req.denoising_strength is None else req.denoising_strength
    if not 0.0 < strength <= 1.0:
        raise RequestError("denoising_strength", strength, "the hires pass needs 0 < denoising_strength <= 1")
    steps = req.hr_second_pass_steps or req.steps
    if int(steps * strength) < 1:
        raise RequestError(
            "denoising_strength", strength, f"with {steps} hires steps no denoising step would run"
        )
    hr_sampler = sampler
    if req.hr_sampler_name and req.hr_sampler_name.strip().lower() not in ("", "use same sampler"):
        hr_sampler = find_sampler(req.hr_sampler_name, field_name="hr_sampler_name")
    hr_prompt, _ = parse_prompt_loras(req.hr_prompt) if req.hr_prompt else (None, [])
    base_prompt, _ = parse_prompt_loras(req.prompt)
    return HiresSpec(
        width=w,
        height=h,
        upscaler=upscaler,
        steps=steps,
        denoising_strength=strength,
        prompt=hr_prompt or base_prompt,
        negative_prompt=req.hr_negative_prompt or req.negative_prompt or "",
        sampler=hr_sampler,
        sigma_schedule=req.hr_scheduler
        if req.hr_scheduler and req.hr_scheduler != "Use same scheduler"
        else req.scheduler,
    )


def _refiner_spec(req: GenerationRequest) -> RefinerSpec | None:
    name = req.refiner_checkpoint
    if not name or str(name).strip().lower() in ("none", ""):
        return None
    switch = req.refiner_switch_at
    if switch is None or not 0.0 < switch < 1.0:
        raise RequestError("refiner_switch_at", switch, "must be between 0 and 1 (exclusive) with a refiner")
    return RefinerSpec(model=str(name), switch_at=float(switch))


def _controls(
    req: GenerationRequest, init: Image.Image | None, store: StoreView | None
) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    key, raw = controlnet.find_args(req.alwayson_scripts or {})
    if key is None:
        return (), ()

    def allow(name: str, field: str) -> None:
        if store is None:
            raise RequestError(field, name, "no ControlNet models in this runtime")
        store.controlnet(name, field)

    units = controlnet.parse_units(raw, allow_models=allow, fallback=init)
    specs = tuple(controlnet.control_spec(u, req.width, req.height) for u in units)
    texts = tuple(
        f'ControlNet {u.index}: "Module: {u.module}, Model: {u.unit.model}, Weight: {u.unit.weight:g}, '
        f'Guidance Start: {u.unit.guidance_start:g}, Guidance End: {u.unit.guidance_end:g}"'
        for u in units
    )
    return specs, texts


def infotext(job: GenerationJob, model: str, seed: int, extra: tuple[str, ...] = ()) -> str:
    """A1111's ``parameters`` text (PNG chunk / EXIF UserComment and ``infotexts``)."""
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
    if job.inpaint is not None:
        fields.append(f"Mask blur: {job.inpaint.blur_x}")
    if job.hires is not None:
        hr = job.hires
        fields.append(f"Denoising strength: {hr.denoising_strength:g}")
        fields.append(f"Hires upscale: {hr.width / job.width:g}")
        fields.append(f"Hires resize: {hr.width}x{hr.height}")
        fields.append(f"Hires steps: {hr.steps}")
        fields.append(f"Hires upscaler: {hr.upscaler}")
    if job.refiner is not None:
        fields.append(f"Refiner: {job.refiner.model}")
        fields.append(f"Refiner switch at: {job.refiner.switch_at:g}")
    fields.extend(extra)
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
    texts = [infotext(job, model, s, tr.control_texts) for s in result.seeds]
    images = [encode_b64(img, tr.output, text) for img, text in zip(result.images, texts, strict=True)]
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
        "width": job.hires.width if job.hires else job.width,
        "height": job.hires.height if job.hires else job.height,
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
        "is_using_inpainting_conditioning": job.inpaint is not None,
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
