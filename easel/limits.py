"""Config-driven limits on a validated request (the static rules live in the contract)."""

from __future__ import annotations

import json

from easel.config import EaselConfig, Limits
from easel.contract.pipeline import PipelineInput, check_workflow
from easel.contract.tasks import GenerationInput, TaskRequest, TrainLoraInput
from easel.errors import FieldError


def check_limits(request: TaskRequest, limits: Limits) -> None:
    """Raise :class:`FieldError` naming the first field over its configured limit."""
    inp = request.input
    if isinstance(inp, GenerationInput):
        _max("input.prompt", len(inp.prompt), limits.max_prompt_chars, "characters")
        _max("input.negative_prompt", len(inp.negative_prompt), limits.max_prompt_chars, "characters")
        _max("input.width", inp.width, limits.max_width, "pixels")
        _max("input.height", inp.height, limits.max_height, "pixels")
        _max("input.steps", inp.steps, limits.max_steps, "steps")
        _max("input.batch_size", inp.batch_size, limits.max_batch_size, "images")
        hires = inp.hires_size()
        if hires is not None:
            # The final (upscaled) size is what the GPU holds: it obeys the same limits as width/height.
            field = "input.hr_resize_x" if inp.hr_resize_x or inp.hr_resize_y else "input.hr_scale"
            _max(field, hires[0], limits.max_width, "pixels wide after the hires fix")
            _max(field, hires[1], limits.max_height, "pixels high after the hires fix")
    elif isinstance(inp, TrainLoraInput):
        _max("input.instance_prompt", len(inp.instance_prompt), limits.max_prompt_chars, "characters")
        _max("input.steps", inp.steps, limits.max_train_steps, "steps")
        _max("input.images", len(inp.images), limits.max_train_images, "images")
    if request.context is not None:
        size = len(json.dumps(request.context, separators=(",", ":")).encode())
        _max("context", size, limits.max_context_bytes, "bytes")


def check_model(request: TaskRequest, config: EaselConfig) -> str:
    """Return the runtime serving the request's model, or raise naming ``model``."""
    spec = config.model(request.model)
    if spec is None:
        known = ", ".join(m.name for m in config.models)
        raise FieldError("model", f"unknown model '{request.model}'; known models: {known}")
    runtime = config.runtime(spec.runtime)
    if request.task_type not in spec.task_types:
        served = ", ".join(str(t) for t in spec.task_types)
        raise FieldError(
            "task_type",
            f"model '{spec.name}' runs on a {runtime.kind} runtime and supports {served}, "
            f"not '{request.task_type}'",
        )
    if isinstance(request.input, PipelineInput):
        rules = runtime.pipeline
        check_workflow(
            request.input.workflow,
            max_nodes=rules.max_nodes,
            refused=rules.refused_node_types,
            runtime=runtime.name,
        )
    return spec.runtime


def _max(field: str, value: int, limit: int, unit: str) -> None:
    if value > limit:
        raise FieldError(field, f"{value} {unit} is over the limit of {limit}")
