"""The ``content`` of the reference's ``extra-single-image`` and ``pipeline`` tasks as Easel inputs.

``extra-single-image`` is an SD WebUI ``/sdapi/v1/extra-single-image`` body; it becomes an ``upscale`` input
with SD WebUI's leniency (:mod:`lambdas.api.sdwebui`): what Easel implements maps (``upscaler_1`` ->
``upscaler``, ``upscaling_resize``, and ``upscaling_resize_w``/``_h`` when ``resize_mode`` is 1,
``upscaling_crop``, ``image``), what cannot change the pixels is ignored (``show_extras_results``,
``upscale_first`` - the order only matters with face restoration), and the rest is accepted at its "off"
value only (face restoration, a second upscaler blended in); anything else is a 400 naming the field.
SD WebUI's own defaults apply to what is left out (``upscaler_1`` "None", ``upscaling_resize`` 2).

``pipeline`` content is a ComfyUI workflow in API format, taken as is.
"""

from __future__ import annotations

from typing import Any

from easel.config import EaselConfig, ModelSpec, RuntimeSpec
from easel.contract import TaskType
from easel.errors import FieldError
from lambdas.api.sdwebui import Content

IGNORED = frozenset({"show_extras_results", "upscale_first"})
# field -> the values accepted: SD WebUI's defaults, the "off" values of what Easel does not do.
OFF: dict[str, tuple[Any, ...]] = {
    "gfpgan_visibility": (None, 0),
    "codeformer_visibility": (None, 0),
    "extras_upscaler_2_visibility": (None, 0),
}
MAPPED = frozenset(
    {
        "image",
        "resize_mode",
        "upscaler_1",
        "upscaler_2",
        "upscaling_resize",
        "upscaling_resize_w",
        "upscaling_resize_h",
        "upscaling_crop",
        "codeformer_weight",  # read only while codeformer_visibility > 0, which is refused
    }
)
# Easel's upscale input field -> the client's name (errors of the input checks name the client's field).
INPUT_NAMES = {"upscaler": "upscaler_1"}


def _path(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def extras(content: Any, base: str) -> Content:
    """An ``extra-single-image`` body as an upscale task's ``input``; errors name fields under ``base``."""
    if not isinstance(content, dict):
        raise FieldError(base, "must be a JSON object")
    for name, value in content.items():
        field = _path(base, name[:64])
        if name in OFF and not _is_off(value, OFF[name]):
            what = "a second upscaler blended in" if "upscaler_2" in name else "face restoration"
            raise FieldError(field, f"{what} is not supported; must be 0")
        if name not in MAPPED | IGNORED | OFF.keys():
            raise FieldError(field, "unknown field")
    if not content.get("image"):
        raise FieldError(_path(base, "image"), "field required (an s3:// URI, an https URL or base64)")
    mode = content.get("resize_mode", 0)
    if mode not in (0, 1) or isinstance(mode, bool):
        raise FieldError(_path(base, "resize_mode"), "must be 0 (scale by upscaling_resize) or 1 (to a size)")
    inp: dict[str, Any] = {"image": content["image"], "upscaler": content.get("upscaler_1", "None")}
    for name in ("upscaling_resize", "upscaling_crop"):
        if content.get(name) is not None:
            inp[name] = content[name]
    if mode == 1:
        inp["upscaling_resize_w"] = content.get("upscaling_resize_w", 512)
        inp["upscaling_resize_h"] = content.get("upscaling_resize_h", 512)
    return Content(input=inp, checkpoint=None, checkpoint_field=_path(base, "image"), routing={})


def _is_off(value: Any, accepted: tuple[Any, ...]) -> bool:
    return not isinstance(value, bool) and any(value == a and type(value) is not str for a in accepted)


def pipeline(content: Any, base: str) -> Content:
    """A ComfyUI workflow (the whole ``content``) as the ``input`` of a pipeline task."""
    if not isinstance(content, dict):
        raise FieldError(base, "must be a JSON object (a ComfyUI workflow in API format)")
    checkpoints = [
        node["inputs"]["ckpt_name"]
        for node in content.values()
        if isinstance(node, dict)
        and isinstance(node.get("inputs"), dict)
        and isinstance(node["inputs"].get("ckpt_name"), str)
    ]
    return Content(
        input={"workflow": content},
        checkpoint=checkpoints[0] if len(set(checkpoints)) == 1 else None,
        checkpoint_field=base,
        routing={},
    )


def pipeline_model(config: EaselConfig, runtime: RuntimeSpec, content: Content, field: str) -> ModelSpec:
    """The runtime's pipeline model: its only one, else the one its checkpoint loader names. The workflow
    names its own checkpoint for ComfyUI; the Easel model only routes the task to the pool."""
    served = config.models_of(runtime.name)
    served = [m for m in served if TaskType.PIPELINE in m.task_types] or served
    if len(served) == 1:
        return served[0]
    matches = [m for m in served if content.checkpoint and m.answers_to(content.checkpoint)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(m.name for m in served) or "none"
    raise FieldError(
        field,
        f"runtime '{runtime.name}' serves several pipeline models ({known}); "
        "name one in a single CheckpointLoaderSimple ckpt_name",
    )
