"""Compatibility with the stable-diffusion-on-eks ``v1alpha2`` request shape (``POST /v1alpha2``).

    {"task": {"metadata": {"id", "runtime", "tasktype", "prefix"?, "context"?},
              "content":  {<a full SD WebUI txt2img/img2img body, see lambdas.api.sdwebui; an SD WebUI
                            extra-single-image body or a ComfyUI workflow, see lambdas.api.compat_content>}}}

``tasktype``: text-to-image, image-to-image, extra-single-image (an Easel ``upscale`` task) or pipeline.

``runtime`` is a runtime name or one of its ``aliases`` (config; one alias may name a ComfyUI pool and an
SD WebUI-dialect pool, the task type picks); the model is the checkpoint named in
``content`` (A1111 title, file name, or Easel model name; see :meth:`ModelSpec.answers_to`) or the
runtime's only model. ``prefix`` places outputs at ``tenants/<tenant>/<prefix>/<id>/`` (never outside the
tenant's prefix). ``context`` (any JSON) is echoed in result messages. Errors name the field by its
v1alpha2 path (``task.content.steps``).
"""

from __future__ import annotations

from typing import Any

from easel.config import EaselConfig
from easel.contract import TaskRequest, TaskType
from easel.errors import FieldError
from lambdas.api import compat_content, compat_request, sdwebui

FIELDS = compat_request.Fields(
    id="task.metadata.id",
    task_type="task.metadata.tasktype",
    runtime="task.metadata.runtime",
    prefix="task.metadata.prefix",
    context="task.metadata.context",
    content="task.content",
)


def normalize(body: Any, config: EaselConfig) -> TaskRequest:
    task = _object(body, "body", required={"task"}, optional=set()).get("task")
    task = _object(task, "task", required={"metadata", "content"}, optional=set())
    meta = _object(
        task["metadata"],
        "task.metadata",
        required={"id", "runtime", "tasktype"},
        optional={"prefix", "context"},
    )
    runtimes = compat_request.runtime_named(config, meta["runtime"], FIELDS.runtime)
    kind = compat_request.task_type(meta["tasktype"], FIELDS)
    runtime = compat_request.runtime_for(runtimes, kind, meta["runtime"], FIELDS)
    input_names: dict[str, str] = {}
    if kind is TaskType.UPSCALE:
        content = compat_content.extras(task["content"], FIELDS.content)
        model = compat_request.model_for(config, runtime, content, kind)
        input_names = compat_content.INPUT_NAMES
    elif kind is TaskType.PIPELINE:
        content = compat_content.pipeline(task["content"], FIELDS.content)
        model = compat_content.pipeline_model(config, runtime, content, FIELDS.runtime)
        input_names = {"workflow": ""}  # the content is the workflow: its nodes are named task.content.<id>
    else:
        content = sdwebui.split(task["content"], FIELDS.content)
        model = compat_request.model_for(config, runtime, content, kind)
    return compat_request.build(
        api="v1alpha2",
        config=config,
        fields=FIELDS,
        task_id=meta["id"],
        kind=kind,
        runtime_sent=meta["runtime"],
        model=model,
        content=content,
        prefix=compat_request.output_prefix(meta.get("prefix"), FIELDS.prefix),
        context=meta.get("context"),
        input_names=input_names,
    )


def _object(value: Any, field: str, *, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, "must be a JSON object")
    for key in sorted(required):
        if key not in value:
            raise FieldError(_path(field, key), "field required")
    for key in value:
        if key not in required | optional:
            raise FieldError(_path(field, key), "unknown field")
    return value


def _path(field: str, key: str) -> str:
    segment = key[:64] or '""'  # an empty key still names a field
    return segment if field == "body" else f"{field}.{segment}"
