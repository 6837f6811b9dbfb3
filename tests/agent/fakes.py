"""Test doubles served over real HTTP on 127.0.0.1: a controllable SD WebUI runtime and an image origin."""

from __future__ import annotations

import base64
import io
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image


def png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    started: float
    ended: float | None = None
    interrupted: bool = False


@dataclass
class RuntimeControl:
    """What the fake runtime does; tests change it while the agent runs."""

    hold_seconds: float = 0.0
    health: str = "ready"
    models: set[str] = field(default_factory=lambda: {"sd15", "other"})
    current_model: str | None = None
    # Status codes to answer to the next generation calls, consumed one per call (e.g. [503, 503]).
    fail_next: list[int] = field(default_factory=list)
    # Status code to answer to every generation call (e.g. 500: an unknown error forever).
    fail_always: int | None = None
    ignore_interrupt: bool = False
    # Public LoRAs of the models store; None accepts any name (404 lora_not_found for others otherwise).
    public_loras: set[str] | None = None
    # What GET /sdapi/v1/progress answers while a generation runs (0.5 when None).
    progress: float | None = None


class FakeRuntime:
    """SD WebUI dialect: /health, /sdapi/v1/options, txt2img, img2img, interrupt, progress."""

    def __init__(self) -> None:
        self.control = RuntimeControl()
        self.calls: list[Call] = []
        self.option_posts: list[str] = []
        # Private LoRAs by scoped name "<tenant>/<name>": (bytes, source etag); every PUT is recorded.
        self.private_loras: dict[str, tuple[bytes, str | None]] = {}
        self.lora_puts: list[str] = []
        self.interrupts = 0
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._generating = 0
        self.port = _free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def generation_calls(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path in ("txt2img", "img2img", "train-lora", "txt2img-batch")]

    # -- lifecycle --------------------------------------------------------------------------------------
    def up(self) -> FakeRuntime:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-runtime", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("fake runtime did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def release(self) -> None:
        """End a held generation now (as if it finished), whatever ``ignore_interrupt`` says."""
        self._interrupt.set()

    def down(self) -> None:
        self.release()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    # -- app --------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()
        c = self.control

        @app.get("/health")
        def health() -> dict[str, str]:
            if c.health == "ready" and self._generating:
                return {"status": "busy"}
            return {"status": c.health}

        @app.get("/sdapi/v1/options")
        def get_options() -> dict[str, Any]:
            return {"sd_model_checkpoint": c.current_model}

        @app.post("/sdapi/v1/options")
        async def set_options(request: Request) -> Any:
            body = await request.json()
            name = body.get("sd_model_checkpoint")
            self.option_posts.append(name)
            if name not in c.models:
                return JSONResponse({"detail": f"model '{name}' not found"}, status_code=404)
            c.current_model = name
            return {}

        @app.post("/sdapi/v1/interrupt")
        def interrupt() -> dict[str, Any]:
            self.interrupts += 1
            if not c.ignore_interrupt:
                self._interrupt.set()
            return {}

        @app.get("/sdapi/v1/progress")
        def progress() -> dict[str, Any]:
            running = 0.5 if c.progress is None else c.progress
            return {
                "progress": running if self._generating else 0.0,
                "state": {"job_count": self._generating},
            }

        def refused_lora(body: dict[str, Any]) -> JSONResponse | None:
            for lora in body.get("loras", []):
                name = lora["name"]
                known = (
                    name in self.private_loras
                    if "/" in name
                    else c.public_loras is None or name in c.public_loras
                )
                if not known:
                    detail = f"lora '{name}' not found in the model store"
                    return JSONResponse({"error": "lora_not_found", "detail": detail}, status_code=404)
            return None

        def fail_now() -> JSONResponse | None:
            if c.fail_next:
                status = c.fail_next.pop(0)
                return JSONResponse({"detail": f"fake failure {status}"}, status_code=status)
            if c.fail_always is not None:
                return JSONResponse({"detail": "fake failure"}, status_code=c.fail_always)
            return None

        def images_of(body: dict[str, Any]) -> tuple[list[str], int]:
            n = int(body.get("batch_size", 1))
            w, h = int(body.get("width", 64)), int(body.get("height", 64))
            seed = int(body.get("seed", 0))
            if seed == -1:  # like the real runtime: a random seed, so repeated runs differ
                seed = random.randrange(2**32)
            return [base64.b64encode(png(w, h, ((seed + i) % 256, 80, 160))).decode() for i in range(n)], seed

        def hold(call: Call) -> None:
            # A new generation clears a stale interrupt, as the WebUI does at the start of a job.
            self._interrupt.clear()
            self._generating += 1
            try:
                call.interrupted = self._interrupt.wait(c.hold_seconds)
            finally:
                self._generating -= 1

        def generate(path: str, body: dict[str, Any]) -> Any:
            call = Call(path=path, body=body, started=time.monotonic())
            with self._lock:
                self.calls.append(call)
            refused = refused_lora(body) or fail_now()
            if refused is not None:
                call.ended = time.monotonic()
                return refused
            try:
                hold(call)
                images, seed = images_of(body)
            finally:
                call.ended = time.monotonic()
            return {"images": images, "parameters": body, "info": f'{{"seed": {seed}}}'}

        @app.post("/easel/v1/txt2img-batch")
        def txt2img_batch(body: dict[str, Any]) -> Any:
            """The Easel runtime's mixed batch: one held generation, per-item images or per-item errors."""
            call = Call(path="txt2img-batch", body=body, started=time.monotonic())
            with self._lock:
                self.calls.append(call)
            failed = fail_now()
            if failed is not None:
                call.ended = time.monotonic()
                return failed
            items: list[dict[str, Any]] = []
            try:
                hold(call)
                for item in body["items"]:
                    refused = refused_lora(item)
                    if refused is not None:
                        items.append({"status": refused.status_code, **json.loads(refused.body)})
                    else:
                        images, seed = images_of(item)
                        items.append({"status": 200, "images": images, "info": f'{{"seed": {seed}}}'})
            finally:
                call.ended = time.monotonic()
            return {"items": items}

        @app.post("/sdapi/v1/txt2img")
        def txt2img(body: dict[str, Any]) -> Any:
            return generate("txt2img", body)

        @app.post("/sdapi/v1/img2img")
        def img2img(body: dict[str, Any]) -> Any:
            return generate("img2img", body)

        @app.post("/easel/v1/train-lora")
        def train(body: dict[str, Any]) -> Any:
            call = Call(path="train-lora", body=body, started=time.monotonic())
            with self._lock:
                self.calls.append(call)
            if c.fail_next:
                status = c.fail_next.pop(0)
                call.ended = time.monotonic()
                return JSONResponse({"detail": f"fake failure {status}"}, status_code=status)
            self._interrupt.clear()
            self._generating += 1
            try:
                call.interrupted = self._interrupt.wait(c.hold_seconds)
            finally:
                self._generating -= 1
                call.ended = time.monotonic()
            weights = fake_lora(body["output_name"], int(body.get("seed", 0)))
            steps = int(body["steps"])
            return {
                "model": body.get("model"),
                "output_name": body["output_name"],
                "path": None,
                "steps_completed": 1 if call.interrupted else steps,
                "interrupted": call.interrupted,
                "eval_loss_before": 0.5,
                "eval_loss_after": 0.4,
                "seconds": 0.01,
                "weights_b64": None if call.interrupted else base64.b64encode(weights).decode(),
            }

        @app.put("/easel/v1/loras/{tenant}/{name}")
        async def put_lora(tenant: str, name: str, request: Request) -> Any:
            data = await request.body()
            scoped = f"{tenant}/{name}"
            self.private_loras[scoped] = (data, request.headers.get("x-easel-source-etag"))
            self.lora_puts.append(scoped)
            return lora_info(scoped)

        @app.get("/easel/v1/loras/{tenant}/{name}")
        def get_lora(tenant: str, name: str) -> Any:
            scoped = f"{tenant}/{name}"
            if scoped not in self.private_loras:
                return JSONResponse({"error": "lora_not_found", "detail": scoped}, status_code=404)
            return lora_info(scoped)

        def lora_info(scoped: str) -> dict[str, Any]:
            data, etag = self.private_loras[scoped]
            return {"scoped_name": scoped, "size": len(data), "source_etag": etag}

        return app


