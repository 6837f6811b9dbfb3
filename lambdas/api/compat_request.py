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
from easel.kinds import profile
from easel.limits import check_limits, check_model
from lambdas.api.sdwebui import Content

# The reference's task types -> Easel's; v1alpha1 carries generations only (as the reference's v1alpha1).
TASK_TYPES = {
    "text-to-image": TaskType.TEXT_TO_IMAGE,
    "image-to-image": TaskType.IMAGE_TO_IMAGE,
    "extra-single-image": TaskType.UPSCALE,
    "pipeline": TaskType.PIPELINE,
}
V1ALPHA1_TASK_TYPES = ("text-to-image", "image-to-image")


@dataclass(frozen=True)
class Fields:
    """The client's names of the fields in errors (``task.metadata.id``, ``alwayson_scripts.id_task``)."""

    id: str
    task_type: str
    runtime: str
    prefix: str
    context: str
    content: str


def task_type(value: Any, fields: Fields, allowed: tuple[str, ...] = tuple(TASK_TYPES)) -> TaskType:
    if value in ("extra-batch-images", "extra-batch-image"):
        reason = f"'{value}' is not supported; send one extra-single-image per image"
        raise FieldError(fields.task_type, reason)
    if not isinstance(value, str) or value not in allowed:
        hint = "" if allowed == tuple(TASK_TYPES) else " (extra-single-image and pipeline: use /v1alpha2)"
        raise FieldError(fields.task_type, f"must be one of: {', '.join(allowed)}{hint}")
    return TASK_TYPES[value]


def runtime_named(config: EaselConfig, value: Any, field: str) -> list[RuntimeSpec]:
    """The runtimes ``value`` names (a runtime name or alias; one per kind of task), or a 400."""
    specs = config.runtimes_named(value) if isinstance(value, str) else []
    if not specs:
        known = ", ".join(dict.fromkeys(n for r in config.runtimes for n in (r.name, *r.aliases)))
        raise FieldError(field, f"unknown runtime '{str(value)[:64]}'; known runtimes: {known}")
    return specs


def runtime_for(specs: list[RuntimeSpec], kind: TaskType, sent: str, fields: Fields) -> RuntimeSpec:
    """The one of ``specs`` whose kind runs ``kind`` tasks; else a 400 naming the runtime."""
    for spec in specs:
        if kind in profile(spec.kind).task_types:
            return spec
    pools = ", ".join(f"'{s.name}' (kind {s.kind})" for s in specs)
    needs = "a comfyui runtime" if kind is TaskType.PIPELINE else "a diffusers or sdwebui runtime"
    reason = f"runtime '{sent[:64]}' is {pools}, which cannot run it; it needs {needs}"
    raise FieldError(fields.task_type, reason)


def model_for(
    config: EaselConfig, runtime: RuntimeSpec | None, content: Content, kind: TaskType | None = None
) -> ModelSpec:
    """The registered model the checkpoint names (among ``runtime``'s models when given; among those that
    run ``kind`` tasks when some do)."""
    served = config.models_of(runtime.name) if runtime else config.models
    if kind is not None:
        served = [m for m in served if kind in m.task_types] or served
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
    input_names: dict[str, str] | None = None,
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
        raise _renamed(exc, fields, content, input_names or {}) from None
    info = CompatInfo(api=api, runtime=runtime_sent, checkpoint=checkpoint, context=context)
    return parsed.model_copy(update={"compat": info})


def _renamed(exc: FieldError, fields: Fields, content: Content, input_names: dict[str, str]) -> FieldError:
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
            first, _, tail = rest.partition(".")
            first = input_names.get(first, first)  # the client's name ("" when the content is the value)
            return ".".join(p for p in (new, first, tail) if p) or "body"
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
