"""SD WebUI (AUTOMATIC1111) ``txt2img``/``img2img`` bodies as stable-diffusion-on-eks clients send them.

Those clients post the *full* SD WebUI body, default values included. The leniency rule:

- fields Easel implements map to ``input`` (``sampler_index`` is SD WebUI's old name of ``sampler_name``;
  ``scheduler: "Karras"`` picks the Karras variant of the sampler when Easel has one);
- fields that do not change the image (saving, sending, comments) are accepted and ignored;
- every other SD WebUI field is accepted at its SD WebUI default (or when a switch that enables it is
  off, e.g. ``hr_*`` while ``enable_hr`` is false, ``mask_*`` without a ``mask``); any other value is a
  400 naming the field, because silently ignoring it would return a different image than asked for;
- a field SD WebUI does not have is a 400 ``unknown field`` (a typo must not pass unnoticed).

``alwayson_scripts`` carries the stable-diffusion-on-eks routing keys (``task``, ``id_task``, ``uid``,
``save_dir``, ``sd_model_checkpoint``, ``image_link``, ``sd_vae``, ``override_settings``); an extension
script (ControlNet, AnimateDiff, ...) is a 400 naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from easel.contract import SAMPLERS
from easel.errors import FieldError

MAPPED = frozenset(
    {
        "prompt",
        "negative_prompt",
        "steps",
        "width",
        "height",
        "cfg_scale",
        "sampler_name",
        "seed",
        "batch_size",
        "init_images",
        "denoising_strength",
    }
)
# No effect on the pixels: Easel always stores every image and returns them by URL.
IGNORED = frozenset(
    {
        "send_images",
        "save_images",
        "do_not_save_samples",
        "do_not_save_grid",
        "comments",
        "force_task_id",
        "override_settings_restore_afterwards",
        "disable_extra_networks",
        "include_init_images",
        "infotext",
        "subseed",  # used only when subseed_strength > 0, which is refused below
    }
)
_NONE_OR_EMPTY: tuple[Any, ...] = (None, "", [], {})
# field -> the values accepted (SD WebUI's defaults and their "off" spellings).
DEFAULTS: dict[str, tuple[Any, ...]] = {
    "styles": _NONE_OR_EMPTY,
    "subseed_strength": (None, 0),
    "seed_resize_from_h": (None, -1, 0),
    "seed_resize_from_w": (None, -1, 0),
    "n_iter": (None, 1),
    "restore_faces": (None, False),
    "tiling": (None, False),
    "eta": (None,),
    "s_min_uncond": (None, 0),
    "s_churn": (None, 0),
    "s_tmax": (None, 0),
    "s_tmin": (None, 0),
    "s_noise": (None, 1),
    "refiner_checkpoint": (None, "", "None"),
    "refiner_switch_at": (None, 0, 1),
    "firstpass_image": (None, ""),
    "enable_hr": (None, False),
    "firstphase_width": (None, 0),
    "firstphase_height": (None, 0),
    "script_name": (None, "", "None"),
    "script_args": _NONE_OR_EMPTY,
    "resize_mode": (None, 0),
    "image_cfg_scale": (None,),
    "mask": (None, ""),
    "initial_noise_multiplier": (None, 1),
    "latent_mask": (None, ""),
}
# Fields SD WebUI reads only when a switch is on: any value is accepted while the switch is off.
_HIRES = frozenset(
    {
        "hr_scale",
        "hr_upscaler",
        "hr_second_pass_steps",
        "hr_resize_x",
        "hr_resize_y",
        "hr_checkpoint_name",
        "hr_sampler_name",
        "hr_scheduler",
        "hr_prompt",
        "hr_negative_prompt",
        "hr_cfg",
        "hr_distilled_cfg",
        "hr_additional_modules",
    }
)
_MASK = frozenset(
    {
        "mask_blur",
        "mask_blur_x",
        "mask_blur_y",
        "mask_round",
        "inpainting_fill",
        "inpaint_full_res",
        "inpaint_full_res_padding",
        "inpainting_mask_invert",
    }
)
ROUTING_SCRIPTS = frozenset(
    {"task", "id_task", "uid", "save_dir", "sd_model_checkpoint", "image_link", "sd_vae", "override_settings"}
)
_VAE_DEFAULTS = (None, "", "Automatic", "None")
# Read by the helpers below rather than copied.
_HANDLED = frozenset({"alwayson_scripts", "sampler_index", "override_settings", "scheduler"})


@dataclass(frozen=True)
class Content:
    """A content body split into Easel's ``input`` and what the compat route still has to resolve."""

    input: dict[str, Any]
    checkpoint: str | None
    checkpoint_field: str
    routing: dict[str, Any]