def fake_lora(name: str, seed: int = 0) -> bytes:
    return f"fake-lora:{name}:{seed}".encode()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Origin:
    """A plain HTTP server on 127.0.0.1 that counts every request it sees (by path).

    Routes: /img.png (a PNG), /redirect?to=URL (302), /notimage, /big (``big_bytes`` bytes, no length),
    /gzip (a PNG claimed as gzip). Used both as an input origin and as the "victim" that must see nothing.
    """

    def __init__(self, *, image: bytes | None = None, big_bytes: int = 0) -> None:
        self.hits: list[tuple[str, float]] = []
        self.image = image if image is not None else png()
        self.big_bytes = big_bytes
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hit_count(self) -> int:
        return len(self.hits)

    def start(self) -> Origin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                origin.hits.append((url.path, time.monotonic()))
                if url.path == "/img.png":
                    self._send(200, origin.image, "image/png")
                elif url.path == "/redirect":
                    target = parse_qs(url.query)["to"][0]
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif url.path == "/notimage":
                    self._send(200, b"<html>hello</html>", "image/png")
                elif url.path == "/big":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    chunk = b"\0" * 65536
                    sent = 0
                    try:
                        while sent < origin.big_bytes:
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                elif url.path == "/gzip":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(origin.image)))
                    self.end_headers()
                    self.wfile.write(origin.image)
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return

        return Handler
