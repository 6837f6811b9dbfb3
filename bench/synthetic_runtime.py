"""A synthetic runtime speaking the Easel runtime's SD WebUI dialect: the one fake runtime of the repository,
used by ``easel bench agent``, the plan validation bench and the agent tests.

    GET  /health                      ready | busy (while generating) | what ``control.health`` says
    GET  /sdapi/v1/sd-models          the models it has
    GET  /sdapi/v1/options            {"sd_model_checkpoint": the current model}
    POST /sdapi/v1/options            switch (404 for a model it does not have)
    POST /sdapi/v1/txt2img, img2img   hold ``control.hold_seconds``, then small PNGs of the asked size
    POST /easel/v1/txt2img-batch      one held generation, per-item images or per-item errors
    POST /easel/v1/train-lora         one held training, fake adapter weights
    PUT|GET /easel/v1/loras/{t}/{n}   private LoRAs (recorded)
    GET  /sdapi/v1/progress           ``control.progress`` (0.5 by default) while generating
    POST /sdapi/v1/interrupt          ends the held generation now (unless ``control.ignore_interrupt``)

Like the real runtime it runs one generation at a time (a lock): a generation's ``started`` is when it took
the lock and ``ended`` when it let go, on the monotonic clock the agent probes use, so a bench can compute
how busy the runtime was. Failures are scripted on :class:`Control` (``fail_next``, ``fail_always``,
``public_loras``); every call is recorded as a :class:`Call`. A held generation waits on a timer, never
polls: ``/interrupt`` or :meth:`SyntheticRuntime.release` ends it at once.

It runs on 127.0.0.1 in a thread of the calling process, on an asyncio loop (holding costs no CPU), and can
go down and come back on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.serve import ThreadedServer

GENERATIONS = ("txt2img", "img2img", "train-lora", "txt2img-batch")


@cache
def png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A plain PNG (made once per size and colour)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def fake_lora(name: str, seed: int = 0) -> bytes:
    """The adapter weights a fake training returns."""
    return f"fake-lora:{name}:{seed}".encode()


@dataclass
class Call:
    """One request to a generation endpoint: ``started``..``ended`` is the time it held the runtime (a
    refused call holds nothing: it starts when it arrives)."""

    path: str
    body: dict[str, Any]
    arrived: float
    started: float
    ended: float | None = None
    interrupted: bool = False


@dataclass
class Control:
    """What the runtime does; tests and benches change it while an agent runs."""

    hold_seconds: float = 0.0
    health: str = "ready"
    models: set[str] = field(default_factory=lambda: {"sd15", "other"})
    current_model: str | None = None
    # Status codes to answer to the next generation calls, consumed one per call (e.g. [503, 503]).
    fail_next: list[int] = field(default_factory=list)
    # Status code to answer to every generation call but training (e.g. 500: an unknown error forever).
    fail_always: int | None = None
    ignore_interrupt: bool = False
    # Public LoRAs of the models store; None accepts any name (404 lora_not_found for others otherwise).
    public_loras: set[str] | None = None
    # What GET /sdapi/v1/progress answers while a generation runs (0.5 when None).
    progress: float | None = None


class _Hold:
    """The lock and the running generation of one server loop (asyncio objects belong to one loop; a
    restarted server runs a new one). A generation ends when its future is settled: by a timer after the
    hold time (False) or by an interrupt (True); one timer, no task of its own, so holding adds next to
    nothing to the loop's work beyond T."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.running: asyncio.Future[bool] | None = None

    def interrupt(self) -> None:
        """End the running generation now; with none running, nothing (a new job starts uninterrupted)."""
        _settle(self.running, True)

    async def hold(self, seconds: float) -> bool:
        """Hold for ``seconds`` or until interrupted; True if interrupted."""
        self.running = done = self.loop.create_future()
        timer = self.loop.call_later(max(seconds, 0.0), _settle, done, False)
        try:
            return await done
        finally:
            timer.cancel()
            self.running = None


def _settle(done: asyncio.Future[bool] | None, interrupted: bool) -> None:
    if done is not None and not done.done():
        done.set_result(interrupted)


