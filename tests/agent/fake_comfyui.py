"""A stock ComfyUI server, as far as the agent can tell: an aiohttp app, as ComfyUI's own ``server.py`` is.

Reproduced from reading ComfyUI's source (comfyanonymous/ComfyUI, the v0.2 line: ``server.py`` at commit
005f3ba4 - ``PromptServer`` routes, ``post_prompt``, ``post_queue``, ``post_interrupt``, ``image_upload``,
``view_image``, ``get_history``, ``websocket_handler``, ``send_json``; ``execution.py`` - ``validate_prompt``,
``validate_inputs``, ``PromptExecutor.execute``/``handle_execution_error``), not copied:

- ``GET /system_stats`` ``{system{os, comfyui_version, python_version, ...}, devices[...]}``;
- ``POST /prompt {"prompt", "client_id"}``: 200 ``{"prompt_id", "number", "node_errors": {}}``; a body
  without ``prompt`` -> 400 ``{"error": "no prompt", "node_errors": []}``; an invalid graph -> 400
  ``{"error": {type, message, details, extra_info}, "node_errors": {id: {"errors": [...],
  "dependent_outputs": [...], "class_type"}}}`` (``invalid_prompt`` for a node type that does not exist,
  ``prompt_no_outputs``, ``prompt_outputs_failed_validation`` with ``required_input_missing`` /
  ``value_not_in_list`` per node);
- ``GET /queue`` ``{"queue_running": [[number, id, prompt, extra, outputs]], "queue_pending": [...]}``;
  ``POST /queue {"delete": [ids]}`` / ``{"clear": true}`` -> 200 (empty body); ``POST /interrupt`` -> 200;
- ``GET /history/{id}`` -> ``{}`` until done, then ``{id: {prompt, outputs{node: {"images": [{filename,
  subfolder, type}]}}, status{status_str, completed, messages[[event, data]]}}}``;
- ``POST /upload/image`` (multipart ``image``, ``type``, ``subfolder``, ``overwrite``) -> ``{name, subfolder,
  type}``; ``GET /view?filename&subfolder&type`` -> the file, 404 when absent, 400 on ``..``/absolute names;
- ``GET /ws?clientId=`` sends ``status`` first, then for the client's prompts ``execution_start``,
  ``execution_cached``, ``executing {node}``, ``progress {value, max, prompt_id, node}``, ``executed {node,
  output}``, then ``execution_success`` and ``executing {node: null}``; or ``execution_error`` (node_id,
  node_type, executed, exception_message, exception_type, traceback, current_inputs, current_outputs) /
  ``execution_interrupted`` (node_id, node_type, executed).

Node types known here (a small "object_info"): CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage,
LoadImage, VAEEncode, KSampler (steps with progress, interruptible), VAEDecode, SaveImage, PreviewImage.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image

from bench.serve import free_port
from bench.synthetic_runtime import png

VERSION = "ComfyUI v0.2 line (server.py @005f3ba4, execution.py validate_prompt/execute)"


class Interrupted(Exception):
    """comfy.model_management.InterruptProcessingException"""


@dataclass
class NodeType:
    required: dict[str, Any]
    returns: tuple[str, ...] = ()
    output: bool = False


NODES: dict[str, NodeType] = {
    "CheckpointLoaderSimple": NodeType({"ckpt_name": "CKPT"}, ("MODEL", "CLIP", "VAE")),
    "CLIPTextEncode": NodeType({"text": "STRING", "clip": "CLIP"}, ("CONDITIONING",)),
    "EmptyLatentImage": NodeType({"width": "INT", "height": "INT", "batch_size": "INT"}, ("LATENT",)),
    "LoadImage": NodeType({"image": "INPUT_FILE"}, ("IMAGE", "MASK")),
    "VAEEncode": NodeType({"pixels": "IMAGE", "vae": "VAE"}, ("LATENT",)),
    "KSampler": NodeType(
        {
            "model": "MODEL",
            "seed": "INT",
            "steps": "INT",
            "cfg": "FLOAT",
            "sampler_name": "STRING",
            "scheduler": "STRING",
            "positive": "CONDITIONING",
            "negative": "CONDITIONING",
            "latent_image": "LATENT",
            "denoise": "FLOAT",
        },
        ("LATENT",),
    ),
    "VAEDecode": NodeType({"samples": "LATENT", "vae": "VAE"}, ("IMAGE",)),
    "SaveImage": NodeType({"images": "IMAGE", "filename_prefix": "STRING"}, (), output=True),
    "PreviewImage": NodeType({"images": "IMAGE"}, (), output=True),
}


@dataclass
class ComfyControl:
    checkpoints: list[str] = field(default_factory=lambda: ["sd15.safetensors", "other.safetensors"])
    # Hold every KSampler at its first step until released or interrupted (a long run, without clocks).
    hold: bool = False
    # A KSampler raises this (an exception inside a node: execution_error).
    explode: str | None = None


class FakeComfyUi:
    def __init__(self) -> None:
        self.control = ComfyControl()
        self.port = free_port()
        self.inputs: dict[str, bytes] = {}
        self.outputs: dict[str, bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.prompts: list[dict[str, Any]] = []
        self.loaded: str | None = None
        self.interrupts = 0
        self.deleted: list[str] = []
        self.generating = threading.Event()
        self._queue: list[tuple[float, str, dict[str, Any], dict[str, Any], list[str]]] = []
        self._running: tuple[float, str, dict[str, Any], dict[str, Any], list[str]] | None = None
        self._number = 0
        self._counter = 0
        self._cv = threading.Condition()
        self._interrupt = threading.Event()
        self._release = threading.Event()
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def up(self) -> FakeComfyUi:
        started = threading.Event()
        self._stopping.clear()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self._app())
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self._runner = runner
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-comfyui", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("fake ComfyUI did not start")
        self._worker = threading.Thread(target=self._prompt_worker, name="fake-comfyui-worker", daemon=True)
        self._worker.start()
        return self

    def down(self) -> None:
        self._stopping.set()
        self._interrupt.set()
        self._release.set()
        with self._cv:
            self._cv.notify_all()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        if self._worker is not None:
            self._worker.join(timeout=30)
        self._loop = self._thread = self._worker = None
        with self._cv:
            self._queue.clear()  # a restarted ComfyUI has an empty queue
            self._running = None

    def release(self) -> None:
        self._release.set()

    # -- messages ----------------------------------------------------------------------------------------
    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """PromptServer.send_sync: a JSON message to one client (if connected)."""
        if sid is None or self._loop is None:
            return
        ws = self._sockets.get(sid)
        if ws is None:
            return
        message = json.dumps({"type": event, "data": data})
        asyncio.run_coroutine_threadsafe(self._send(ws, message), self._loop)

    @staticmethod
    async def _send(ws: web.WebSocketResponse, message: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(message)

    def queue_info(self) -> dict[str, Any]:
        with self._cv:
            remaining = len(self._queue) + (1 if self._running else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    # -- app ---------------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        routes = web.RouteTableDef()

        @routes.get("/ws")
        async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
            self._sockets[sid] = ws
            try:
                await ws.send_str(
                    json.dumps({"type": "status", "data": {"status": self.queue_info(), "sid": sid}})
                )
                async for msg in ws:
                    if msg.type == WSMsgType.ERROR:
                        break
            finally:
                if self._sockets.get(sid) is ws:
                    self._sockets.pop(sid, None)
            return ws

        @routes.get("/system_stats")
        async def system_stats(_request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "system": {
                        "os": "posix",
                        "ram_total": 1,
                        "ram_free": 1,
                        "comfyui_version": "v0.2.x (fake)",
                        "python_version": "3.11",
                        "pytorch_version": "2.13.0",
                        "embedded_python": False,
                        "argv": ["main.py"],
                    },
                    "devices": [
                        {"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0}
                    ],
                }
            )

        @routes.get("/object_info")
        async def object_info(_request: web.Request) -> web.Response:
            return web.json_response(
                {
                    name: {"name": name, "output_node": t.output, "output": list(t.returns)}
                    for name, t in NODES.items()
                }
            )

        @routes.get("/queue")
        async def get_queue(_request: web.Request) -> web.Response:
            with self._cv:
                running = [list(self._running)] if self._running else []
                pending = [list(item) for item in self._queue]
            return web.json_response({"queue_running": running, "queue_pending": pending})

        @routes.post("/queue")
        async def post_queue(request: web.Request) -> web.Response:
            body = await request.json()
            with self._cv:
                if body.get("clear"):
                    self._queue.clear()
                for prompt_id in body.get("delete", []):
                    before = len(self._queue)
                    self._queue = [q for q in self._queue if q[1] != prompt_id]
                    if len(self._queue) < before:
                        self.deleted.append(prompt_id)
            return web.Response(status=200)

        @routes.post("/interrupt")
        async def post_interrupt(_request: web.Request) -> web.Response:
            self.interrupts += 1
            self._interrupt.set()  # nodes.interrupt_processing(): whatever runs now stops at its next check
            self._release.set()
            return web.Response(status=200)

        @routes.get("/history/{prompt_id}")
        async def get_history(request: web.Request) -> web.Response:
            prompt_id = request.match_info["prompt_id"]
            with self._cv:
                entry = self.history.get(prompt_id)
            return web.json_response({prompt_id: entry} if entry else {})

        @routes.post("/prompt")
        async def post_prompt(request: web.Request) -> web.Response:
            body = await request.json()
            if "prompt" not in body:
                return web.json_response({"error": "no prompt", "node_errors": []}, status=400)
            prompt = body["prompt"]
            valid, error, outputs, node_errors = self._validate(prompt)
            extra = dict(body.get("extra_data", {}))
            if "client_id" in body:
                extra["client_id"] = body["client_id"]
            if not valid:
                return web.json_response({"error": error, "node_errors": node_errors}, status=400)
            prompt_id = str(uuid.uuid4())
            with self._cv:
                number = self._number
                self._number += 1
                self._queue.append((number, prompt_id, prompt, extra, outputs))
                self.prompts.append(
                    {"prompt_id": prompt_id, "prompt": prompt, "client_id": extra.get("client_id")}
                )
                self._cv.notify_all()
            return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

        @routes.post("/upload/image")
        async def upload_image(request: web.Request) -> web.Response:
            post = await request.post()
            image = post.get("image")
            if not isinstance(image, web.FileField) or not image.filename:
                return web.Response(status=400)
            subfolder = str(post.get("subfolder", ""))
            name = f"{subfolder}/{image.filename}" if subfolder else image.filename
            if name.startswith("/") or ".." in name:
                return web.Response(status=400)
            self.inputs[name] = image.file.read()
            kind = str(post.get("type") or "input")
            return web.json_response({"name": image.filename, "subfolder": subfolder, "type": kind})

        @routes.get("/view")
        async def view_image(request: web.Request) -> web.Response:
            q = request.rel_url.query
            filename = q.get("filename", "")
            if not filename:
                return web.Response(status=404)
            if filename[0] == "/" or ".." in filename:
                return web.Response(status=400)
            subfolder = q.get("subfolder", "")
            store = self.outputs if q.get("type", "output") == "output" else self.inputs
            data = store.get(f"{subfolder}/{filename}" if subfolder else filename)
            if data is None:
                return web.Response(status=404)
            return web.Response(body=data, content_type="image/png")

        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.add_routes(routes)
        return app

    # -- validation (execution.validate_prompt) ------------------------------------------------------------
    def _validate(self, prompt: Any) -> tuple[bool, Any, list[str], dict[str, Any]]:
        for node_id, node in prompt.items():
            if "class_type" not in node:
                error = {
                    "type": "invalid_prompt",
                    "message": "Cannot execute because a node is missing the class_type property.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return False, error, [], {}
            if node["class_type"] not in NODES:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {node['class_type']} does not exist.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return False, error, [], {}
        outputs = [nid for nid, n in prompt.items() if NODES[n["class_type"]].output]
        if not outputs:
            error = {
                "type": "prompt_no_outputs",
                "message": "Prompt has no outputs",
                "details": "",
                "extra_info": {},
            }
            return False, error, [], {}
        node_errors: dict[str, Any] = {}
        for node_id, node in prompt.items():
            errors = []
            spec = NODES[node["class_type"]]
            for name, kind in spec.required.items():
                value = node.get("inputs", {}).get(name)
                if value is None and name not in ("denoise",):
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                elif kind == "CKPT" and value not in self.control.checkpoints:
                    errors.append(_not_in_list(name, value, self.control.checkpoints))
                elif kind == "INPUT_FILE" and value not in self.inputs:
                    errors.append(_not_in_list(name, value, sorted(self.inputs)))
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": outputs,
                    "class_type": node["class_type"],
                }
        if node_errors:
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            }
            return False, error, [], node_errors
        return True, None, outputs, {}

    # -- execution (main.prompt_worker + PromptExecutor.execute) -------------------------------------------
    def _prompt_worker(self) -> None:
        while not self._stopping.is_set():
            with self._cv:
                while not self._queue and not self._stopping.is_set():
                    self._cv.wait(0.2)
                if self._stopping.is_set():
                    return
                self._queue.sort(key=lambda q: q[0])
                item = self._queue.pop(0)
                self._running = item
            try:
                self._execute(item)
            finally:
                with self._cv:
                    self._running = None

    def _execute(self, item: tuple[float, str, dict[str, Any], dict[str, Any], list[str]]) -> None:
        number, prompt_id, prompt, extra, outputs = item
        sid = extra.get("client_id")
        self._interrupt.clear()  # nodes.interrupt_processing(False) at the start of each prompt
        self._release.clear()
        messages: list[list[Any]] = []

        def event(name: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": prompt_id}
            if name in (
                "execution_start",
                "execution_cached",
                "execution_success",
                "execution_error",
                "execution_interrupted",
            ):
                messages.append([name, {**data, "timestamp": int(time.time() * 1000)}])
            self.send(name, data, sid)

        event("execution_start", {})
        event("execution_cached", {"nodes": []})
        results: dict[str, tuple[Any, ...]] = {}
        ui: dict[str, Any] = {}
        executed: list[str] = []
        order = _topological(prompt)
        status = "success"
        for node_id in order:
            node = prompt[node_id]
            event("executing", {"node": node_id, "display_node": node_id})
            try:
                results[node_id], out_ui = self._run_node(node_id, node, results, prompt_id, sid)
            except Interrupted:
                event(
                    "execution_interrupted",
                    {"node_id": node_id, "node_type": node["class_type"], "executed": executed},
                )
                status = "error"
                break
            except Exception as ex:
                event(
                    "execution_error",
                    {
                        "node_id": node_id,
                        "node_type": node["class_type"],
                        "executed": executed,
                        "exception_message": str(ex),
                        "exception_type": type(ex).__name__,
                        "traceback": ['  File "/comfyui/execution.py", line 1, in execute\n'],
                        "current_inputs": {},
                        "current_outputs": {},
                    },
                )
                status = "error"
                break
            executed.append(node_id)
            if out_ui:
                ui[node_id] = out_ui
                event("executed", {"node": node_id, "display_node": node_id, "output": out_ui})
        if status == "success":
            event("execution_success", {})
        with self._cv:
            self.history[prompt_id] = {
                "prompt": [number, prompt_id, prompt, extra, outputs],
                "outputs": ui,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
                "meta": {
                    n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in ui
                },
            }
        self.send("executing", {"node": None, "prompt_id": prompt_id}, sid)
        self.send("status", {"status": self.queue_info()}, sid)

    def _run_node(
        self,
        node_id: str,
        node: dict[str, Any],
        results: dict[str, tuple[Any, ...]],
        prompt_id: str,
        sid: str | None,
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._interrupt.is_set():  # before_node_execution()
            raise Interrupted()
        inputs = {
            k: (results[v[0]][v[1]] if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) else v)
            for k, v in node.get("inputs", {}).items()
        }
        kind = node["class_type"]
        if kind == "CheckpointLoaderSimple":
            self.loaded = inputs["ckpt_name"]
            return ("model:" + self.loaded, "clip", "vae"), {}
        if kind == "CLIPTextEncode":
            return (("cond", inputs["text"]),), {}
        if kind == "EmptyLatentImage":
            return ({"w": inputs["width"], "h": inputs["height"], "n": inputs.get("batch_size", 1)},), {}
        if kind == "LoadImage":
            img = Image.open(io.BytesIO(self.inputs[inputs["image"]]))
            return ({"w": img.width, "h": img.height, "n": 1}, None), {}
        if kind == "VAEEncode":
            return (inputs["pixels"],), {}
        if kind == "KSampler":
            steps = int(inputs["steps"])
            self.generating.set()
            try:
                for step in range(steps):
                    if self._interrupt.is_set():  # the sampler's callback checks it every step
                        raise Interrupted()
                    if self.control.explode:
                        raise RuntimeError(self.control.explode)
                    self.send(
                        "progress",
                        {"value": step + 1, "max": steps, "prompt_id": prompt_id, "node": node_id},
                        sid,
                    )
                    if self.control.hold:  # a long step: held until released or interrupted
                        self._release.wait()
                if self._interrupt.is_set():
                    raise Interrupted()
            finally:
                self.generating.clear()
            latent = dict(inputs["latent_image"])
            latent["seed"] = inputs["seed"]
            return (latent,), {}
        if kind == "VAEDecode":
            return (inputs["samples"],), {}
        if kind in ("SaveImage", "PreviewImage"):
            latent = inputs["images"]
            out_type = "output" if kind == "SaveImage" else "temp"
            prefix = inputs.get("filename_prefix", "ComfyUI") if kind == "SaveImage" else "ComfyUI_temp"
            images = []
            for i in range(int(latent.get("n", 1))):
                self._counter += 1
                name = f"{prefix}_{self._counter:05}_.png"
                data = png(
                    int(latent["w"]), int(latent["h"]), ((int(latent.get("seed", 0)) + i) % 256, 90, 30)
                )
                if out_type == "output":
                    self.outputs[name] = data
                else:
                    self.inputs[f"temp/{name}"] = data
                images.append({"filename": name, "subfolder": "", "type": out_type})
            return (), {"images": images}
        raise RuntimeError(f"no implementation of {kind}")


def _not_in_list(name: str, value: Any, allowed: list[str]) -> dict[str, Any]:
    return {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": f"{name}: '{value}' not in {allowed}",
        "extra_info": {"input_name": name, "input_config": [allowed], "received_value": value},
    }


def _topological(prompt: dict[str, Any]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for v in prompt[node_id].get("inputs", {}).values():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
                visit(v[0])
        order.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return order
