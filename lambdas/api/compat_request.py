"""What /v1alpha1 and /v1alpha2 share: resolving runtime, checkpoint, task type, prefix and context of a
stable-diffusion-on-eks request into a :class:`TaskRequest`, with errors named by the client's own paths."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from easel.config import EaselConfig, ModelSpec, RuntimeSpec
from easel.contract import CompatInfo, TaskRequest, TaskType, parse_task_request
from easel.contract.tasks import OUTPUT_PREFIX_PATTERN
from easel.errors import FieldError
from easel.limits import check_limits, check_model
from lambdas.api.sdwebui import Content

SUPPORTED = (TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE)
# Task types of the reference that need a runtime kind Easel does not configure here.
_NEEDS = {
    "extra-single-image": "an upscale runtime (SD WebUI extras)",
    "extra-batch-images": "an upscale runtime (SD WebUI extras)",
    "pipeline": "a ComfyUI runtime (kind comfyui)",
}


@dataclass(frozen=True)
class Fields:
    """The client's names of the fields in errors (``task.metadata.id``, ``alwayson_scripts.id_task``)."""

    id: str
    task_type: str
    runtime: str
    prefix: str
    context: str
    content: str


def task_type(value: Any, runtime: str, fields: Fields) -> TaskType:
    if isinstance(value, str) and value in _NEEDS:
        raise FieldError(
            fields.task_type, f"'{value}' needs {_NEEDS[value]}; runtime '{runtime}' cannot run it"
        )
    if value not in [str(t) for t in SUPPORTED]:
        raise FieldError(fields.task_type, "must be 'text-to-image' or 'image-to-image'")
    return TaskType(value)


def runtime_named(config: EaselConfig, value: Any, field: str) -> RuntimeSpec:
    spec = config.runtime_named(value) if isinstance(value, str) else None
    if spec is None:
        known = ", ".join(n for r in config.runtimes for n in (r.name, *r.aliases))
        raise FieldError(field, f"unknown runtime '{str(value)[:64]}'; known runtimes: {known}")
    return spec


def model_for(config: EaselConfig, runtime: RuntimeSpec | None, content: Content) -> ModelSpec:
    """The registered model the checkpoint names (among ``runtime``'s models when given)."""
    served = config.models_of(runtime.name) if runtime else config.models
    if content.checkpoint is None:
        if runtime is not None and len(served) == 1:
            return served[0]
        raise FieldError(content.checkpoint_field, "name the checkpoint (sd_model_checkpoint)")
    matches = [m for m in served if m.answers_to(content.checkpoint)]
    if len(matches) == 1:
        return matches[0]
    where = f"runtime '{runtime.name}'" if runtime else "the model registry"
    if not matches:
        known = ", ".join(m.name for m in served)
        raise FieldError(
            content.checkpoint_field,
            f"{where} has no checkpoint '{content.checkpoint[:128]}'; known models: {known}",
        )
    raise FieldError(
        content.checkpoint_field, f"'{content.checkpoint[:128]}' names several models in {where}"
    )


def output_prefix(value: Any, field: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise FieldError(field, "must be a string")
    prefix = value.strip("/")
    if not re.match(OUTPUT_PREFIX_PATTERN, prefix):
        raise FieldError(
            field,
            "must be 1-4 path segments of letters, digits, '_', '.', '-' (kept inside your tenant prefix)",
        )
    return prefix


def build(
    *,
    api: Literal["v1alpha1", "v1alpha2"],
    config: EaselConfig,
    fields: Fields,
    task_id: Any,
    kind: TaskType,
    runtime_sent: str,
    model: ModelSpec,
    content: Content,
    prefix: str | None,
    context: Any,
    checkpoint: str | None = None,
) -> TaskRequest:
    inp = dict(content.input)
    link = content.routing.get("image_link")
    if kind is TaskType.IMAGE_TO_IMAGE and link:
        # As the reference agent does: image_link replaces init_images.
        inp["init_images"] = [link]
    size = len(json.dumps(context, separators=(",", ":"), default=str).encode())
    if size > config.api.limits.max_context_bytes:
        raise FieldError(
            fields.context, f"{size} bytes is over the limit of {config.api.limits.max_context_bytes}"
        )
    request: dict[str, Any] = {
        "id": task_id,
        "task_type": str(kind),
        "model": model.name,
        "input": inp,
        "output_prefix": prefix,
    }
    if isinstance(context, dict) and context:
        request["context"] = context
    elif context not in (None, "", [], {}):
        # Easel's task context is an object (webhooks carry it); the value as sent stays in `compat`.
        request["context"] = {api: context}
    try:
        parsed = parse_task_request(request)
        # Submit checks these again; here the errors can still be named by the client's paths.
        check_model(parsed, config)
        check_limits(parsed, config.api.limits)
    except FieldError as exc:
        raise _renamed(exc, fields, content) from None
    info = CompatInfo(api=api, runtime=runtime_sent, checkpoint=checkpoint, context=context)
    return parsed.model_copy(update={"compat": info})


def _renamed(exc: FieldError, fields: Fields, content: Content) -> FieldError:
    names = {
        "id": fields.id,
        "task_type": fields.task_type,
        "context": fields.context,
        "model": content.checkpoint_field,
        "input": fields.content,
        "output_prefix": fields.prefix,
    }

    def rename(field: str) -> str:
        head, dot, rest = field.partition(".")
        new = names.get(head, head)
        if head == "input" and rest:
            return f"{new}.{rest}" if new else rest
        return new + (dot + rest if rest else "")

    errors = [{**e, "field": rename(e["field"])} for e in exc.errors]
    return FieldError(rename(exc.field), exc.reason, errors)


def input_renamer(
    base: str, link_field: str, has_link: Callable[[], bool]
) -> Callable[[FieldError], FieldError]:
    """Rename ``input.*`` errors of the input checks to the client's paths (``base`` = content path);
    the init image came from ``alwayson_scripts.image_link`` when ``has_link()``."""

    def one(name: str) -> str:
        if name.startswith("input.init_images") and has_link():
            return link_field
        rest = name.removeprefix("input.")
        return f"{base}.{rest}" if base else rest

    def rename(exc: FieldError) -> FieldError:
        return FieldError(one(exc.field), exc.reason, [{**e, "field": one(e["field"])} for e in exc.errors])

    return rename
