"""The ComfyUI adapter (``kind: comfyui``): runs a ``pipeline`` task's workflow on a stock ComfyUI.

Written against ComfyUI's ``server.py`` / ``execution.py`` (v0.2 line). One run:

    1. upload     POST /upload/image (multipart: image, type=input, overwrite=true) for each input image,
                  under the name the workflow's LoadImage nodes use
    2. follow     open GET /ws?clientId=<this agent> first, so no message of the prompt is missed
    3. queue      POST /prompt {"prompt": workflow, "client_id"} -> {"prompt_id"}
    4. wait       websocket messages of that prompt: progress {value, max} (task progress), executing
                  {node: null} / execution_success (done), execution_error, execution_interrupted. If the
                  socket cannot be opened or drops, GET /history/<id> is polled instead until it is there.
    5. collect    GET /history/<id> outputs: every image of type "output" (SaveImage), in node order, read
                  with GET /view?filename&subfolder&type=output

Cancel (``interrupt``): a prompt still queued is removed (POST /queue {"delete": [id]}); a running one is
interrupted (POST /interrupt, between steps and nodes). Readiness: GET /system_stats (ComfyUI has no
/health). ComfyUI picks its checkpoints inside the workflow, so there is no model switch.

Errors map onto the agent's tree as :mod:`queue_agent.runtimes.comfyui_answers` lists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from easel.contract import PipelineInput
from queue_agent.errors import (
    RuntimeFault,
    RuntimeRejected,
    RuntimeUnavailable,
    Unsupported,
)
from queue_agent.runtimes import RuntimeRequest
from queue_agent.runtimes.comfyui_answers import (
    node_failure,
    node_order,
    prompt_refusal,
    refusal,
)
from queue_agent.runtimes.health import RuntimeHealth, wait_until_ready
from queue_agent.runtimes.webui_answers import answer_json  # one JSON-object check for every adapter
from queue_agent.runtimes.workflow_only import WorkflowOnly

log = logging.getLogger(__name__)

PIPELINE = "pipeline"
Connect = Callable[[str], ClientConnection]


class ComfyUiRuntime(WorkflowOnly):
    """One ComfyUI, one prompt at a time (the agent serializes); ``http`` and ``ws_connect`` are injected."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        generate_timeout: float = 960.0,
        poll_seconds: float = 0.5,
        ws_connect: Connect | None = None,
    ) -> None:
        self._http = http
        self._generate_timeout = generate_timeout
        self._poll = poll_seconds
        self._connect = ws_connect or (lambda url: connect(url, open_timeout=5, max_size=2**24))
        self.client_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._prompt_id: str | None = None
        self._progress: float | None = None
        self._removed = threading.Event()

    # -- health ------------------------------------------------------------------------------------------
    def health(self) -> RuntimeHealth:
        try:
            r = self._http.get("/system_stats", timeout=5.0)
        except httpx.HTTPError:
            return RuntimeHealth.DOWN
        try:
            ok = r.status_code == 200 and isinstance(r.json(), dict)
        except ValueError:
            ok = False
        return RuntimeHealth.READY if ok else RuntimeHealth.STARTING

    def wait_ready(self, timeout: float, *, stop: threading.Event | None = None, **poll: Any) -> bool:
        return wait_until_ready(self.health, timeout, stop=stop, **poll)

    # -- the pipeline ------------------------------------------------------------------------------------
    def pipeline_request(self, data: PipelineInput, *, images: dict[str, bytes]) -> RuntimeRequest:
        return RuntimeRequest(PIPELINE, {"prompt": data.workflow}, files=dict(images))

    def generate(self, request: RuntimeRequest) -> list[bytes]:
        if request.kind != PIPELINE:
            raise Unsupported(f"a comfyui runtime cannot run '{request.kind}'")
        deadline = time.monotonic() + self._generate_timeout
        for name, data in request.files.items():
            self._upload(name, data)
        with contextlib.ExitStack() as stack:
            socket = self._open_socket(stack)
            try:
                prompt_id = self._queue_prompt(request.body["prompt"])
                with self._lock:
                    self._prompt_id, self._progress = prompt_id, 0.0
                    self._removed.clear()
                if socket is not None:
                    self._follow_socket(socket, prompt_id, deadline)
                entry = self._wait_history(prompt_id, deadline)
            finally:
                with self._lock:
                    self._prompt_id = None
        return self._collect(prompt_id, entry)

    def _upload(self, name: str, data: bytes) -> None:
        r = self._call(
            "POST",
            "/upload/image",
            files={"image": (name, data, "application/octet-stream")},
            data={"type": "input", "overwrite": "true"},
            timeout=60.0,
        )
        answer = answer_json(r)
        if answer.get("name") != name:
            raise RuntimeFault(f"upload of input image '{name}' was stored as '{answer.get('name')}'")

    def _open_socket(self, stack: contextlib.ExitStack) -> ClientConnection | None:
        base = str(self._http.base_url).rstrip("/")
        url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        try:
            return stack.enter_context(self._connect(f"{url}/ws?clientId={self.client_id}"))
        except (OSError, WebSocketException, TimeoutError) as exc:
            log.warning("ComfyUI websocket unavailable; polling history", extra={"error": str(exc)})
            return None

    def _queue_prompt(self, workflow: dict[str, Any]) -> str:
        r = self._http_call("POST", "/prompt", json={"prompt": workflow, "client_id": self.client_id})
        if r.status_code == 400:
            raise prompt_refusal(r)
        if r.status_code >= 400:
            raise self._refusal("POST /prompt", r)
        prompt_id = answer_json(r).get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise RuntimeFault("POST /prompt: answer has no prompt_id")
        return prompt_id

    def _follow_socket(self, socket: ClientConnection, prompt_id: str, deadline: float) -> None:
        """Until the prompt is done (or fails); returns early (to polling) if the socket drops."""
        while time.monotonic() < deadline:
            if self._removed.is_set():
                return
            try:
                raw = socket.recv(timeout=self._poll)
            except TimeoutError:
                continue
            except (WebSocketException, OSError) as exc:
                log.warning("ComfyUI websocket dropped; polling history", extra={"error": str(exc)})
                return
            if isinstance(raw, bytes):
                continue  # preview images (binary frames)
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            kind, data = message.get("type"), message.get("data") or {}
            if not isinstance(data, dict) or data.get("prompt_id") not in (prompt_id, None):
                continue
            if kind == "progress" and data.get("prompt_id") == prompt_id:
                value, top = data.get("value"), data.get("max")
                if isinstance(value, int | float) and isinstance(top, int | float) and top > 0:
                    with self._lock:
                        self._progress = min(max(value / top, 0.0), 1.0)
            elif kind == "execution_error" and data.get("prompt_id") == prompt_id:
                raise node_failure(data)
            elif kind == "execution_interrupted" and data.get("prompt_id") == prompt_id:
                raise RuntimeFault(f"the workflow was interrupted at node {data.get('node_id')}")
            elif (kind == "execution_success" and data.get("prompt_id") == prompt_id) or (
                kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id
            ):
                return

    def _wait_history(self, prompt_id: str, deadline: float) -> dict[str, Any]:
        """GET /history/<id> until the prompt is there (done or failed); the polling fallback too."""
        while True:
            r = self._call("GET", f"/history/{prompt_id}", timeout=30.0)
            entry = answer_json(r).get(prompt_id)
            if isinstance(entry, dict):
                status = entry.get("status") or {}
                for event, data in status.get("messages") or []:
                    if event == "execution_error" and isinstance(data, dict):
                        raise node_failure(data)
                    if event == "execution_interrupted" and isinstance(data, dict):
                        raise RuntimeFault(f"the workflow was interrupted at node {data.get('node_id')}")
                if status.get("status_str") == "error":
                    raise RuntimeFault("the workflow failed without an error message")
                return entry
            if self._removed.is_set():
                raise RuntimeFault("the prompt was removed from ComfyUI's queue before it ran")
            if time.monotonic() >= deadline:
                raise RuntimeFault(f"no result from ComfyUI within {self._generate_timeout:g} s")
            threading.Event().wait(self._poll)

    def _collect(self, prompt_id: str, entry: dict[str, Any]) -> list[bytes]:
        outputs = entry.get("outputs") or {}
        if not isinstance(outputs, dict):
            raise RuntimeFault(f"history of {prompt_id}: outputs is not an object")
        images: list[bytes] = []
        for node_id in sorted(outputs, key=node_order):
            for item in (outputs[node_id] or {}).get("images") or []:
                if not isinstance(item, dict) or item.get("type") != "output":
                    continue  # PreviewImage writes "temp" files: not results
                params = {"filename": item.get("filename", ""), "subfolder": item.get("subfolder", "")}
                r = self._call("GET", "/view", params={**params, "type": "output"}, timeout=60.0)
                images.append(r.content)
        if not images:
            raise RuntimeRejected("the workflow produced no output image (it needs a SaveImage node)")
        return images

    # -- progress, cancel --------------------------------------------------------------------------------
    def progress(self) -> float | None:
        with self._lock:
            return self._progress if self._prompt_id is not None else None

    def interrupt(self) -> bool:
        """Remove our prompt if still queued, else interrupt the running one. Best effort, never raises."""
        with self._lock:
            prompt_id = self._prompt_id
        if prompt_id is None:
            return False  # nothing of ours queued or running: never interrupt another client's prompt
        try:
            if self._pending(prompt_id):
                self._http.post("/queue", json={"delete": [prompt_id]}, timeout=5.0)
                if not self._running(prompt_id):
                    self._removed.set()
                    return True
            return self._http.post("/interrupt", timeout=5.0).status_code < 400
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("runtime interrupt failed", extra={"error": str(exc)})
            return False

    def _pending(self, prompt_id: str) -> bool:
        queue = self._http.get("/queue", timeout=5.0).json()
        return any(len(q) > 1 and q[1] == prompt_id for q in queue.get("queue_pending", []))

    def _running(self, prompt_id: str) -> bool:
        queue = self._http.get("/queue", timeout=5.0).json()
        return any(len(q) > 1 and q[1] == prompt_id for q in queue.get("queue_running", []))

    # -- plumbing ----------------------------------------------------------------------------------------
    def _http_call(self, method: str, path: str, *, timeout: float = 60.0, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, timeout=httpx.Timeout(timeout, connect=5.0), **kw)
        except httpx.TransportError as exc:
            raise RuntimeUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc

    def _call(self, method: str, path: str, *, timeout: float, **kw: Any) -> httpx.Response:
        r = self._http_call(method, path, timeout=timeout, **kw)
        if r.status_code >= 400:
            raise self._refusal(f"{method} {path}", r)
        return r

    @staticmethod
    def _refusal(what: str, r: httpx.Response) -> Exception:
        return refusal(what, r)
