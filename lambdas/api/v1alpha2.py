"""Compatibility with the stable-diffusion-on-eks ``v1alpha2`` request shape (``POST /v1alpha2``).

    {"task": {"metadata": {"id", "runtime", "tasktype", "prefix", "context"?},
              "content":  {<SD WebUI txt2img/img2img fields>, "alwayson_scripts": {"sd_model_checkpoint"?}}}}

Normalized to a :class:`TaskRequest`: ``id`` -> id, ``tasktype`` -> task_type, the model is
``alwayson_scripts.sd_model_checkpoint`` (a model name or store path of that runtime) or the runtime's only
model, the content fields -> ``input``. ``prefix`` is accepted and ignored: outputs always land under the
tenant's prefix. A non-object ``context`` is kept as ``{"v1alpha2": <value>}``. Errors name the field by its
v1alpha2 path (``task.content.steps``).
"""

from __future__ import annotations

from typing import Any

from easel.config import EaselConfig, ModelSpec
from easel.contract import TaskRequest, TaskType, parse_task_request
from easel.errors import FieldError

_TASK_TYPES = (TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE)
_CKPT = "task.content.alwayson_scripts.sd_model_checkpoint"
_RENAME = {
    "id": "task.metadata.id",
    "task_type": "task.metadata.tasktype",
    "context": "task.metadata.context",
    "model": _CKPT,
    "input": "task.content",
}


def normalize(body: Any, config: EaselConfig) -> TaskRequest:
    task = _object(body, "body", required={"task"}, optional=set()).get("task")
    task = _object(task, "task", required={"metadata", "content"}, optional=set())
    meta = _object(
        task["metadata"],
        "task.metadata",
        required={"id", "runtime", "tasktype"},
        optional={"prefix", "context"},
    )
    content = dict(_object(task["content"], "task.content", required=set(), optional=None))
    runtime = meta["runtime"]
    if not isinstance(runtime, str) or runtime not in {r.name for r in config.runtimes}:
        known = ", ".join(r.name for r in config.runtimes)
        raise FieldError("task.metadata.runtime", f"unknown runtime '{runtime}'; known runtimes: {known}")
    if meta["tasktype"] not in [str(t) for t in _TASK_TYPES]:
        raise FieldError("task.metadata.tasktype", "must be 'text-to-image' or 'image-to-image'")
    scripts = _object(
        content.pop("alwayson_scripts", {}),
        "task.content.alwayson_scripts",
        required=set(),
        optional={"sd_model_checkpoint"},
    )
    model = _model(config, runtime, scripts.get("sd_model_checkpoint"))
    context = meta.get("context")
    if context is not None and not isinstance(context, dict):
        context = {"v1alpha2": context}
    request = {"id": meta["id"], "task_type": meta["tasktype"], "model": model.name, "input": content}
    if context not in (None, "", {"v1alpha2": ""}):
        request["context"] = context
    try:
        return parse_task_request(request)
    except FieldError as exc:
        raise _renamed(exc) from None


def _object(value: Any, field: str, *, required: set[str], optional: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, "must be a JSON object")
    for key in sorted(required):
        if key not in value:
            raise FieldError(f"{field}.{key}" if field != "body" else key, "field required")
    if optional is not None:
        for key in value:
            if key not in required | optional:
                raise FieldError(f"{field}.{key}" if field != "body" else key, "unknown field")
    return value


def _model(config: EaselConfig, runtime: str, checkpoint: Any) -> ModelSpec:
    served = config.models_of(runtime)
    if checkpoint is None:
        if len(served) == 1:
            return served[0]
        raise FieldError(_CKPT, f"runtime '{runtime}' serves several models; name one")
    for spec in served:
        if checkpoint in (spec.name, spec.store_path):
            return spec
    known = ", ".join(m.name for m in served)
    raise FieldError(_CKPT, f"runtime '{runtime}' has no model '{checkpoint}'; known models: {known}")


def _renamed(exc: FieldError) -> FieldError:
    def rename(field: str) -> str:
        head, dot, rest = field.partition(".")
        return _RENAME.get(head, head) + (dot + rest if rest else "")

    errors = [{**e, "field": rename(e["field"])} for e in exc.errors]
    return FieldError(rename(exc.field), exc.reason, errors)
