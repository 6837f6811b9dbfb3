"""Fixtures of the runtime tests: a tiny model store made once per session, and real servers on loopback."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import torch

from runtime_image.server.main import offline_defaults
from runtime_image.server.settings import RuntimeSettings

offline_defaults()
# The tiny model's ops are too small to split across threads; on a shared 2-core CI box one thread is
# several times faster than two fighting for the cores.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            # numpy 2 deprecations raised inside diffusers' schedulers, thousands per run: not ours to fix.
            for spec in (
                "ignore::DeprecationWarning:diffusers.*",
                "ignore:__array_wrap__ must accept:DeprecationWarning",
                # Several adapters per model are intended (the server filters these the same way).
                "ignore:Already found a `peft_config`:UserWarning",
                "ignore:Adapter .* was active which:UserWarning",
            ):
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/a (seed 0), models/b (seed 1), models/loras/style.safetensors."""
    from runtime_image.server.tiny import make_tiny_lora, make_tiny_model

    root = tmp_path_factory.mktemp("models")
    make_tiny_model(root / "a", seed=0)
    make_tiny_model(root / "b", seed=1)
    make_tiny_lora(root / "loras" / "style.safetensors", seed=0)
    return root


@pytest.fixture
def store_copy(tiny_store: Path, tmp_path: Path) -> Path:
    """A private copy of the store for tests that add or change files."""
    dest = tmp_path / "models"
    shutil.copytree(tiny_store, dest)
    return dest


class LiveServer:
    """The real app under uvicorn on 127.0.0.1 (port chosen by the OS), in a thread."""

    def __init__(self, settings: RuntimeSettings, **runner_kwargs: Any) -> None:
        import uvicorn

        from runtime_image.server.http import create_app
        from runtime_image.server.runner import Runner

        self.runner = Runner(settings, **runner_kwargs)
        config = uvicorn.Config(create_app(self.runner), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""
        self.client = httpx.Client(timeout=600)  # generous: a shared CI box can be slow, not wrong

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 300
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(self.url + path)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.client.post(self.url + path, json=body)

    def wait_status(self, *statuses: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.get("/health").json()
            if body["status"] in statuses:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"health stayed {body}")
            time.sleep(0.005)

    def cache(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.get("/easel/v1/cache").json()
        return stats


@pytest.fixture
def make_server() -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(models_dir: Path, **kwargs: Any) -> LiveServer:
        runner_kwargs = {k: kwargs.pop(k) for k in ("loader", "plan") if k in kwargs}
        server = LiveServer(RuntimeSettings(models_dir=models_dir, **kwargs), **runner_kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(tiny_store: Path) -> Iterator[LiveServer]:
    """One ready server with model 'a' preloaded, shared by tests that do not change its model."""
    live = LiveServer(RuntimeSettings(models_dir=tiny_store, preload_model="a")).start()
    live.wait_status("ready")
    yield live
    live.stop()
