"""Backends of the agent conformance suite: one runtime each, with what the suite needs to drive it.

A backend says which adapter the agent uses (``kind``), which models the agent maps to which runtime names,
how to hold a generation long enough to cancel or drain it, how to take the runtime down and bring it back,
and what input each kind runs: an A1111 body for the SD WebUI kinds, a ComfyUI workflow for comfyui.

    diffusers           the real Easel runtime (tiny random models), adapter webui.py
    easel-as-sdwebui    the same real runtime driven by the stock SD WebUI adapter (a drop-in SD WebUI API)
    sdwebui-fake        FakeSdWebUi (tests/agent/fake_sdwebui.py)
    comfyui-fake        FakeComfyUi (tests/agent/fake_comfyui.py)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.serve import ThreadedServer, free_port
from bench.synthetic_runtime import png
from tests.agent.fake_comfyui import FakeComfyUi
from tests.agent.fake_sdwebui import FakeSdWebUi


@dataclass(frozen=True)
class TaskShape:
    task_type: str
    input: dict[str, Any]
    model: str = "sd15"


class Backend(Protocol):
    name: str
    kind: str
    models: dict[str, str]

    @property
    def url(self) -> str: ...

    def up(self) -> None: ...

    def down(self) -> None: ...

    def hold(self) -> None: ...

    def release(self) -> None: ...

    def generating(self) -> bool: ...

    def ok(self, *, model: str = "sd15", seed: int = 1) -> TaskShape: ...

    def long(self) -> TaskShape: ...

    def rejected(self) -> tuple[TaskShape, str]: ...

    def loaded(self) -> str | None: ...

    def setup(self, put: Callable[[str, bytes], str]) -> None: ...


def a1111(prompt: str, *, steps: int = 2, seed: int = 1, model: str = "sd15", **extra: Any) -> TaskShape:
    body = {"prompt": prompt, "width": 64, "height": 64, "steps": steps, "seed": seed, **extra}
    return TaskShape("text-to-image", body, model)


class _FakeBackend:
    """A backend served by an in-process fake: its lifecycle and the hold/release of a generation."""

    fake: Any

    @property
    def url(self) -> str:
        return self.fake.url

    def up(self) -> None:
        self.fake.up()

    def down(self) -> None:
        self.fake.down()

    def hold(self) -> None:
        self.fake.control.hold = True

    def release(self) -> None:
        self.fake.control.hold = False
        self.fake.release()

    def generating(self) -> bool:
        return self.fake.generating.is_set()


class SdWebUiFakeBackend(_FakeBackend):
    name = "sdwebui-fake"
    kind = "sdwebui"
    models = {"sd15": "sd15.safetensors", "other": "other", "ghost": "ghost"}

    def __init__(self) -> None:
        self.fake = FakeSdWebUi()

    def ok(self, *, model: str = "sd15", seed: int = 1) -> TaskShape:
        return a1111("a red fox", seed=seed, model=model, loras=[{"name": "style", "weight": 0.5}])

    def long(self) -> TaskShape:
        return a1111("a long one", steps=50)

    def rejected(self) -> tuple[TaskShape, str]:
        # "PNDM" is a diffusers scheduler, not a WebUI sampler: 404 "Sampler not found".
        return a1111("refused", sampler_name="PNDM"), "runtime_rejected"

    def loaded(self) -> str | None:
        return self.fake.current.split(" [", 1)[0].rsplit(".", 1)[0]  # the checkpoint's model name

    def setup(self, put: Callable[[str, bytes], str]) -> None:
        del put


class EaselRuntimeBackend:
    """The real Easel runtime on tiny random models (``sd15`` and ``other`` in a session store)."""

    kind = "diffusers"
    models = {"sd15": "sd15", "other": "other", "ghost": "ghost"}

    def __init__(self, store: Path, *, kind: str = "diffusers") -> None:
        self.kind = kind
        self.name = "diffusers" if kind == "diffusers" else "easel-as-sdwebui"
        self.store = store
        self.port = free_port()
        self.server: ThreadedServer | None = None
        self._http = httpx.Client(timeout=30, trust_env=False)
        self._held = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        from runtime_image.server.http import create_app
        from runtime_image.server.runner import Runner
        from runtime_image.server.settings import RuntimeSettings

        settings = RuntimeSettings(models_dir=self.store, preload_model="sd15", cpu_threads=1)
        self.server = ThreadedServer(
            create_app(Runner(settings)), port=self.port, lifespan="on", graceful_seconds=2
        ).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None

    def hold(self) -> None:
        self._held = True  # a long task (many steps): the runtime interrupts between steps

    def release(self) -> None:
        self._held = False

    def generating(self) -> bool:
        try:
            state = self._http.get(f"{self.url}/sdapi/v1/progress").json().get("state", {})
        except (httpx.HTTPError, ValueError):
            return False
        return bool(state.get("sampling_step", 0) > 0 or state.get("job_count", 0) > 0)

    def ok(self, *, model: str = "sd15", seed: int = 1) -> TaskShape:
        return a1111("a red fox", seed=seed, model=model)

    def long(self) -> TaskShape:
        return a1111("a long one", steps=400)

    def rejected(self) -> tuple[TaskShape, str]:
        return a1111("no such model", model="ghost"), "model_missing"

    def loaded(self) -> str | None:
        value = self._http.get(f"{self.url}/sdapi/v1/options").json().get("sd_model_checkpoint")
        return str(value) if value is not None else None

    def setup(self, put: Callable[[str, bytes], str]) -> None:
        del put


def workflow(
    *, ckpt: str = "sd15.safetensors", steps: int = 2, seed: int = 1, image: str | None = None
) -> dict[str, Any]:
    """A ComfyUI API-format text-to-image (or, with ``image``, image-to-image) workflow."""
    latent: list[Any] = ["5", 0]
    graph: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": latent,
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "easel"}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    if image is not None:
        graph["11"] = {"class_type": "LoadImage", "inputs": {"image": image}}
        graph["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}}
        graph["3"]["inputs"]["latent_image"] = ["12", 0]
        graph["3"]["inputs"]["denoise"] = 0.6
    return graph


class ComfyUiFakeBackend(_FakeBackend):
    name = "comfyui-fake"
    kind = "comfyui"
    models = {"sd15": "sd15", "other": "other", "ghost": "ghost"}

    def __init__(self) -> None:
        self.fake = FakeComfyUi()
        self.input_uri = ""

    def setup(self, put: Callable[[str, bytes], str]) -> None:
        self.input_uri = put("inputs/photo.png", png(64, 64, (10, 200, 10)))

    def pipeline(self, graph: dict[str, Any], *, model: str = "sd15", **images: str) -> TaskShape:
        return TaskShape("pipeline", {"workflow": graph, "images": images}, model)

    def ok(self, *, model: str = "sd15", seed: int = 1) -> TaskShape:
        graph = workflow(ckpt=f"{model}.safetensors", seed=seed, image="photo.png")
        return self.pipeline(graph, model=model, **{"photo.png": self.input_uri})

    def long(self) -> TaskShape:
        return self.pipeline(workflow(steps=50))

    def rejected(self) -> tuple[TaskShape, str]:
        return self.pipeline(workflow(ckpt="ghost.safetensors")), "model_missing"

    def loaded(self) -> str | None:
        return self.fake.loaded.rsplit(".", 1)[0] if self.fake.loaded else None


def tiny_store(root: Path) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from runtime_image.server.main import offline_defaults
    from runtime_image.server.tiny import make_tiny_model

    offline_defaults()
    torch.set_num_threads(1)
    make_tiny_model(root / "sd15", seed=0)
    make_tiny_model(root / "other", seed=1)
    return root


def wait_until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a condition (an event seen through HTTP); the bound only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        threading.Event().wait(0.02)
