"""Runtime kinds (config ``runtimes[].kind``): what each runs, how it is probed and where its models live.

One table, read by the config checks (task types per kind), the CDK app (chart values per pool) and the
docs; the chart's helpers hold the same defaults so it renders on its own (tests/charts compares the two).

    kind       runs                              probe (startup, readiness)  task types
    diffusers  the Easel runtime                 GET /health                 text-to-image, image-to-image,
               (easel runtime serve)                                         train-lora, upscale
    sdwebui    a stock AUTOMATIC1111 SD WebUI,   GET /sdapi/v1/sd-models     text-to-image, image-to-image,
               --api --nowebui (no /health, no                               upscale (extras)
               /internal/ping without the UI)
    comfyui    a stock ComfyUI                   GET /system_stats           pipeline

Every kind listens on port 8080 inside the pod (the agent calls ``http://127.0.0.1:8080``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from easel.contract.tasks import TaskType

RuntimeKind = Literal["diffusers", "sdwebui", "comfyui"]
PORT = 8080


@dataclass(frozen=True)
class ModelMount:
    """A directory of the models bucket (``sub_path`` under its prefix), read-only at ``mount_path``."""

    sub_path: str
    mount_path: str


@dataclass(frozen=True)
class KindProfile:
    kind: RuntimeKind
    task_types: frozenset[TaskType]
    health_path: str
    # Seconds the runtime may take to start (image entrypoint, model load) before the startup probe fails.
    startup_seconds: int
    # Arguments given to the image's entrypoint (stock images); the diffusers command is built by the chart.
    args: tuple[str, ...]
    # Where the models bucket appears; an empty sub_path mounts the whole bucket prefix.
    mounts: tuple[ModelMount, ...]
    # Stock images write next to their code (config, caches, repositories): a read-only root would fail them.
    read_only_root: bool
    lora: str
    cancel: str
    progress: str


SDWEBUI_DATA = "/data"
COMFYUI_BASE = "/data"

PROFILES: dict[str, KindProfile] = {
    "diffusers": KindProfile(
        kind="diffusers",
        task_types=frozenset(
            {TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE, TaskType.TRAIN_LORA, TaskType.UPSCALE}
        ),
        health_path="/health",
        startup_seconds=1200,
        args=(),
        mounts=(ModelMount("", "/models"),),
        read_only_root=True,
        lora="public (models bucket loras/) and private per tenant (request field)",
        cancel="interrupt between steps",
        progress="step n of N (GET /sdapi/v1/progress)",
    ),
    "sdwebui": KindProfile(
        kind="sdwebui",
        task_types=frozenset({TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE, TaskType.UPSCALE}),
        health_path="/sdapi/v1/sd-models",
        startup_seconds=1800,
        # --data-dir: models/, config.json and outputs under one writable root; the model dirs below are
        # mounted over it read-only. --port: the agent's 127.0.0.1:8080 (api-only defaults to 7861).
        args=(
            "--api",
            "--nowebui",
            "--listen",
            "--port",
            str(PORT),
            "--data-dir",
            SDWEBUI_DATA,
            "--skip-prepare-environment",
            "--no-download-sd-model",
        ),
        mounts=(
            ModelMount("Stable-diffusion", f"{SDWEBUI_DATA}/models/Stable-diffusion"),
            ModelMount("Lora", f"{SDWEBUI_DATA}/models/Lora"),
            ModelMount("ControlNet", f"{SDWEBUI_DATA}/models/ControlNet"),
            ModelMount("ESRGAN", f"{SDWEBUI_DATA}/models/ESRGAN"),
        ),
        read_only_root=False,
        lora="public: <lora:name:weight> prompt tags, files in models/Lora (no private LoRAs)",
        cancel="POST /sdapi/v1/interrupt (also /sdapi/v1/skip for one image of a batch)",
        progress="fraction (GET /sdapi/v1/progress)",
    ),
    "comfyui": KindProfile(
        kind="comfyui",
        task_types=frozenset({TaskType.PIPELINE}),
        health_path="/system_stats",
        startup_seconds=1200,
        args=("--listen", "0.0.0.0", "--port", str(PORT), "--base-directory", COMFYUI_BASE),
        mounts=(
            ModelMount("checkpoints", f"{COMFYUI_BASE}/models/checkpoints"),
            ModelMount("loras", f"{COMFYUI_BASE}/models/loras"),
            ModelMount("controlnet", f"{COMFYUI_BASE}/models/controlnet"),
            ModelMount("upscale_models", f"{COMFYUI_BASE}/models/upscale_models"),
            ModelMount("vae", f"{COMFYUI_BASE}/models/vae"),
        ),
        read_only_root=False,
        lora="whatever the workflow's LoraLoader nodes name, files in models/loras",
        cancel="POST /interrupt while running, POST /queue {delete} while queued",
        progress="node progress from the /ws websocket (polling /history when it drops)",
    ),
}


def profile(kind: str) -> KindProfile:
    return PROFILES[kind]
