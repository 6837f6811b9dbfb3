"""A synthetic runtime speaking the SD WebUI dialect, holding each generation for T ms (simulated GPU time).

``GET /health`` is ``ready``; ``GET|POST /sdapi/v1/options`` keeps ``sd_model_checkpoint``;
``POST /sdapi/v1/txt2img`` (and img2img) waits ``hold_ms`` and answers a small base64 PNG of the asked
size. Like the real runtime it runs one generation at a time (a lock); the time each generation holds the
lock is recorded on :class:`Recorder`, with the same monotonic clock the agent probes use, so the bench
can compute how busy the runtime was.

It runs on 127.0.0.1 in a thread of the bench process (it only sleeps, so it costs no CPU worth measuring).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fastapi import FastAPI, Request

from bench.serve import ThreadedServer


@dataclass
class Generation:
    start: float
    end: float
    images: int
    arrived: float = 0.0  # the handler was entered (before reading the body and taking the lock)


@dataclass
class Recorder:
    hold_ms: float
    generations: list[Generation] = field(default_factory=list)
    option_calls: int = 0
    concurrent_waits: int = 0

    def reset(self, hold_ms: float) -> None:
        self.hold_ms = hold_ms
        self.generations = []
        self.option_calls = 0
        self.concurrent_waits = 0


@cache
def png_b64(width: int, height: int) -> str:
    """A small gradient PNG (cached per size)."""
    from PIL import Image

    img = Image.new("RGB", (width, height))
    img.putdata(
        [
            (x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
            for y in range(height)
            for x in range(width)
        ]
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def create_app(recorder: Recorder, checkpoint: str) -> FastAPI:
    app = FastAPI()
    lock = asyncio.Lock()
    state: dict[str, Any] = {"sd_model_checkpoint": checkpoint}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/sdapi/v1/options")
    async def get_options() -> dict[str, Any]:
        recorder.option_calls += 1
        return dict(state)

    @app.post("/sdapi/v1/options")
    async def set_options(request: Request) -> dict[str, Any]:
        recorder.option_calls += 1
        body = await request.json()
        if "sd_model_checkpoint" in body:
            state["sd_model_checkpoint"] = body["sd_model_checkpoint"]
        return {}

    @app.get("/sdapi/v1/sd-models")
    async def sd_models() -> list[dict[str, str]]:
        name = state["sd_model_checkpoint"]
        return [{"title": name, "model_name": name, "filename": name}]

    @app.get("/sdapi/v1/progress")
    async def progress() -> dict[str, Any]:
        return {"progress": 0.0, "eta_relative": 0.0, "state": {}, "current_image": None}

    @app.post("/sdapi/v1/interrupt")
    async def interrupt() -> dict[str, Any]:
        return {}

    async def generate(request: Request) -> dict[str, Any]:
        arrived = time.monotonic()
        body = await request.json()
        width, height = int(body.get("width", 64)), int(body.get("height", 64))
        n = int(body.get("batch_size", 1)) * int(body.get("n_iter", 1))
        seed = int(body.get("seed", -1))
        if lock.locked():
            recorder.concurrent_waits += 1
        async with lock:
            start = time.monotonic()
            await asyncio.sleep(recorder.hold_ms / 1000.0)
            images = [png_b64(width, height)] * n
            end = time.monotonic()
            recorder.generations.append(Generation(start, end, n, arrived))
        info = {
            "seed": seed,
            "all_seeds": [seed + i for i in range(n)],
            "sd_model_checkpoint": state["sd_model_checkpoint"],
        }
        return {"images": images, "parameters": body, "info": json.dumps(info)}

    app.post("/sdapi/v1/txt2img")(generate)
    app.post("/sdapi/v1/img2img")(generate)
    return app


class SyntheticRuntime:
    """The app served on 127.0.0.1 in a daemon thread; ``url`` is known before it starts."""

    def __init__(self, hold_ms: float, checkpoint: str, *, nice: int = 0) -> None:
        self.recorder = Recorder(hold_ms)
        self._server = ThreadedServer(create_app(self.recorder, checkpoint))
        self.url = self._server.url
        self._nice = nice

    def __enter__(self) -> SyntheticRuntime:
        png_b64(64, 64)  # made once here, not inside the first timed generation
        self._server.__enter__()
        if self._nice and self._server.native_id is not None:
            # Only this thread: on a GPU node the runtime's HTTP side has cores of its own; here it shares
            # two with the agent, moto and whatever else runs. Negative values need root (CAP_SYS_NICE).
            os.setpriority(os.PRIO_PROCESS, self._server.native_id, self._nice)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)
