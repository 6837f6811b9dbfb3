"""The stock AUTOMATIC1111 SD WebUI adapter (``kind: sdwebui``), for a WebUI started ``--api --nowebui``.

Written against the WebUI's own API module (``modules/api/api.py``, v1.10): what differs from the Easel
runtime is what a stock WebUI really offers.

    readiness   no /health (and /internal/ping exists only with the UI): GET /sdapi/v1/sd-models answering
                a list. The API starts while the checkpoint still loads; the first call waits for it.
    model       a checkpoint is named by title ("file.safetensors [hash]"), file name, model name, short
                hash or sha256: the store path is matched against GET /sdapi/v1/sd-models and the title
                POSTed as sd_model_checkpoint (the WebUI loads it before answering).
    LoRA        <lora:name:weight> prompt tags; the names are checked against GET /sdapi/v1/loras first,
                because the WebUI only logs a LoRA it cannot find and generates without it.
    progress    GET /sdapi/v1/progress; interrupt POST /sdapi/v1/interrupt; skip POST /sdapi/v1/skip.
    training, private LoRAs   not offered (unsupported).

Its error answers (``{"error": <exception class>, "detail", "body", "errors"}``, status from the exception):

    connect error, dropped connection, 502/503/504       -> RuntimeUnavailable (retryable)
    500 RuntimeError "model ... not found" (options)      -> ModelMissing       (permanent)
    404 (Sampler not found, ...), 422 (validation),
    500 HTTPException (e.g. "Invalid encoded image")      -> RuntimeRejected    (permanent: it said no)
    401 (--api-auth), 500 from a crash (e.g. CUDA OOM)    -> RuntimeFault       (unknown: retry, then DLQ)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from easel.contract import TrainLoraInput
from queue_agent.errors import (
    LoraMissing,
    ModelMissing,
    RuntimeFault,
    RuntimeRejected,
    RuntimeUnavailable,
    Unsupported,
)
from queue_agent.runtimes import RuntimeRequest
from queue_agent.runtimes.health import RuntimeHealth
from queue_agent.runtimes.webui import WebUiRuntime
from queue_agent.runtimes.webui_answers import error_detail

log = logging.getLogger(__name__)


class SdWebUiRuntime(WebUiRuntime):
    """A stock SD WebUI: the SD WebUI dialect without Easel's additions (see the module doc)."""

    def __init__(
        self, http: httpx.Client, *, generate_timeout: float = 960.0, model_trust_seconds: float = 1.0
    ):
        super().__init__(
            http,
            generate_timeout=generate_timeout,
            model_trust_seconds=model_trust_seconds,
            lora_style="prompt",
        )

    # -- health ------------------------------------------------------------------------------------------
    def health(self) -> RuntimeHealth:
        try:
            r = self._http.get("/sdapi/v1/sd-models", timeout=10.0)
        except httpx.HTTPError:
            return RuntimeHealth.DOWN
        if r.status_code == 200:
            try:
                return RuntimeHealth.READY if isinstance(r.json(), list) else RuntimeHealth.STARTING
            except ValueError:
                return RuntimeHealth.STARTING
        # A proxy in front of a starting WebUI, or the UI-only routes not mounted yet.
        return RuntimeHealth.STARTING

    # -- model -------------------------------------------------------------------------------------------
    def checkpoints(self) -> list[dict[str, Any]]:
        r = self._call("GET", "/sdapi/v1/sd-models", timeout=30.0)
        try:
            data = r.json()
        except ValueError:
            raise RuntimeFault("sd-models: answer is not JSON") from None
        if not isinstance(data, list):
            raise RuntimeFault("sd-models: answer is not a list")
        return [d for d in data if isinstance(d, dict)]

    def title_of(self, store_path: str) -> str:
        """The WebUI title of the checkpoint ``store_path`` names (any of the WebUI's aliases)."""
        entries = self.checkpoints()
        for entry in entries:
            if store_path in _aliases(entry):
                return str(entry.get("title") or store_path)
        known = ", ".join(sorted(str(e.get("title")) for e in entries)[:20]) or "none"
        raise ModelMissing(f"the WebUI has no checkpoint '{store_path}' (it has: {known})")

    def ensure_model(self, store_path: str) -> bool:
        recent = time.monotonic() - self._model_seen < self._trust
        if recent and self._model == store_path:
            return False
        title = self.title_of(store_path)
        current = self.current_model()
        if current in (title, store_path):
            self._remember(store_path)
            return False
        r = self._call(
            "POST",
            "/sdapi/v1/options",
            json={"sd_model_checkpoint": title},
            timeout=self._generate_timeout,
        )
        del r  # the WebUI answers null once the checkpoint is loaded
        self._remember(store_path)
        return True

    # -- requests ----------------------------------------------------------------------------------------
    def training_request(self, data: TrainLoraInput, *, images: list[bytes], model: str) -> RuntimeRequest:
        del data, images, model  # the seam's signature; a stock WebUI has no training
        raise Unsupported(
            "train-lora needs the Easel runtime (kind diffusers): a stock SD WebUI cannot train"
        )

    def generate(self, request: RuntimeRequest) -> list[bytes]:
        # The task's LoRA names, noted by WebUiRuntime.generation_request beside the prompt tags.
        wanted = request.meta.get("loras") or []
        if wanted:
            have = self.lora_names()
            missing = [n for n in wanted if n not in have]
            if missing:
                # The WebUI would log "couldn't find Lora" and generate without it: refuse instead.
                raise LoraMissing(f"the WebUI has no LoRA {', '.join(missing)} in its Lora directory")
        return super().generate(request)

    def lora_names(self) -> set[str]:
        r = self._call("GET", "/sdapi/v1/loras", timeout=30.0)
        try:
            data = r.json()
        except ValueError:
            raise RuntimeFault("loras: answer is not JSON") from None
        names: set[str] = set()
        for entry in data if isinstance(data, list) else []:
            if isinstance(entry, dict):
                names.update(str(entry[k]) for k in ("name", "alias") if entry.get(k))
        return names

    # -- what a stock WebUI does not have ----------------------------------------------------------------
    def train(self, request: RuntimeRequest) -> dict[str, Any]:  # noqa: ARG002 - the seam's signature
        raise Unsupported("train-lora needs the Easel runtime (kind diffusers)")

    def private_lora(self, tenant: str, name: str) -> dict[str, Any] | None:  # noqa: ARG002
        return None  # nothing private here; a task naming one fails with unsupported (prompt LoRA style)

    def put_private_lora(
        self, tenant: str, name: str, data: bytes, *, source_etag: str | None = None
    ) -> dict[str, Any]:
        del tenant, name, data, source_etag  # the seam's signature
        raise Unsupported("a stock SD WebUI cannot take private LoRAs; use the Easel runtime (diffusers)")

    @property
    def batching(self) -> bool:
        return False  # a stock WebUI has no /easel/v1/txt2img-batch: tasks run one by one

    def skip(self) -> bool:
        """Skip the current image of a batch (the rest still run). Best effort, never raises."""
        return self._best_effort_post("/sdapi/v1/skip", "skip")

    # -- errors ------------------------------------------------------------------------------------------
    def _refusal(
        self, what: str, r: httpx.Response, not_found: Callable[[str], Exception] | None
    ) -> Exception:
        del not_found  # the Easel runtime\'s 404 convention; the WebUI says "RuntimeError" instead
        detail = error_detail(r)
        error, errors = _fields(r)
        status = r.status_code
        if status in (502, 503, 504):
            return RuntimeUnavailable(f"{what}: {status} {detail}")
        if status == 500 and error == "RuntimeError" and "not found" in errors and "options" in what:
            return ModelMissing(f"the WebUI refused the checkpoint: {errors[:300]}")
        if status in (400, 404, 413, 422) or (status == 500 and error == "HTTPException"):
            return RuntimeRejected(f"runtime refused {what} ({status}): {detail or errors[:300]}")
        return RuntimeFault(f"{what}: HTTP {status}: {error} {errors[:300] or detail}".strip())


def _aliases(entry: dict[str, Any]) -> set[str]:
    """Every name the WebUI accepts for a checkpoint (its checkpoint_aliases): title, model name, file name
    relative or bare, with and without extension, short hash, sha256."""
    out: set[str] = set()
    for key in ("title", "model_name", "hash", "sha256"):
        value = entry.get(key)
        if value:
            out.add(str(value))
    title = str(entry.get("title") or "")
    if title.endswith("]") and " [" in title:
        out.add(title.rsplit(" [", 1)[0])
    filename = str(entry.get("filename") or "")
    if filename:
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        out.update({filename, base, base.rsplit(".", 1)[0]})
    return out


def _fields(r: httpx.Response) -> tuple[str, str]:
    try:
        data = r.json()
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("error") or ""), str(data.get("errors") or "")
