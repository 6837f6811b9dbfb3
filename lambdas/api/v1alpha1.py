"""Compatibility with the stable-diffusion-on-eks ``v1alpha1`` request shape (``POST /v1alpha1``).

The body is an SD WebUI body (see :mod:`lambdas.api.sdwebui`) whose ``alwayson_scripts`` carry the routing:
``task`` (task type), ``id_task`` (task id), ``sd_model_checkpoint`` (required: it picks the model and so
the runtime), ``save_dir`` (output prefix, inside the tenant's prefix), ``image_link`` (init image of
image-to-image) and ``uid`` (ignored). Errors name fields by their path in this body.
"""

from __future__ import annotations

from typing import Any

from easel.config import EaselConfig
from easel.contract import TaskRequest
from easel.errors import FieldError
from lambdas.api import compat_request, sdwebui

FIELDS = compat_request.Fields(
    id="alwayson_scripts.id_task",
    task_type="alwayson_scripts.task",
    runtime="alwayson_scripts.sd_model_checkpoint",
    prefix="alwayson_scripts.save_dir",
    context="context",
    content="",
)


def normalize(body: Any, config: EaselConfig) -> TaskRequest:
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    scripts = body.get("alwayson_scripts")
    if not isinstance(scripts, dict):
        raise FieldError(
            "alwayson_scripts", "field required (a JSON object with task, id_task, sd_model_checkpoint)"
        )
    for key in ("task", "id_task", "sd_model_checkpoint"):
        if scripts.get(key) in (None, ""):
            raise FieldError(f"alwayson_scripts.{key}", "field required")
    content = sdwebui.split(body, "")
    kind = compat_request.task_type(scripts["task"], FIELDS, compat_request.V1ALPHA1_TASK_TYPES)
    model = compat_request.model_for(config, None, content, kind)
    return compat_request.build(
        api="v1alpha1",
        config=config,
        fields=FIELDS,
        task_id=scripts["id_task"],
        kind=kind,
        runtime_sent=model.runtime,
        model=model,
        content=content,
        prefix=compat_request.output_prefix(scripts.get("save_dir"), FIELDS.prefix),
        context=None,
        checkpoint=content.checkpoint,
    )