class SyntheticRuntime:
    """``with SyntheticRuntime(...) as rt`` or ``rt.up()`` / ``rt.down()``; ``url`` is known before it starts.

    ``nice``: scheduling priority of the serving thread (a bench shares two cores with the agent and moto).
    """

    def __init__(
        self,
        *,
        hold_seconds: float = 0.0,
        models: Iterable[str] = ("sd15", "other"),
        current_model: str | None = None,
        progress: float | None = None,
        nice: int = 0,
    ) -> None:
        self.control = Control(
            hold_seconds, models=set(models), current_model=current_model, progress=progress
        )
        self.calls: list[Call] = []
        self.option_posts: list[str | None] = []
        # Private LoRAs by scoped name "<tenant>/<name>": (bytes, source etag); every PUT is recorded.
        self.private_loras: dict[str, tuple[bytes, str | None]] = {}
        self.lora_puts: list[str] = []
        self.interrupts = 0
        self.generating = 0
        self._hold: _Hold | None = None
        self._nice = nice
        self.app = _app(self)
        self.server = ThreadedServer(self.app, graceful_seconds=2)
        self.url = self.server.url

    def reset(self, *, hold_seconds: float) -> None:
        """Forget every call and hold ``hold_seconds`` from now on (a bench's next run)."""
        self.control.hold_seconds = hold_seconds
        self.calls = []

    def generation_calls(self) -> list[Call]:
        return [c for c in list(self.calls) if c.path in GENERATIONS]

    def busy_spans(self) -> list[tuple[float, float]]:
        """(started, ended) of every finished generation, in order: the time the runtime was busy."""
        return sorted((c.started, c.ended) for c in self.generation_calls() if c.ended is not None)

    # -- lifecycle --------------------------------------------------------------------------------------
    def up(self) -> SyntheticRuntime:
        self.server.start()
        if self._nice and self.server.native_id is not None:
            # Only this thread: on a GPU node the runtime's HTTP side has cores of its own; here it shares
            # two with the agent, moto and whatever else runs. Negative values need root (CAP_SYS_NICE).
            os.setpriority(os.PRIO_PROCESS, self.server.native_id, self._nice)
        return self

    def release(self) -> None:
        """End a held generation now (as if it finished), whatever ``ignore_interrupt`` says."""
        hold = self._hold
        if hold is not None and not hold.loop.is_closed():
            hold.loop.call_soon_threadsafe(hold.interrupt)

    def down(self) -> None:
        self.release()
        self.server.stop()
        self._hold = None

    def __enter__(self) -> SyntheticRuntime:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- what the routes share ------------------------------------------------------------------------------
    def held(self) -> _Hold:
        if self._hold is None or self._hold.loop is not asyncio.get_running_loop():
            self._hold = _Hold()
        return self._hold

    def record(self, path: str, body: dict[str, Any]) -> Call:
        now = time.monotonic()
        call = Call(path=path, body=body, arrived=now, started=now)
        self.calls.append(call)
        return call

    async def generate(self, call: Call) -> None:
        """Hold the runtime for ``control.hold_seconds`` or until interrupted, one generation at a time."""
        hold = self.held()
        async with hold.lock:
            call.started = time.monotonic()
            self.generating += 1
            try:
                call.interrupted = await hold.hold(self.control.hold_seconds)
            finally:
                self.generating -= 1
                call.ended = time.monotonic()

    def failure(self, *, always: bool = True) -> JSONResponse | None:
        c = self.control
        if c.fail_next:
            status = c.fail_next.pop(0)
            return JSONResponse({"detail": f"fake failure {status}"}, status_code=status)
        if always and c.fail_always is not None:
            return JSONResponse({"detail": "fake failure"}, status_code=c.fail_always)
        return None

    def refused_lora(self, body: dict[str, Any]) -> JSONResponse | None:
        public = self.control.public_loras
        for lora in body.get("loras", []):
            name = lora["name"]
            known = name in self.private_loras if "/" in name else public is None or name in public
            if not known:
                detail = f"lora '{name}' not found in the model store"
                return JSONResponse({"error": "lora_not_found", "detail": detail}, status_code=404)
        return None

    def images(self, body: dict[str, Any]) -> dict[str, Any]:
        """The answer's images and info: ``batch_size`` x ``n_iter`` PNGs coloured by their seed."""
        n = int(body.get("batch_size", 1)) * int(body.get("n_iter", 1))
        w, h = int(body.get("width", 64)), int(body.get("height", 64))
        seed = int(body.get("seed", 0))
        if seed == -1:  # like the real runtime: a random seed, so repeated runs differ
            seed = random.randrange(2**32)
        seeds = [seed + i for i in range(n)]
        images = [base64.b64encode(png(w, h, (s % 256, 80, 160))).decode() for s in seeds]
        info = {"seed": seed, "all_seeds": seeds, "sd_model_checkpoint": self.control.current_model}
        return {"images": images, "info": json.dumps(info)}


