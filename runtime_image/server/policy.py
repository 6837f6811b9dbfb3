"""What to do with A1111 fields this runtime does not implement.

Each such field has a *neutral* value: the one that asks for nothing (``tiling: false``, ``styles: []``,
``s_noise: 1``...). Neutral values are accepted and ignored; anything else is refused with a
:class:`RequestError` naming the field, because silently ignoring it would return a different image than the
client asked for. Fields that only matter together with another one (``hr_*`` with ``enable_hr``, ``mask_*``
with ``mask``) are ignored whenever their switch is off, as AUTOMATIC1111 itself does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime_image.server.errors import RequestError
from runtime_image.server.schemas import GenerationRequest, Img2ImgRequest, Txt2ImgRequest


def _falsy(v: Any) -> bool:
    return not v or (isinstance(v, str) and v.strip().lower() in ("none", ""))


def _falsy_or_same(v: Any) -> bool:
    return _falsy(v) or str(v).strip().lower() == "use same checkpoint"


def _zero(v: Any) -> bool:
    return v is None or v == 0


def _in(*values: Any) -> Callable[[Any], bool]:
    return lambda v: v is None or v in values


def _only_controlnet(v: Any) -> bool:
    """``{}``, ControlNet (checked by controlnet.py), or other extensions listed with no arguments."""
    return not v or all(
        k.lower() == "controlnet" or (isinstance(s, dict) and not s.get("args")) for k, s in v.items()
    )


@dataclass(frozen=True)
class Rule:
    field: str
    neutral: Callable[[Any], bool]
    reason: str


COMMON_RULES: tuple[Rule, ...] = (
    Rule("styles", _falsy, "saved styles are not supported; put the text into the prompt"),
    Rule("subseed_strength", _zero, "variation seeds are not supported"),
    Rule("seed_resize_from_h", _in(-1, 0), "seed resizing is not supported"),
    Rule("seed_resize_from_w", _in(-1, 0), "seed resizing is not supported"),
    Rule("restore_faces", _falsy, "face restoration is not supported"),
    Rule("tiling", _falsy, "tiling is not supported"),
    Rule("s_min_uncond", _zero, "s_min_uncond is not supported"),
    Rule("s_churn", _zero, "sampler churn is not supported"),
    Rule("s_tmin", _zero, "s_tmin is not supported"),
    Rule("s_tmax", lambda v: v is None or v == 0 or math.isinf(v), "s_tmax is not supported"),
    Rule("s_noise", _in(1), "s_noise other than 1 is not supported"),
    Rule("firstpass_image", _falsy, "firstpass_image is not supported"),
    Rule("script_name", _falsy, "scripts are not supported"),
    Rule("alwayson_scripts", _only_controlnet, "extension scripts other than ControlNet are not supported"),
    Rule("infotext", _falsy, "infotext parsing is not supported; send the fields instead"),
)
TXT2IMG_RULES: tuple[Rule, ...] = (
    Rule("hr_checkpoint_name", _falsy_or_same, "a separate hires checkpoint is not supported"),
)
IMG2IMG_RULES: tuple[Rule, ...] = (
    Rule("resize_mode", _in(0), "only resize_mode 0 (just resize) is supported"),
    Rule("latent_mask", _falsy, "inpainting (latent_mask) is not supported"),
    Rule("initial_noise_multiplier", _in(1), "initial_noise_multiplier other than 1 is not supported"),
)
# Settings a request may override; the others have no meaning here unless neutral.
OVERRIDABLE = {
    "sd_model_checkpoint",
    "CLIP_stop_at_last_layers",
    "samples_format",
    "jpeg_quality",
    "webp_lossless",
}
NEUTRAL_SETTINGS: dict[str, Callable[[Any], bool]] = {
    "sd_vae": lambda v: _falsy(v) or str(v).lower() == "automatic",
    "eta_noise_seed_delta": _zero,
}
# Samplers whose noise level is fixed at eta=1 in diffusers; A1111 lets eta scale it.
ANCESTRAL = {"Euler a", "DPM2 a", "DPM2 a Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras"}


def check_supported(req: GenerationRequest, sampler: str) -> None:
    """Raise :class:`RequestError` for the first field that asks for something this runtime cannot do."""
    rules = COMMON_RULES
    if isinstance(req, Txt2ImgRequest) and req.enable_hr:
        rules += TXT2IMG_RULES
    if isinstance(req, Img2ImgRequest):
        rules += IMG2IMG_RULES
        if len(req.init_images) > 1:
            raise RequestError("init_images", f"{len(req.init_images)} images", "exactly one init image")
    for rule in rules:
        value = getattr(req, rule.field)
        if not rule.neutral(value):
            raise RequestError(rule.field, value, rule.reason)
    for key, value in (req.override_settings or {}).items():
        if key in OVERRIDABLE:
            continue
        neutral = NEUTRAL_SETTINGS.get(key)
        if neutral is None or not neutral(value):
            raise RequestError(f"override_settings.{key}", value, "this setting is not supported here")
    if sampler in ANCESTRAL and req.eta is not None and req.eta != 1.0:
        raise RequestError("eta", req.eta, f"sampler '{sampler}' runs at eta 1 only")
