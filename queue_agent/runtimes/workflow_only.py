"""What a workflow runtime (ComfyUI) does not do, as the seam's methods: SD WebUI-style requests, upscaling,
training and private LoRAs are refused with :class:`~queue_agent.errors.Unsupported` (a permanent failure
naming the kind); there is no model switch, the workflow's loader nodes name their checkpoints."""

from __future__ import annotations

from typing import Any

from easel.contract import GenerationInput, TrainLoraInput, UpscaleInput
from queue_agent.errors import Unsupported
from queue_agent.runtimes import RuntimeRequest


class WorkflowOnly:
    def ensure_model(self, store_path: str) -> bool:
        del store_path  # the workflow's loader nodes name their checkpoints
        return False

    def generation_request(
        self,
        data: GenerationInput,
        *,
        init_images: list[bytes],
        lora_names: dict[str, str],
        mask: bytes | None = None,
        control_images: list[bytes] | None = None,
    ) -> RuntimeRequest:
        del data, init_images, lora_names, mask, control_images
        raise Unsupported("a comfyui runtime runs pipeline tasks (ComfyUI workflows), not SD WebUI requests")

    def upscale_request(self, data: UpscaleInput, *, image: bytes) -> RuntimeRequest:
        del data, image
        raise Unsupported("upscale tasks need the Easel runtime or a stock SD WebUI (extras), not ComfyUI")

    def training_request(self, data: TrainLoraInput, *, images: list[bytes], model: str) -> RuntimeRequest:
        del data, images, model
        raise Unsupported("train-lora needs the Easel runtime (kind diffusers)")

    def train(self, request: RuntimeRequest) -> dict[str, Any]:
        del request
        raise Unsupported("train-lora needs the Easel runtime (kind diffusers)")

    def private_lora(self, tenant: str, name: str) -> dict[str, Any] | None:
        del tenant, name
        return None

    def put_private_lora(
        self, tenant: str, name: str, data: bytes, *, source_etag: str | None = None
    ) -> dict[str, Any]:
        del tenant, name, data, source_etag
        raise Unsupported("a comfyui runtime takes LoRAs from its workflow's loader nodes only")
