"""ControlNet units in the sd-webui-controlnet extension's API format (``alwayson_scripts.controlnet.args``).

Each unit is parsed like the extension does (unknown keys ignored, legacy ``input_image`` alias, image as a
base64 string, ``{"image", "mask"}`` or ``[image, mask]``), then its control map is made by a preprocessor
that needs no downloaded weights. Preprocessors that need annotator weights exist in the extension; this
runtime has none of those files, so naming one is refused (422, naming the unit's ``module``).

Disabled units and units of weight 0 are dropped before generation, so they give exactly the image without
them. ``control_mode`` "ControlNet is more important" maps to diffusers' guess mode; "My prompt is more
important" (the extension's per-layer soft weights) has no diffusers equivalent and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime_image.server.errors import RequestError
from runtime_image.server.images import decode_image
from runtime_image.server.pipelines import ControlSpec

API_VERSION = 3  # what the extension's /controlnet/version answers (external_code.get_api_version)
MAX_UNITS = 4
RESIZE_MODES = {"Just Resize": 0, "Crop and Resize": 1, "Resize and Fill": 2}
CONTROL_MODES = {"Balanced": 0, "My prompt is more important": 1, "ControlNet is more important": 2}
_RESIZE_ALIASES = {
    "Inner Fit (Scale to Fit)": "Crop and Resize",
    "Outer Fit (Shrink to Fit)": "Resize and Fill",
    "Scale to Fit (Inner Fit)": "Crop and Resize",
    "Envelope (Outer Fit)": "Resize and Fill",
}
# The extension's preprocessors that need annotator weights (downloaded on first use there).
NEEDS_WEIGHTS = frozenset(
    (
        "depth",
        "depth_midas",
        "depth_leres",
        "depth_leres++",
        "depth_zoe",
        "depth_anything",
        "depth_anything_v2",
        "depth_hand_refiner",
        "openpose",
        "openpose_face",
        "openpose_faceonly",
        "openpose_full",
        "openpose_hand",
        "dw_openpose_full",
        "animal_openpose",
        "hed",
        "softedge_hed",
        "softedge_hedsafe",
        "softedge_pidinet",
        "softedge_pidisafe",
        "softedge_teed",
        "pidinet",
        "pidinet_safe",
        "mlsd",
        "lineart",
        "lineart_realistic",
        "lineart_coarse",
        "lineart_anime",
        "lineart_anime_denoise",
        "lineart_standard",
        "normal_bae",
        "normal_midas",
        "normal_dsine",
        "seg_ofade20k",
        "seg_ofcoco",
        "seg_ufade20k",
        "segmentation",
        "clip_vision",
        "ip-adapter_clip_sd15",
        "ip-adapter_clip_sdxl",
        "ip-adapter_face_id",
        "ip-adapter-auto",
        "inpaint_only+lama",
        "mediapipe_face",
        "scribble_hed",
        "scribble_pidinet",
        "reference_only",
        "reference_adain",
        "reference_adain+attn",
        "revision_clipvision",
        "revision_ignore_prompt",
        "t2ia_style_clipvision",
        "recolor_luminance",
        "recolor_intensity",
    )
)


def _unit_scale(image: Image.Image, res: int) -> Image.Image:
    """Resize so the short side is ``res`` (the extension's processor resolution)."""
    short = min(image.size)
    if res <= 0 or short == res:
        return image
    k = res / short
    return image.resize(
        (max(1, round(image.width * k)), max(1, round(image.height * k))), Image.Resampling.LANCZOS
    )


def _none(image: Image.Image, _res: int, _a: float, _b: float) -> Image.Image:
    return image


def _invert(image: Image.Image, res: int, _a: float, _b: float) -> Image.Image:
    return ImageOps.invert(_unit_scale(image, res).convert("RGB"))


def _binary(image: Image.Image, res: int, a: float, _b: float) -> Image.Image:
    gray = np.asarray(_unit_scale(image, res).convert("L"))
    threshold = a if a > 0 else float(gray.mean())  # 0: Otsu-like automatic (the mean) in this runtime
    return Image.fromarray(np.where(gray > threshold, 255, 0).astype(np.uint8)).convert("RGB")


def _blur(image: Image.Image, res: int, a: float, _b: float) -> Image.Image:
    return _unit_scale(image, res).convert("RGB").filter(ImageFilter.GaussianBlur(radius=a))


def _tile_resample(image: Image.Image, _res: int, a: float, _b: float) -> Image.Image:
    down = max(a, 1.0)
    small = image.resize(
        (max(1, round(image.width / down)), max(1, round(image.height / down))), Image.Resampling.LANCZOS
    )
    return small.convert("RGB")


def canny(gray: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges (Sobel gradients, non-maximum suppression, hysteresis): uint8 0/255, no OpenCV needed."""
    g = gray.astype(np.float32)
    # A 5x5 Gaussian first, like cv2.Canny callers do (the extension blurs nothing; its images are clean).
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.hypot(gx, gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    m = np.pad(mag, 1)
    h, w = mag.shape
    # Neighbours along the gradient direction, per quantised angle (0, 45, 90, 135 degrees).
    east, west = m[1:-1, 2:], m[1:-1, :-2]
    north, south = m[:-2, 1:-1], m[2:, 1:-1]
    ne, sw = m[:-2, 2:], m[2:, :-2]
    nw, se = m[:-2, :-2], m[2:, 2:]
    a0 = (angle < 22.5) | (angle >= 157.5)
    a45 = (angle >= 22.5) & (angle < 67.5)
    a90 = (angle >= 67.5) & (angle < 112.5)
    a135 = (angle >= 112.5) & (angle < 157.5)
    keep = (
        (a0 & (mag >= east) & (mag >= west))
        | (a45 & (mag >= ne) & (mag >= sw))
        | (a90 & (mag >= north) & (mag >= south))
        | (a135 & (mag >= nw) & (mag >= se))
    )
    thin = np.where(keep, mag, 0.0)
    strong = thin >= high
    weak = (thin >= low) & ~strong
    edges = strong.copy()
    # Hysteresis: weak pixels join when 8-connected to an edge, until nothing changes.
    for _ in range(h * w):
        e = np.pad(edges, 1)
        near = (
            e[:-2, :-2]
            | e[:-2, 1:-1]
            | e[:-2, 2:]
            | e[1:-1, :-2]
            | e[1:-1, 2:]
            | e[2:, :-2]
            | e[2:, 1:-1]
            | e[2:, 2:]
        )
        grown = edges | (weak & near)
        if (grown == edges).all():
            break
        edges = grown
    return np.where(edges, 255, 0).astype(np.uint8)


def _canny(image: Image.Image, res: int, a: float, b: float) -> Image.Image:
    # cv2.Canny thresholds apply to the Sobel L1/L2 magnitude of 0..255 pixels: the same scale here.
    gray = np.asarray(_unit_scale(image, res).convert("L"))
    return Image.fromarray(canny(gray, a, b)).convert("RGB")


@dataclass(frozen=True)
class Preprocessor:
    run: Callable[[Image.Image, int, float, float], Image.Image]
    resolution: int = 512
    threshold_a: float = -1
    threshold_b: float = -1
    a_range: tuple[float, float] = (0, 0)
    b_range: tuple[float, float] = (0, 0)


PREPROCESSORS: dict[str, Preprocessor] = {
    "none": Preprocessor(_none, resolution=-1),
    "invert": Preprocessor(_invert),
    "canny": Preprocessor(_canny, threshold_a=100, threshold_b=200, a_range=(1, 255), b_range=(1, 255)),
    "threshold": Preprocessor(_binary, threshold_a=0, a_range=(0, 255)),
    "binary": Preprocessor(_binary, threshold_a=0, a_range=(0, 255)),
    "blur_gaussian": Preprocessor(_blur, threshold_a=9, a_range=(0.01, 64)),
    "tile_resample": Preprocessor(_tile_resample, resolution=-1, threshold_a=1, a_range=(1, 8)),
}
# The extension's alias names (its module list with alias_names) for the same preprocessors.
ALIASES = {
    "invert (from white bg & black line)": "invert",
    "blur_gau": "blur_gaussian",
    "tile": "tile_resample",
}


class Unit(BaseModel):
    """One unit as the extension's ControlNetUnit parses it (unknown keys ignored, as there)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True  # the API client helpers send it; a unit sent at all is meant to run
    module: str = "none"
    model: str = "None"
    weight: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    image: Any = None
    mask: Any = None
    resize_mode: Any = "Crop and Resize"
    low_vram: bool = False
    processor_res: float = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    guidance_end: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    pixel_perfect: bool = False
    control_mode: Any = "Balanced"


@dataclass(frozen=True)
class ParsedUnit:
    index: int
    unit: Unit
    image: Image.Image
    module: str
    control_mode: int
    resize_mode: int


def _field(i: int, name: str) -> str:
    return f"alwayson_scripts.controlnet.args.{i}.{name}"


def _enum(value: Any, table: dict[str, int], field: str) -> int:
    if isinstance(value, bool):
        raise RequestError(field, value, f"use one of: {', '.join(table)}")
    if isinstance(value, int) and value in table.values():
        return value
    if isinstance(value, str):
        key = _RESIZE_ALIASES.get(value, value)
        if key in table:
            return table[key]
    raise RequestError(field, value, f"use one of: {', '.join(table)} (or 0..{len(table) - 1})")


def find_args(scripts: dict[str, Any]) -> tuple[str | None, Any]:
    """The ControlNet script's entry, matched without case as A1111 matches script titles."""
    for key, value in scripts.items():
        if key.lower() == "controlnet":
            return key, value
    return None, None


def parse_units(
    raw: Any, *, allow_models: Callable[[str, str], None], fallback: Image.Image | None = None
) -> list[ParsedUnit]:
    """Validate every unit; return the ones that take part (enabled, weight > 0)."""
    args = raw.get("args") if isinstance(raw, dict) else None
    if not isinstance(args, list):
        raise RequestError("alwayson_scripts.controlnet.args", raw, "must be a list of units")
    if len(args) > MAX_UNITS:
        raise RequestError(
            "alwayson_scripts.controlnet.args", f"{len(args)} units", f"at most {MAX_UNITS} units"
        )
    parsed: list[ParsedUnit] = []
    for i, item in enumerate(args):
        if item is None:
            continue
        if not isinstance(item, dict):
            raise RequestError(f"alwayson_scripts.controlnet.args.{i}", item, "a unit must be an object")
        values = dict(item)
        if "image" not in values and "input_image" in values:
            values["image"] = values.pop("input_image")  # the extension's legacy alias
        try:
            unit = Unit.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"])
            raise RequestError(_field(i, name), err.get("input"), err["msg"]) from None
        if unit.guidance_start > unit.guidance_end:
            raise RequestError(
                _field(i, "guidance_start"), unit.guidance_start, "must not exceed guidance_end"
            )
        module = ALIASES.get(unit.module, unit.module)
        if module not in PREPROCESSORS:
            if module in NEEDS_WEIGHTS:
                raise RequestError(
                    _field(i, "module"), unit.module, "this preprocessor needs annotator weights, absent here"
                )
            raise RequestError(
                _field(i, "module"), unit.module, f"unknown; use one of: {', '.join(PREPROCESSORS)}"
            )
        control_mode = _enum(unit.control_mode, CONTROL_MODES, _field(i, "control_mode"))
        resize_mode = _enum(unit.resize_mode, RESIZE_MODES, _field(i, "resize_mode"))
        if not unit.enabled or unit.weight == 0:
            continue
        if control_mode == 1:
            raise RequestError(
                _field(i, "control_mode"), unit.control_mode, "'My prompt is more important' is not supported"
            )
        if unit.model in ("", "None", None):
            raise RequestError(_field(i, "model"), unit.model, "an enabled unit needs a ControlNet model")
        allow_models(unit.model, _field(i, "model"))
        # As the extension in img2img: a unit without an image uses the init image.
        image = fallback if not unit.image and fallback is not None else _unit_image(unit.image, i)
        parsed.append(ParsedUnit(i, unit, image, module, control_mode, resize_mode))
    modes = {p.control_mode for p in parsed}
    if len(modes) > 1:
        raise RequestError(
            _field(parsed[-1].index, "control_mode"),
            parsed[-1].unit.control_mode,
            "all units need the same control_mode",
        )
    return parsed


def _unit_image(value: Any, i: int) -> Image.Image:
    if isinstance(value, dict):
        value = value.get("image")
    elif isinstance(value, (list, tuple)) and value:
        value = value[0]["image"] if isinstance(value[0], dict) else value[0]
    if value is None:
        raise RequestError(
            _field(i, "image"), None, "a unit needs an image (this runtime has no img2img fallback)"
        )
    return decode_image(value, _field(i, "image"))


def _fit(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    if mode == 0:
        return image.resize((width, height), Image.Resampling.LANCZOS)
    k = (
        max(width / image.width, height / image.height)
        if mode == 1
        else min(width / image.width, height / image.height)
    )
    scaled = image.resize(
        (max(1, round(image.width * k)), max(1, round(image.height * k))), Image.Resampling.LANCZOS
    )
    canvas = Image.new("RGB", (width, height))
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def _in(value: float, default: float, bounds: tuple[float, float]) -> float:
    # As the extension: an out-of-range value (including -1, "unset") falls back to the default.
    return value if bounds[0] <= value <= bounds[1] else default


def control_spec(p: ParsedUnit, width: int, height: int) -> ControlSpec:
    """Run the unit's preprocessor and fit the map to ``width`` x ``height``."""
    pre = PREPROCESSORS[p.module]
    unit = p.unit
    res = int(unit.processor_res) if unit.processor_res > 0 else pre.resolution
    if unit.pixel_perfect and pre.resolution > 0:
        # Pixel perfect: the preprocessor runs at the size the map will be used at.
        k = (
            max(width / p.image.width, height / p.image.height)
            if p.resize_mode == 1
            else min(width / p.image.width, height / p.image.height)
        )
        res = round(min(p.image.size) * k)
    a = _in(unit.threshold_a, pre.threshold_a, pre.a_range)
    b = _in(unit.threshold_b, pre.threshold_b, pre.b_range)
    detected = pre.run(p.image, res, a, b)
    return ControlSpec(
        model=unit.model,
        image=_fit(detected.convert("RGB"), width, height, p.resize_mode),
        weight=unit.weight,
        guidance_start=unit.guidance_start,
        guidance_end=unit.guidance_end,
        guess_mode=p.control_mode == 2,
    )


def module_list() -> dict[str, Any]:
    """Only what runs here (the weight-needing ones would fail); sliders as the extension describes them."""
    detail: dict[str, Any] = {}
    for name, pre in PREPROCESSORS.items():
        sliders: list[dict[str, Any]] = []
        if pre.resolution > 0:
            sliders.append({"name": "Resolution", "value": pre.resolution, "min": 64, "max": 2048})
        for label, value, bounds in (
            ("Threshold A", pre.threshold_a, pre.a_range),
            ("Threshold B", pre.threshold_b, pre.b_range),
        ):
            if bounds != (0, 0):
                sliders.append({"name": label, "value": value, "min": bounds[0], "max": bounds[1]})
        detail[name] = {"model_free": name == "none", "sliders": sliders}
    return {"module_list": list(PREPROCESSORS), "module_detail": detail}
