"""The SD WebUI dialect adapter of :class:`queue_agent.runtimes.Runtime`: the Easel runtime and a stock
AUTOMATIC1111 WebUI (localhost), with errors mapped to the agent's tree.

connect error, dropped connection, 503     -> RuntimeUnavailable   (retryable)
404 on /sdapi/v1/options                   -> ModelMissing         (permanent)
404 lora_not_found on a generation         -> LoraMissing          (permanent)
400, 404, 413, 422 on a generation         -> RuntimeRejected      (permanent, names the detail)
404/405 on the private LoRA upload         -> Unsupported          (a runtime without /easel/v1/loras)
other 4xx/5xx, undecodable answer          -> RuntimeFault         (unknown)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import propagate

from easel.contract import GenerationInput, PipelineInput, TrainLoraInput, UpscaleInput
from queue_agent.errors import (
    LoraMissing,
    ModelMissing,
    RuntimeFault,
    RuntimeUnavailable,
    Unsupported,
)
from queue_agent.runtimes import RuntimeRequest
from queue_agent.runtimes.health import RuntimeHealth, wait_until_ready
from queue_agent.runtimes.webui_answers import answer_json, decode_images, item_error, refusal
from queue_agent.runtimes.webui_bodies import runtime_body, train_body, upscale_body

log = logging.getLogger(__name__)

TRAIN = "train-lora"  # RuntimeRequest.kind of a training (the others are the WebUI's txt2img / img2img)


class WebUiRuntime:
    """One runtime, one generation at a time (the caller serializes); ``http`` is injected.

    ``lora_style``: "field" sends ``loras`` in the body (Easel runtime), "prompt" ``<lora:name:weight>``
    tags (stock A1111, which cannot take private adapters).
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        generate_timeout: float = 960.0,
        model_trust_seconds: float = 1.0,
        lora_style: str = "field",
    ) -> None:
        self._http = http
        self._generate_timeout = generate_timeout
        self.lora_style = lora_style
        # The model the runtime had at our last successful call. Trusted for back-to-back tasks only:
        # a runtime restart (new process, default model) takes longer than this window, and any call that
        # fails meanwhile forgets it. Saves a GET /options on the critical path between two generations.
        self._trust = model_trust_seconds
        self._model: str | None = None
        self._model_seen = 0.0

    # -- health -------------------------------------------------------------------------------------------
    def health(self) -> RuntimeHealth:
        try:
            r = self._http.get("/health", timeout=5.0)
            state = r.json().get("status", "") if r.status_code in (200, 503) else ""
            return RuntimeHealth(state)
        except (httpx.HTTPError, ValueError, AttributeError):
            return RuntimeHealth.DOWN

    def wait_ready(self, timeout: float, *, stop: threading.Event | None = None, **poll: Any) -> bool:
        """Poll /health until ``ready`` (see :func:`queue_agent.runtimes.health.wait_until_ready`)."""
        return wait_until_ready(self.health, timeout, stop=stop, **poll)

    # -- model --------------------------------------------------------------------------------------------
    def current_model(self) -> str | None:
        r = self._call("GET", "/sdapi/v1/options", timeout=30.0)
        value = answer_json(r).get("sd_model_checkpoint")
        model = str(value) if value is not None else None
        self._remember(model)
        return model

    def set_model(self, store_path: str) -> None:
        r = self._call(
            "POST",
            "/sdapi/v1/options",
            json={"sd_model_checkpoint": store_path},
            timeout=self._generate_timeout,
            not_found=lambda detail: ModelMissing(f"runtime has no model '{store_path}': {detail}"),
        )
        answer_json(r)
        self._remember(store_path)

    def ensure_model(self, store_path: str) -> bool:
        """Switch only when the runtime's current model differs; True if a switch happened."""
        recent = time.monotonic() - self._model_seen < self._trust
        if recent and self._model == store_path:
            return False
        if self.current_model() == store_path:
            return False
        self.set_model(store_path)
        return True

    def _remember(self, model: str | None) -> None:
        self._model, self._model_seen = model, time.monotonic()

    # -- requests -------------------------------------------------------------------------------------------
    def generation_request(
        self,
        data: GenerationInput,
        *,
        init_images: list[bytes],
        lora_names: dict[str, str],
        mask: bytes | None = None,
        control_images: list[bytes] | None = None,
    ) -> RuntimeRequest:
        private = [n for n, sent in lora_names.items() if sent != n]
        if private and self.lora_style != "field":
            # Private adapters travel in the ``loras`` field only (prompt tags resolve public LoRAs only).
            raise Unsupported(
                f"private LoRA(s) {', '.join(private)} need the Easel runtime (EASEL_AGENT_LORA_STYLE=field)"
            )
        kind, body = runtime_body(
            data,
            init_images=init_images,
            lora_style=self.lora_style,
            lora_names=lora_names,
            mask=mask,
            control_images=control_images,
        )
        return RuntimeRequest(kind, body, meta={"loras": [lora.name for lora in data.loras]})

    def upscale_request(self, data: UpscaleInput, *, image: bytes) -> RuntimeRequest:
        kind, body = upscale_body(data, image=image)
        return RuntimeRequest(kind, body, needs_model=False)

    def training_request(self, data: TrainLoraInput, *, images: list[bytes], model: str) -> RuntimeRequest:
        return RuntimeRequest(TRAIN, train_body(data, images=images, model=model), training=True)

    def pipeline_request(self, data: PipelineInput, *, images: dict[str, bytes]) -> RuntimeRequest:
        del data, images  # the seam's signature: an SD WebUI runs no ComfyUI workflow
        raise Unsupported("pipeline tasks (ComfyUI workflows) need a comfyui runtime")

    # -- generation ---------------------------------------------------------------------------------------
    def generate(self, request: RuntimeRequest) -> list[bytes]:
        """POST /sdapi/v1/{txt2img|img2img|extra-single-image}; returns the decoded images."""
        kind = request.kind
        r = self._call("POST", f"/sdapi/v1/{kind}", json=request.body, timeout=self._generate_timeout)
        answer = answer_json(r)
        # Extras answer one "image"; generations a list of "images".
        out = decode_images(kind, {"images": [answer.get("image")]} if "image" in answer else answer)
        self._model_seen = time.monotonic()  # alive, and still on the model we know
        return out

    @property
    def batching(self) -> bool:
        """Mixed batches need the Easel runtime (``POST /easel/v1/txt2img-batch``), whose LoRAs travel in
        the ``loras`` field: with prompt tags, tasks with other LoRAs would look alike."""
        return self.lora_style == "field"

    def generate_batch(self, requests: list[RuntimeRequest]) -> list[list[bytes] | Exception]:
        """POST /easel/v1/txt2img-batch: several txt2img bodies as one generation; per item its images or
        its own error (mapped as a lone generation's would be)."""
        if not requests or any(r.kind != "txt2img" for r in requests):
            raise RuntimeFault("txt2img-batch: only txt2img requests batch")
        path = "/easel/v1/txt2img-batch"
        r = self._call(
            "POST", path, json={"items": [r.body for r in requests]}, timeout=self._generate_timeout
        )
        items = answer_json(r).get("items")
        if not isinstance(items, list) or len(items) != len(requests):
            raise RuntimeFault(f"txt2img-batch: answer has no 'items' list of {len(requests)}")
        out: list[list[bytes] | Exception] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                out.append(RuntimeFault(f"txt2img-batch: items[{i}] is not an object"))
            elif item.get("status") == 200:
                try:
                    out.append(decode_images(f"txt2img-batch items[{i}]", item))
                except RuntimeFault as exc:
                    out.append(exc)
            else:
                out.append(item_error(path, item))
        self._model_seen = time.monotonic()
        return out

    def train(self, request: RuntimeRequest) -> dict[str, Any]:
        """POST /easel/v1/train-lora (Easel runtime only); the answer as JSON (``weights_b64`` when asked)."""
        r = self._call("POST", "/easel/v1/train-lora", json=request.body, timeout=self._generate_timeout)
        result = answer_json(r)
        self._model_seen = time.monotonic()
        return result

    # -- private LoRAs (Easel runtime only) ---------------------------------------------------------------
    def private_lora(self, tenant: str, name: str) -> dict[str, Any] | None:
        """What the runtime holds as ``<tenant>/<name>`` (size, sha256, source_etag), None if nothing."""
        try:
            r = self._call(
                "GET",
                f"/easel/v1/loras/{tenant}/{name}",
                timeout=30.0,
                not_found=lambda detail: LoraMissing(detail),
            )
        except LoraMissing:
            return None
        except RuntimeFault as exc:
            if "HTTP 405" in str(exc):
                return None  # not an Easel runtime; the PUT says so with a clear error
            raise
        return answer_json(r)

    def put_private_lora(
        self, tenant: str, name: str, data: bytes, *, source_etag: str | None = None
    ) -> dict[str, Any]:
        path = f"/easel/v1/loras/{tenant}/{name}"
        headers = {"Content-Type": "application/octet-stream"}
        if source_etag:
            headers["X-Easel-Source-ETag"] = source_etag
        unsupported = Unsupported(
            f"the runtime cannot take private LoRAs (PUT {path} is not served): use the Easel runtime"
        )
        try:
            r = self._call(
                "PUT",
                path,
                content=data,
                headers=headers,
                timeout=120.0,
                not_found=lambda _detail: unsupported,
            )
        except RuntimeFault as exc:
            if "HTTP 405" in str(exc):
                raise unsupported from None
            raise
        return answer_json(r)

    def progress(self) -> float | None:
        """GET /sdapi/v1/progress: the running call's fraction done (0..1); None if unknown. Never raises."""
        try:
            r = self._http.get("/sdapi/v1/progress", params={"skip_current_image": "true"}, timeout=5.0)
            value = r.json().get("progress") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return float(value) if isinstance(value, int | float) else None

    def interrupt(self) -> bool:
        """Best effort: stop the running generation between steps. Never raises."""
        return self._best_effort_post("/sdapi/v1/interrupt", "interrupt")

    def _best_effort_post(self, path: str, what: str) -> bool:
        """A control call (interrupt, skip): True if taken; a failure is logged, never raised."""
        try:
            return self._http.post(path, timeout=5.0).status_code < 400
        except httpx.HTTPError as exc:
            log.warning(f"runtime {what} failed", extra={"error": str(exc)})
            return False

    # -- plumbing -------------------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        not_found: Callable[[str], Exception] | None = None,
    ) -> httpx.Response:
        what = f"{method} {path}"
        # The current stage span (and the task id as baggage) go along: the runtime's spans join the trace.
        headers = dict(headers or {})
        propagate.inject(headers)
        try:
            r = self._http.request(
                method,
                path,
                json=json,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=5.0),
            )
        except httpx.TransportError as exc:
            self._model = None
            # Connect errors, timeouts and dropped connections: the runtime is down or restarting.
            raise RuntimeUnavailable(f"{what}: {exc.__class__.__name__}: {exc}") from exc
        if r.status_code < 400:
            return r
        self._model = None  # after any failure, ask the runtime again
        raise self._refusal(what, r, not_found)

    def _refusal(
        self, what: str, r: httpx.Response, not_found: Callable[[str], Exception] | None
    ) -> Exception:
        """The agent's error for an answer >= 400 (a stock WebUI adapter maps its own answers)."""
        return refusal(what, r, not_found)
