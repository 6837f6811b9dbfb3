"""What a stable-diffusion-on-eks client reads of a task that came through ``/v1alpha1`` or ``/v1alpha2``.

Such a task carries ``compat`` (set by the API only). Its client expects, as the reference's queue agent
writes them (read in aws-solutions-library-samples/
guidance-for-asynchronous-inference-with-stable-diffusion-on-aws, ``src/backend/queue_agent``; no code of
it is used here):

- a ``.out`` JSON beside the images. SD WebUI tasks: ``{"images": [""], "parameters": {...}, "info": ""}``
  where ``parameters`` is the generation's parameters with ``id_task``, ``image_seed`` (the seeds, comma
  separated) and ``error_msg`` (``""``), or for an upscale ``{html_info, id_task, error_msg}``; a failure
  ``{id_task, status: 0, error_msg, reason}``. ComfyUI pipelines: ``{"code": 200}`` or ``{"code": 500}``.
  Easel names it ``<id>.out`` (deterministic, like every key it writes; the reference adds a random part).
- result message fields ``id``, ``result`` (true when succeeded), ``image_url`` (the images' s3 URIs),
  ``output_url`` (the ``.out`` URI) and ``context``, beside Easel's own task object fields.

``context`` is the one shared name: it stays the task object's (a JSON object or null, so webhook receivers
and subscribers that parse the task object keep working), and it is the client's own value whenever that
is an object (the usual case) or absent (``{}``, as the reference sends). A non-object context (the
samples' ``""``) stays at ``compat.context``, as sent.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from PIL import Image

from easel.contract import Task, TaskStatus, TaskType
from easel.contract.tasks import GenerationInput
from easel.naming import result_document_key, safe_output_prefix
from queue_agent.errors import InvalidMessage

_SEED = re.compile(r"(?:^|[\s,])Seed: (-?\d+)")
# Inputs A1111 does not echo back in ``parameters`` (it sets them to null): they would only bloat the file.
_NOT_ECHOED = ("init_images", "mask")


def check_prefix(task: Task) -> None:
    """Refuse (permanently, naming it) an ``output_prefix`` that could leave the tenant's prefix: the API
    never sends one, but a message published to the tasks topic directly is not checked by the API."""
    prefix = task.output_prefix
    if prefix is not None and not safe_output_prefix(prefix):
        raise InvalidMessage(
            f"output_prefix '{prefix[:80]}' must be 1-4 path segments of letters, digits, '_', '.', '-' "
            "(each starting with a letter or digit) and not 'inputs' or 'loras'"
        )


def has_document(task: Task) -> bool:
    """Whether the task's ``.out`` can be written: not when its prefix was refused (it failed for that)."""
    return task.output_prefix is None or safe_output_prefix(task.output_prefix)


def output_url(task: Task, bucket: str) -> str | None:
    if not has_document(task):
        return None
    return f"s3://{bucket}/{result_document_key(task.tenant, task.id, task.output_prefix)}"


def result_fields(task: Task, bucket: str) -> dict[str, Any]:
    """The reference's result message fields of a terminal compat task ({} for any other task)."""
    if task.compat is None or not task.status.terminal:
        return {}
    sent = task.compat.context
    context = sent if isinstance(sent, dict) else ({} if sent is None else task.context)
    return {
        "id": task.id,
        "result": task.status is TaskStatus.SUCCEEDED,
        "image_url": list(task.output.images) if task.output else [],
        "output_url": output_url(task, bucket),
        "context": context,
    }


def succeeded_document(task: Task, images: list[bytes]) -> dict[str, Any]:
    """The ``.out`` of a compat task whose ``images`` are about to be stored."""
    if task.task_type is TaskType.PIPELINE:
        return {"code": 200}
    parameters: dict[str, Any]
    if task.task_type is TaskType.UPSCALE:
        parameters = {"html_info": "", "id_task": task.id, "error_msg": ""}
    else:
        parameters = task.input.model_dump(mode="json")
        for name in _NOT_ECHOED:
            if name in parameters:
                parameters[name] = None
        seeds = image_seeds(images) or _requested_seeds(task)
        parameters.update(id_task=task.id, image_seed=",".join(str(s) for s in seeds), error_msg="")
    return {"images": [""], "parameters": parameters, "info": ""}


def failed_document(task: Task) -> dict[str, Any]:
    """The ``.out`` of a compat task that failed or was canceled (the tenant-readable error only)."""
    if task.task_type is TaskType.PIPELINE:
        return {"code": 500}
    error = f"{task.error.code}: {task.error.message}" if task.error else str(task.status)
    parameters = {"id_task": task.id, "status": 0, "error_msg": error, "reason": None}
    return {"images": [""], "parameters": parameters, "info": ""}


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def image_seeds(images: list[bytes]) -> list[int]:
    """Each image's seed from its A1111 infotext (PNG ``parameters`` chunk); [] unless every image has one."""
    seeds = []
    for data in images:
        try:
            with Image.open(io.BytesIO(data)) as img:
                text = img.info.get("parameters")
        except (OSError, ValueError):
            return []
        match = _SEED.search(text) if isinstance(text, str) else None
        if match is None:
            return []
        seeds.append(int(match.group(1)))
    return seeds


def _requested_seeds(task: Task) -> list[int]:
    """A1111's seeds of a batch from a fixed seed (seed, seed+1, ...); [] for a random one (-1)."""
    inp = task.input
    if not isinstance(inp, GenerationInput) or inp.seed < 0:
        return []
    return [inp.seed + n for n in range(inp.batch_size)]
