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

from tests.agent.fake_sdwebui import FakeSdWebUi
from tests.agent.servers import ThreadedUvicorn, free_port


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


def a1111(prompt: str, *, steps: int = 2, seed: int = 1, model: str = "sd15", **extra: Any) -> TaskShape:
    body = {"prompt": prompt, "width": 64, "height": 64, "steps": steps, "seed": seed, **extra}
    return TaskShape("text-to-image", body, model)


class SdWebUiFakeBackend:
    name = "sdwebui-fake"
    kind = "sdwebui"
    models = {"sd15": "sd15.safetensors", "other": "other", "ghost": "ghost"}

    def __init__(self) -> None:
        self.fake = FakeSdWebUi()

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

    def ok(self, *, model: str = "sd15", seed: int = 1) -> TaskShape:
        return a1111("a red fox", seed=seed, model=model, loras=[{"name": "style", "weight": 0.5}])

    def long(self) -> TaskShape:
        return a1111("a long one", steps=50)

    def rejected(self) -> tuple[TaskShape, str]:
        # "PNDM" is a diffusers scheduler, not a WebUI sampler: 404 "Sampler not found".
        return a1111("refused", sampler_name="PNDM"), "runtime_rejected"

    def loaded(self) -> str | None:
        return self.fake.current.split(" [", 1)[0].rsplit(".", 1)[0]  # the checkpoint's model name


class EaselRuntimeBackend:
    """The real Easel runtime on tiny random models (``sd15`` and ``other`` in a session store)."""

    kind = "diffusers"
    models = {"sd15": "sd15", "other": "other", "ghost": "ghost"}

    def __init__(self, store: Path, *, kind: str = "diffusers") -> None:
        self.kind = kind
        self.name = "diffusers" if kind == "diffusers" else "easel-as-sdwebui"
        self.store = store
        self.port = free_port()
        self.server: ThreadedUvicorn | None = None
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
        self.server = ThreadedUvicorn(create_app(Runner(settings)), port=self.port).start()

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
