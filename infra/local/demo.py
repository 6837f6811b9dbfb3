"""``easel local demo``: two images through the real API path on a local stack with workers.

1. upload a small generated init image to ``s3://<outputs>/tenants/<tenant>/inputs/`` (boto3 -> moto)
2. submit one text-to-image and one image-to-image task (64x64, few steps) with the signed client SDK
3. wait (the caller passes its progress display), download the outputs, report tasks and timings
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.client import EaselClient
from easel.config import EaselConfig, ModelSpec
from easel.contract import TaskType
from easel.naming import input_prefix

Waiter = Callable[[EaselClient, list[str]], dict[str, dict[str, Any]]]
SIZE = 64
STEPS = 4


def tiny_png(width: int = SIZE, height: int = SIZE) -> bytes:
    """An RGB gradient PNG, written by hand so the demo needs no imaging library."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def upload_init_image(s3: Any, bucket: str, tenant: str, png: bytes) -> str:
    key = f"{input_prefix(tenant)}demo-init.png"
    s3.put_object(Bucket=bucket, Key=key, Body=png, ContentType="image/png")
    return f"s3://{bucket}/{key}"


def demo_model(config: EaselConfig, task_type: TaskType) -> ModelSpec:
    for model in config.models:
        if task_type in model.task_types:
            return model
    raise ValueError(f"no model in the config supports {task_type}")


def demo_requests(config: EaselConfig, init_uri: str) -> list[dict[str, Any]]:
    common = {"steps": STEPS, "width": SIZE, "height": SIZE, "seed": 42, "cfg_scale": 7.0}
    t2i = demo_model(config, TaskType.TEXT_TO_IMAGE)
    i2i = demo_model(config, TaskType.IMAGE_TO_IMAGE)
    return [
        {
            "task_type": "text-to-image",
            "model": t2i.name,
            "input": {"prompt": "a watercolor fox in a forest", **common},
            "context": {"demo": "text-to-image"},
        },
        {
            "task_type": "image-to-image",
            "model": i2i.name,
            "input": {
                "prompt": "the same scene at sunset",
                "init_images": [init_uri],
                "denoising_strength": 0.6,
                **common,
            },
            "context": {"demo": "image-to-image"},
        },
    ]


@dataclass
class DemoResult:
    tasks: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.tasks) and all(t.get("status") == "succeeded" for t in self.tasks)


def run_demo(
    *,
    client: EaselClient,
    s3: Any,
    config: EaselConfig,
    outputs_bucket: str,
    tenant: str,
    out_dir: Path,
    wait: Waiter,
    download: Callable[[EaselClient, dict[str, Any], Path], list[Path]],
) -> DemoResult:
    started = time.monotonic()
    init_uri = upload_init_image(s3, outputs_bucket, tenant, tiny_png())
    submitted = [client.submit(r) for r in demo_requests(config, init_uri)]
    submit_done = time.monotonic()
    final = wait(client, [t["id"] for t in submitted])
    wait_done = time.monotonic()
    tasks = [final[t["id"]] for t in submitted]
    result = DemoResult(tasks=tasks)
    for task in tasks:
        if task.get("status") == "succeeded":
            result.files.extend(download(client, task, out_dir))
    result.timings = {
        "submit_seconds": round(submit_done - started, 3),
        "wait_seconds": round(wait_done - submit_done, 3),
        "total_seconds": round(time.monotonic() - started, 3),
    }
    return result
