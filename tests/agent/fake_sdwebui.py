"""A stock AUTOMATIC1111 SD WebUI, API only (``--api --nowebui``), as far as the agent can tell.

Reproduced from reading the WebUI's source (AUTOMATIC1111/stable-diffusion-webui v1.10.x: ``modules/api/api.py``
``Api.__init__`` routes, ``api_middleware.handle_exception``, ``text2imgapi``/``img2imgapi``, ``progressapi``,
``set_config``, ``get_sd_models``; ``modules/api/models.py`` ``ProgressResponse``/``TextToImageResponse``;
``webui.py api_only``; the built-in Lora extension's ``/sdapi/v1/loras``), not copied:

- no ``/health``; ``/internal/ping`` is mounted by the UI only, so ``--nowebui`` answers 404 there too;
- ``GET /sdapi/v1/sd-models`` -> ``[{title, model_name, hash, sha256, filename, config}]``, the title being
  ``"<file> [<short hash>]"``; ``GET /sdapi/v1/options`` -> ``{"sd_model_checkpoint": <title>, ...}``;
- ``POST /sdapi/v1/options`` with a checkpoint that is no alias (title, file name, model name, hash, sha256)
  -> 500 ``{"error": "RuntimeError", "detail": "", "body": "", "errors": "model '...' not found"}``;
  otherwise the checkpoint is loaded before the (``null``) answer;
- ``txt2img``/``img2img``: body validation -> 422 ``{"detail": [...]}`` (FastAPI); an unknown sampler -> 404
  ``{"error": "HTTPException", "detail": "Sampler not found", ...}``; an undecodable init image -> 500
  ``HTTPException`` "Invalid encoded image"; one generation at a time (the queue lock); ``<lora:n:w>`` tags
  naming no file are ignored (the WebUI only logs them); an interrupt ends the job early and the images so
  far are still returned (200);
- ``GET /sdapi/v1/progress`` -> ``{progress, eta_relative, state{skipped, interrupted, job, job_count,
  job_timestamp, job_no, sampling_step, sampling_steps}, current_image, textinfo}``;
- ``POST /sdapi/v1/interrupt`` -> ``{}``; ``POST /sdapi/v1/skip`` -> ``null``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel

from bench.serve import ThreadedServer
from bench.synthetic_runtime import png

VERSION = "AUTOMATIC1111/stable-diffusion-webui v1.10.x API (modules/api/api.py, models.py)"
# The WebUI's sampler names (modules/sd_samplers_*.py); no "PNDM": a diffusers-only scheduler.
SAMPLERS = (
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DPM fast",
    "DPM adaptive",
    "Restart",
    "DDIM",
    "PLMS",
    "UniPC",
    "LCM",
)
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::[^>]*)?>")


def checkpoint(file: str) -> dict[str, Any]:
    sha = hashlib.sha256(file.encode()).hexdigest()
    return {
        "title": f"{file} [{sha[:10]}]",
        "model_name": file.rsplit(".", 1)[0],
        "hash": sha[:8],
        "sha256": sha,
        "filename": f"/data/models/Stable-diffusion/{file}",
        "config": None,
    }


class Txt2Img(BaseModel):
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 50
    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0
    sampler_name: str | None = None
    sampler_index: str = "Euler"
    scheduler: str | None = None
    seed: int = -1
    batch_size: int = 1
    n_iter: int = 1
    override_settings: dict[str, Any] = {}
    send_images: bool = True
    save_images: bool = False


class Img2Img(Txt2Img):
    init_images: list[str] | None = None
    denoising_strength: float = 0.75


@dataclass
class WebUiControl:
    files: list[str] = field(default_factory=lambda: ["sd15.safetensors", "other.safetensors"])
    loras: set[str] = field(default_factory=lambda: {"style"})
    # Hold every generation at its first step until released or interrupted (a long job, without clocks).
    hold: bool = False


@dataclass
class _State:
    job: str = ""
    job_count: int = 0
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    interrupted: bool = False
    skipped: bool = False
    job_timestamp: str = "0"


class FakeSdWebUi:
    def __init__(self) -> None:
        self.control = WebUiControl()
        self.current: str = checkpoint(self.control.files[0])["title"]
        self.loads: list[str] = []
        self.generations: list[dict[str, Any]] = []
        self.ignored_loras: list[str] = []
        self.interrupts = 0
        self.generating = threading.Event()
        self._release = threading.Event()
        self._queue_lock = threading.Lock()
        self._state = _State()
        self.server = ThreadedServer(self._app(), lifespan="on", graceful_seconds=2)

    @property
    def url(self) -> str:
        return self.server.url

    def up(self) -> FakeSdWebUi:
        self.server.start()
        return self

    def down(self) -> None:
        self._release.set()
        self.server.stop()

    def release(self) -> None:
        self._release.set()

    def aliases(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in self.control.files:
            c = checkpoint(f)
            for key in (c["title"], f, c["model_name"], c["hash"], c["sha256"]):
                out[key] = c["title"]
        return out

    # -- app --------------------------------------------------------------------------------------------
    def _app(self) -> FastAPI:
        app = FastAPI()

        def error_answer(e: Exception) -> JSONResponse:
            body = {
                "error": type(e).__name__,
                "detail": getattr(e, "detail", ""),
                "body": getattr(e, "body", ""),
                "errors": str(e),
            }
            return JSONResponse(body, status_code=getattr(e, "status_code", 500))

        @app.middleware("http")
        async def exception_handling(request: Request, call_next: Any) -> Any:
            try:
                return await call_next(request)
            except Exception as e:  # the WebUI's own middleware turns every exception into this shape
                return error_answer(e)

        @app.exception_handler(HTTPException)
        async def http_exception(_request: Request, e: HTTPException) -> JSONResponse:
            return error_answer(e)

        @app.get("/sdapi/v1/sd-models")
        def sd_models() -> list[dict[str, Any]]:
            return [checkpoint(f) for f in self.control.files]

        @app.get("/sdapi/v1/loras")
        def loras() -> list[dict[str, Any]]:
            return [
                {"name": n, "alias": n, "path": f"/data/models/Lora/{n}.safetensors", "metadata": {}}
                for n in sorted(self.control.loras)
            ]

        @app.get("/sdapi/v1/samplers")
        def samplers() -> list[dict[str, Any]]:
            return [{"name": n, "aliases": [], "options": {}} for n in SAMPLERS]

        @app.get("/sdapi/v1/options")
        def get_options() -> dict[str, Any]:
            return {
                "sd_model_checkpoint": self.current,
                "samples_format": "png",
                "CLIP_stop_at_last_layers": 1,
            }

        @app.post("/sdapi/v1/options")
        def set_options(req: dict[str, Any]) -> None:
            name = req.get("sd_model_checkpoint")
            if name is not None:
                aliases = self.aliases()
                if name not in aliases:
                    raise RuntimeError(f"model {name!r} not found")
                with self._queue_lock:  # loading waits for the running job, as opts.set's onchange does
                    self.current = aliases[name]
                    self.loads.append(self.current)

        @app.get("/sdapi/v1/progress")
        def progress(skip_current_image: bool = False) -> dict[str, Any]:
            s = self._state
            state = {
                "skipped": s.skipped,
                "interrupted": s.interrupted,
                "stopping_generation": False,
                "job": s.job,
                "job_count": s.job_count,
                "job_timestamp": s.job_timestamp,
                "job_no": s.job_no,
                "sampling_step": s.sampling_step,
                "sampling_steps": s.sampling_steps,
            }
            if s.job_count == 0:
                return {
                    "progress": 0,
                    "eta_relative": 0,
                    "state": state,
                    "current_image": None,
                    "textinfo": None,
                }
            value = 0.01 + s.job_no / s.job_count
            if s.sampling_steps > 0:
                value += 1 / s.job_count * s.sampling_step / s.sampling_steps
            return {
                "progress": min(value, 1),
                "eta_relative": 1.0,
                "state": state,
                "current_image": None,
                "textinfo": None,
            }

        @app.post("/sdapi/v1/interrupt")
        def interrupt() -> dict[str, Any]:
            self.interrupts += 1
            self._state.interrupted = True
            self._release.set()
            return {}

        @app.post("/sdapi/v1/skip")
        def skip() -> None:
            self._state.skipped = True
            self._release.set()

        @app.post("/sdapi/v1/txt2img")
        def txt2img(req: Txt2Img) -> dict[str, Any]:
            return self._generate("txt2img", req, [])

        @app.post("/sdapi/v1/img2img")
        def img2img(req: Img2Img) -> dict[str, Any]:
            if req.init_images is None:
                raise HTTPException(status_code=404, detail="Init image not found")
            images = []
            for item in req.init_images:
                data = item.split(",", 1)[1] if item.startswith("data:image/") else item
                try:
                    images.append(Image.open(io.BytesIO(base64.b64decode(data))))
                except (binascii.Error, ValueError, OSError) as e:
                    raise HTTPException(status_code=500, detail="Invalid encoded image") from e
            return self._generate("img2img", req, images)

        return app

    def _generate(self, kind: str, req: Txt2Img, init: list[Image.Image]) -> dict[str, Any]:
        sampler = (req.sampler_name or req.sampler_index).removesuffix(" Karras")
        if sampler not in SAMPLERS:
            raise HTTPException(status_code=404, detail="Sampler not found")
        for name in _LORA_TAG.findall(req.prompt):
            if name not in self.control.loras:
                self.ignored_loras.append(name)  # "couldn't find Lora with name ..." in its log, no error
        with self._queue_lock:
            s = self._state
            self._state = s = _State(job=f"scripts_{kind}", job_count=req.n_iter, sampling_steps=req.steps)
            self._release.clear()
            self.generations.append({"kind": kind, "model": self.current, **req.model_dump()})
            self.generating.set()
            try:
                for step in range(req.steps):
                    s.sampling_step = step
                    if self.control.hold:
                        self._release.wait()
                    if s.interrupted or s.skipped:
                        break
                seed = req.seed if req.seed != -1 else len(self.generations)
                images = [
                    base64.b64encode(png(req.width, req.height, ((seed + i) % 256, 60, 120))).decode()
                    for i in range(req.batch_size * req.n_iter)
                ]
            finally:
                self.generating.clear()
                s.job_count = 0
        info = {"seed": seed, "sd_model_name": self.current, "interrupted": s.interrupted}
        return {"images": images, "parameters": req.model_dump(), "info": json.dumps(info)}