def _path(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def split(content: Any, base: str) -> Content:
    """Validate an SD WebUI body leniently; errors name fields under ``base`` (``task.content``)."""
    if not isinstance(content, dict):
        raise FieldError(base or "body", "must be a JSON object")
    scripts = content.get("alwayson_scripts")
    scripts = {} if scripts is None else scripts
    if not isinstance(scripts, dict):
        raise FieldError(_path(base, "alwayson_scripts"), "must be a JSON object")
    out: dict[str, Any] = {}
    for name, value in content.items():
        field = _path(base, name)
        if name in MAPPED:
            out[name] = value
        elif name in IGNORED or name in _HANDLED:
            continue
        elif name in _HIRES:
            if content.get("enable_hr"):
                raise FieldError(field, "hires fix is not supported by Easel")
        elif name in _MASK:
            if content.get("mask"):
                raise FieldError(field, "inpainting is not supported by Easel")
        elif name in DEFAULTS:
            if not _is_default(value, DEFAULTS[name]):
                shown = ", ".join(json.dumps(v) for v in DEFAULTS[name] if v not in ([], {}))
                raise FieldError(field, f"not supported by Easel; only its default ({shown}) is accepted")
        else:
            raise FieldError(field, "unknown field")
    _sampler(content, out, base)
    checkpoint, checkpoint_field = _checkpoint(content, scripts, base)
    routing = _routing(scripts, base)
    return Content(input=out, checkpoint=checkpoint, checkpoint_field=checkpoint_field, routing=routing)


def _is_default(value: Any, accepted: tuple[Any, ...]) -> bool:
    for a in accepted:
        if value is None or a is None:
            if value is a:
                return True
        # bool is an int in Python: `n_iter: true` is not 1.
        elif isinstance(value, bool) == isinstance(a, bool) and value == a:
            return True
    return False


def _sampler(content: dict[str, Any], out: dict[str, Any], base: str) -> None:
    if "sampler_name" not in out and isinstance(content.get("sampler_index"), str):
        out["sampler_name"] = content["sampler_index"]
    scheduler = content.get("scheduler")
    name = out.get("sampler_name")
    if isinstance(name, str) and isinstance(scheduler, str) and scheduler.lower() == "karras":
        if f"{name} Karras" not in SAMPLERS:
            raise FieldError(_path(base, "scheduler"), f"no Karras variant of sampler '{name}'")
        out["sampler_name"] = f"{name} Karras"
    elif isinstance(scheduler, str) and scheduler.lower() not in ("", "automatic", "karras"):
        raise FieldError(_path(base, "scheduler"), "only 'Automatic' or 'Karras' is supported")


def _checkpoint(content: dict[str, Any], scripts: dict[str, Any], base: str) -> tuple[str | None, str]:
    """The checkpoint named anywhere SD WebUI clients put it; two different names are refused."""
    found: list[tuple[str, Any]] = []
    for where, settings in (
        ("override_settings", content.get("override_settings")),
        ("alwayson_scripts.override_settings", scripts.get("override_settings")),
    ):
        if settings in (None, {}):
            continue
        if not isinstance(settings, dict):
            raise FieldError(_path(base, where), "must be a JSON object")
        for key in settings:
            if key != "sd_model_checkpoint":
                raise FieldError(_path(base, f"{where}.{key}"), "only sd_model_checkpoint may be overridden")
        found.append((f"{where}.sd_model_checkpoint", settings["sd_model_checkpoint"]))
    if scripts.get("sd_model_checkpoint") not in (None, ""):
        found.append(("alwayson_scripts.sd_model_checkpoint", scripts["sd_model_checkpoint"]))
    for where, value in found:
        if not isinstance(value, str):
            raise FieldError(_path(base, where), "must be a string")
    if len({v for _, v in found}) > 1:
        raise FieldError(_path(base, found[1][0]), f"names another checkpoint than {found[0][0]}")
    if found:
        return found[0][1], _path(base, found[0][0])
    return None, _path(base, "alwayson_scripts.sd_model_checkpoint")


def _routing(scripts: dict[str, Any], base: str) -> dict[str, Any]:
    for name, value in scripts.items():
        field = _path(base, f"alwayson_scripts.{name}")
        if name not in ROUTING_SCRIPTS:
            raise FieldError(field, f"extension script '{name}' is not supported by Easel")
        if name == "sd_vae" and value not in _VAE_DEFAULTS:
            raise FieldError(field, "only the model's own VAE ('Automatic') is supported")
        if name == "image_link" and not (isinstance(value, str) and value):
            raise FieldError(field, "must be an image URL (s3:// or https://)")
    return {k: v for k, v in scripts.items() if k in ("task", "id_task", "uid", "save_dir", "image_link")}