def _app(rt: SyntheticRuntime) -> FastAPI:
    app = FastAPI()
    c = rt.control

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "busy" if c.health == "ready" and rt.generating else c.health}

    @app.get("/sdapi/v1/sd-models")
    async def sd_models() -> list[dict[str, str]]:
        return [{"title": m, "model_name": m, "filename": m} for m in sorted(c.models)]

    @app.get("/sdapi/v1/options")
    async def get_options() -> dict[str, Any]:
        return {"sd_model_checkpoint": c.current_model}

    @app.post("/sdapi/v1/options")
    async def set_options(request: Request) -> Any:
        body = await request.json()
        if "sd_model_checkpoint" not in body:
            return {}
        name = body["sd_model_checkpoint"]
        rt.option_posts.append(name)
        if name not in c.models:
            return JSONResponse({"detail": f"model '{name}' not found"}, status_code=404)
        c.current_model = name
        return {}

    @app.post("/sdapi/v1/interrupt")
    async def interrupt() -> dict[str, Any]:
        rt.interrupts += 1
        if not c.ignore_interrupt:
            rt.held().interrupt()
        return {}

    @app.get("/sdapi/v1/progress")
    async def progress() -> dict[str, Any]:
        running = 0.5 if c.progress is None else c.progress
        return {
            "progress": running if rt.generating else 0.0,
            "eta_relative": 0.0,
            "state": {"job_count": rt.generating},
            "current_image": None,
        }

    async def generation(path: str, request: Request) -> Any:
        call = rt.record(path, await request.json())
        refused = rt.refused_lora(call.body) or rt.failure()
        if refused is not None:
            call.ended = time.monotonic()
            return refused
        await rt.generate(call)
        return {**rt.images(call.body), "parameters": call.body}

    @app.post("/sdapi/v1/txt2img")
    async def txt2img(request: Request) -> Any:
        return await generation("txt2img", request)

    @app.post("/sdapi/v1/img2img")
    async def img2img(request: Request) -> Any:
        return await generation("img2img", request)

    @app.post("/easel/v1/txt2img-batch")
    async def txt2img_batch(request: Request) -> Any:
        """The Easel runtime's mixed batch: one held generation, per-item images or per-item errors."""
        call = rt.record("txt2img-batch", await request.json())
        failed = rt.failure()
        if failed is not None:
            call.ended = time.monotonic()
            return failed
        await rt.generate(call)
        items: list[dict[str, Any]] = []
        for item in call.body["items"]:
            refused = rt.refused_lora(item)
            if refused is not None:
                items.append({"status": refused.status_code, **json.loads(bytes(refused.body))})
            else:
                items.append({"status": 200, **rt.images(item)})
        return {"items": items}

    @app.post("/easel/v1/train-lora")
    async def train(request: Request) -> Any:
        call = rt.record("train-lora", await request.json())
        failed = rt.failure(always=False)
        if failed is not None:
            call.ended = time.monotonic()
            return failed
        await rt.generate(call)
        body, stopped = call.body, call.interrupted
        weights = fake_lora(body["output_name"], int(body.get("seed", 0)))
        return {
            "model": body.get("model"),
            "output_name": body["output_name"],
            "path": None,
            "steps_completed": 1 if stopped else int(body["steps"]),
            "interrupted": stopped,
            "eval_loss_before": 0.5,
            "eval_loss_after": 0.4,
            "seconds": 0.01,
            "weights_b64": None if stopped else base64.b64encode(weights).decode(),
        }

    def lora_info(scoped: str) -> dict[str, Any]:
        data, etag = rt.private_loras[scoped]
        return {"scoped_name": scoped, "size": len(data), "source_etag": etag}

    @app.put("/easel/v1/loras/{tenant}/{name}")
    async def put_lora(tenant: str, name: str, request: Request) -> Any:
        scoped = f"{tenant}/{name}"
        rt.private_loras[scoped] = (await request.body(), request.headers.get("x-easel-source-etag"))
        rt.lora_puts.append(scoped)
        return lora_info(scoped)

    @app.get("/easel/v1/loras/{tenant}/{name}")
    async def get_lora(tenant: str, name: str) -> Any:
        scoped = f"{tenant}/{name}"
        if scoped not in rt.private_loras:
            return JSONResponse({"error": "lora_not_found", "detail": scoped}, status_code=404)
        return lora_info(scoped)

    return app
