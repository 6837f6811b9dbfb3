"""Cross-task batching: which prepared tasks may share one generation, and how a batch is taken (pure).

Two tasks may share one denoising loop on the runtime only when everything but what each image owns is
equal. :func:`batch_key` is that rule: the task type, the model (name and store path) and every field of
the task input except ``prompt``, ``negative_prompt``, ``seed`` and ``batch_size``, with LoRA names as the
runtime will see them (a tenant's private adapter is ``<tenant>/<name>``, so two tenants' same-named private
LoRAs never share). The key is built from the whole input model, so a field added to the contract later is
part of it by default: the safe direction (it can only split batches, never merge incompatible tasks).

Only text-to-image is batched: image-to-image carries per-task init images and train-lora is no generation.

:func:`take_batch` picks, from the prepared jobs in run order, the head plus the later jobs of the head's
key while their images fit ``max_images``. The wait for more (bounded by ``max_wait_seconds``) is the
prefetcher's: it waits only while received messages are still being prepared, so a lone task never waits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from easel.contract import QueueMessage, TaskType
from easel.contract.tasks import GenerationInput

BatchKey = tuple[str, str, str, str]
# What each task of a batch owns; every other input field must be equal.
PER_TASK = frozenset({"prompt", "negative_prompt", "seed", "batch_size"})

J = TypeVar("J")


@dataclass(frozen=True)
class BatchPolicy:
    """``max_images`` 1 turns batching off; ``max_wait_seconds`` bounds the wait for compatible messages
    that are already received and being prepared."""

    max_images: int = 1
    max_wait_seconds: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.max_images > 1


def batch_key(
    message: QueueMessage, *, store_path: str, lora_names: Mapping[str, str] | None = None
) -> BatchKey | None:
    """The key tasks must share to generate as one batch; None when the task never batches."""
    inp = message.input
    if message.task_type is not TaskType.TEXT_TO_IMAGE or not isinstance(inp, GenerationInput):
        return None
    if inp.init_images:
        return None
    # Hires fix, ControlNet units and non-PNG encodings take the runtime's single-task path only.
    if inp.enable_hr or inp.controlnet or inp.output_format != "png":
        return None
    names = lora_names or {}
    shared = {k: v for k, v in inp.model_dump(mode="json").items() if k not in PER_TASK}
    shared["loras"] = [{"name": names.get(lo.name, lo.name), "weight": lo.weight} for lo in inp.loras]
    return (str(message.task_type), message.model, store_path, json.dumps(shared, sort_keys=True))


def images_of(message: QueueMessage) -> int:
    """Images a task adds to a batch."""
    inp = message.input
    return inp.batch_size if isinstance(inp, GenerationInput) else 1


def take_batch(
    head_key: Hashable | None,
    head_images: int,
    candidates: Sequence[J],
    *,
    key: Callable[[J], Hashable | None],
    images: Callable[[J], int],
    max_images: int,
) -> list[J]:
    """The candidates (in run order) that join a batch headed by a job of ``head_key``: same key, and
    while the images so far fit ``max_images``. A task that does not fit is skipped, not reordered
    before: a smaller later one may still join."""
    if head_key is None:
        return []
    room = max_images - head_images
    taken: list[J] = []
    for c in candidates:
        if room <= 0:
            break
        n = images(c)
        if key(c) == head_key and n <= room:
            taken.append(c)
            room -= n
    return taken
