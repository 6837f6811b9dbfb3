"""Mixed batches (Easel): several txt2img requests that share one generation on the device.

``POST /easel/v1/txt2img-batch`` takes ``{"items": [<txt2img body>, ...]}``. The items may differ only in
what each image owns: ``prompt``, ``negative_prompt``, ``seed`` and ``batch_size`` (and the output format,
``send_images``, which do not touch the generation). Everything else (size, steps, sampler, schedule, CFG,
CLIP skip, eta, LoRAs and weights, model) must be equal, because the pipeline runs one denoising loop over
all images. Each image still gets its own CPU generator (item ``k``'s image ``i`` uses ``seed_k + i``), so
its noise is exactly the noise it gets when run alone; only batched kernels can differ in the last bits.

Each item is validated on its own: an invalid item, or one whose shape differs from the batch, is refused
with its own error (status, code, field) and the others still run. This module holds the pure part: which
features a batch refuses, and the shape two items must share.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from runtime_image.server.a1111 import Translated
from runtime_image.server.errors import NotFoundError, RequestError, RuntimeServerError
from runtime_image.server.pipelines import GenerationJob

MAX_ITEMS = 16  # requests in one batch
MAX_IMAGES = 16  # images in one batch (the sum of the items' batch_size)

# What each item owns; every other field of the job is the batch's shape.
PER_ITEM = ("prompt", "negative_prompt", "seed", "batch_size")


def refuse_unbatchable(tr: Translated) -> None:
    """Features that run passes of their own (or per-image inputs) cannot share one denoising loop."""
    job = tr.job
    checks: list[tuple[str, Any, bool]] = [
        ("n_iter", job.n_iter, job.n_iter != 1),
        ("enable_hr", True, job.hires is not None),
        ("refiner_checkpoint", job.refiner.model if job.refiner else None, job.refiner is not None),
        ("alwayson_scripts.controlnet", len(job.controls), bool(job.controls)),
        ("init_images", "...", job.init_image is not None),
    ]
    for field, value, bad in checks:
        if bad:
            raise RequestError(field, value, "not supported in a mixed batch; send it on its own")


def shape(tr: Translated) -> dict[str, Any]:
    """The fields every item of one batch must share (the job without its per-item fields)."""
    blank = dataclasses.replace(tr.job, prompt="", negative_prompt="", seed=0, batch_size=1)
    fields = {f.name: getattr(blank, f.name) for f in dataclasses.fields(GenerationJob)}
    for name in PER_ITEM:
        del fields[name]
    fields["sd_model_checkpoint"] = tr.model
    fields["restore"] = tr.restore
    return fields


def check_same_shape(first: Translated, other: Translated) -> None:
    """RequestError naming the first field in which ``other`` differs from the batch's first item."""
    a, b = shape(first), shape(other)
    for name, value in b.items():
        if a[name] != value:
            raise RequestError(name, _show(value), f"differs from the batch's first item ({_show(a[name])})")


def _show(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return getattr(value, "name", repr(value))
    if isinstance(value, tuple):
        return [_show(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ItemError:
    """One item's refusal, as the http layer reports it."""

    status: int
    error: RuntimeServerError

    def body(self) -> dict[str, Any]:
        exc = self.error
        out: dict[str, Any] = {"status": self.status, "error": exc.code, "detail": str(exc)}
        if isinstance(exc, RequestError):
            out["field"] = exc.field
        if isinstance(exc, NotFoundError):
            out[exc.kind] = exc.name
        return out
