"""The runtime seam: what the agent needs from "the runtime", whatever kind it is.

The loop (prepare, execute, the LoRA resolver) talks only to :class:`Runtime`; each kind of runtime is one
adapter module here that maps this interface to its own API and its errors to the agent's tree
(:mod:`queue_agent.errors`). Another kind of runtime is one new module and one line in
:func:`make_runtime`, no change to the loop.

    ready        wait_ready(timeout, stop)            poll its health until it can take work
    model        ensure_model(store_path) -> switched  select the checkpoint (switch only when different)
    requests     generation_request / training_request / upscale_request / pipeline_request:
                 the adapter's own request
    generate     generate(request) -> images           one generation, PNG (or other image) bytes
    train        train(request) -> answer              one LoRA training (weights_b64 in the answer)
    progress     progress() -> fraction | None         how far the running call is (best effort)
    interrupt    interrupt() -> sent                   stop the running call between steps (best effort)
    LoRA upload  private_lora / put_private_lora       a tenant's private adapter, held as <tenant>/<name>

Adapters, one per ``runtimes[].kind`` (``EASEL_RUNTIME_KIND``):

    diffusers   :mod:`queue_agent.runtimes.webui`    the Easel runtime (SD WebUI dialect + /health, /easel/v1)
    sdwebui     :mod:`queue_agent.runtimes.sdwebui`  a stock AUTOMATIC1111 SD WebUI (--api --nowebui)
    comfyui     :mod:`queue_agent.runtimes.comfyui`  a stock ComfyUI (/prompt, /ws, /history, /view)

An adapter refuses what its runtime cannot do with :class:`~queue_agent.errors.Unsupported` (a permanent
failure naming the kind), e.g. a pipeline for an SD WebUI or a text-to-image task for ComfyUI.

Optional, for cross-task batching (:mod:`queue_agent.batching`): an adapter that can run several generation
requests as one generation has ``generate_batch(requests) -> [images | error per request]`` and says so in
``batching`` (:class:`BatchRuntime`, :func:`batch_runtime`); today the Easel runtime's adapter. Others need
nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from easel.contract import GenerationInput, PipelineInput, TrainLoraInput, UpscaleInput


@dataclass(frozen=True)
class RuntimeRequest:
    """An adapter's request, opaque to the loop: ``kind`` names the call (for logs and the adapter)."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    training: bool = False
    # Input files the adapter uploads before the call (ComfyUI: name -> bytes), and notes for the adapter
    # that are not part of the body (e.g. the LoRA names a stock WebUI must have).
    files: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # Upscaling uses no checkpoint: the agent skips the model switch for it.
    needs_model: bool = True


class Runtime(Protocol):
    """One runtime, one call at a time (the agent serializes generations)."""

    def wait_ready(self, timeout: float, *, stop: threading.Event | None = None) -> bool: ...

    def ensure_model(self, store_path: str) -> bool: ...

    def generation_request(
        self,
        data: GenerationInput,
        *,
        init_images: list[bytes],
        lora_names: dict[str, str],
        mask: bytes | None = None,
        control_images: list[bytes] | None = None,
    ) -> RuntimeRequest: ...

    def upscale_request(self, data: UpscaleInput, *, image: bytes) -> RuntimeRequest: ...

    def training_request(
        self, data: TrainLoraInput, *, images: list[bytes], model: str
    ) -> RuntimeRequest: ...

    def pipeline_request(self, data: PipelineInput, *, images: dict[str, bytes]) -> RuntimeRequest: ...

    def generate(self, request: RuntimeRequest) -> list[bytes]: ...

    def train(self, request: RuntimeRequest) -> dict[str, Any]: ...

    def progress(self) -> float | None: ...

    def interrupt(self) -> bool: ...

    def private_lora(self, tenant: str, name: str) -> dict[str, Any] | None: ...

    def put_private_lora(
        self, tenant: str, name: str, data: bytes, *, source_etag: str | None = None
    ) -> dict[str, Any]: ...


class BatchRuntime(Runtime, Protocol):
    """A runtime that takes mixed batches: one generation for several compatible requests."""

    @property
    def batching(self) -> bool: ...

    def generate_batch(self, requests: list[RuntimeRequest]) -> list[list[bytes] | Exception]:
        """Per request, in order: its images, or the error that concerns it alone (the agent's tree). An
        error that concerns the whole call (runtime down, busy, crashed) is raised."""
        ...


def batch_runtime(runtime: Runtime) -> BatchRuntime | None:
    """``runtime`` as a :class:`BatchRuntime` when it takes mixed batches, else None."""
    if callable(getattr(runtime, "generate_batch", None)) and getattr(runtime, "batching", False):
        return runtime  # type: ignore[return-value]
    return None


RuntimeKind = Literal["diffusers", "sdwebui", "comfyui"]


def make_runtime(
    http: httpx.Client,
    *,
    generate_timeout: float,
    kind: RuntimeKind = "diffusers",
    lora_style: str = "field",
) -> Runtime:
    """The adapter of this agent's runtime kind (``EASEL_RUNTIME_KIND``)."""
    if kind == "sdwebui":
        from queue_agent.runtimes.sdwebui import SdWebUiRuntime

        return SdWebUiRuntime(http, generate_timeout=generate_timeout)
    if kind == "comfyui":
        from queue_agent.runtimes.comfyui import ComfyUiRuntime

        return ComfyUiRuntime(http, generate_timeout=generate_timeout)
    from queue_agent.runtimes.webui import WebUiRuntime

    return WebUiRuntime(http, generate_timeout=generate_timeout, lora_style=lora_style)
