"""The exception tree of the runtime server; ``http`` maps each branch to one status code.

RuntimeServerError
├── RequestError             a request asks for something invalid or unsupported (422); names the field
│   └── TooLargeError        an upload body is over its limit (413)
├── NotFoundError            a named thing is not in the model store (404, permanent for the agent)
│   ├── ModelNotFound
│   └── LoraNotFound
├── UnavailableError         try again later (503, retryable for the agent)
│   ├── BusyError            one generation runs and the waiting queue is full
│   └── NotReadyError        the server is starting or its start failed
├── ModelLoadError           a model exists but cannot be loaded (500)
└── InternalError            anything else that failed inside a job, e.g. CUDA out of memory (500)
"""

from __future__ import annotations

from typing import Any


class RuntimeServerError(Exception):
    """Base of every error the runtime server raises on purpose."""

    code = "runtime_error"


class RequestError(RuntimeServerError):
    """``field`` (a dotted path such as ``override_settings.sd_vae``) holds ``value``, which we refuse."""

    code = "invalid_request"

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class TooLargeError(RequestError):
    code = "too_large"


class NotFoundError(RuntimeServerError):
    code = "not_found"
    kind = "item"

    def __init__(self, name: str, available: list[str] | None = None) -> None:
        hint = f"; available: {', '.join(available)}" if available else ""
        super().__init__(f"{self.kind} '{name}' not found in the model store{hint}")
        self.name = name
        self.available = available or []


class ModelNotFound(NotFoundError):
    code = "model_not_found"
    kind = "model"


class LoraNotFound(NotFoundError):
    code = "lora_not_found"
    kind = "lora"


class UnavailableError(RuntimeServerError):
    code = "unavailable"


class BusyError(UnavailableError):
    code = "busy"

    def __init__(self, running: int, waiting: int, max_waiting: int) -> None:
        super().__init__(
            f"busy: {running} running and {waiting} waiting (max_waiting={max_waiting}); retry later"
        )
        self.running = running
        self.waiting = waiting
        self.max_waiting = max_waiting


class NotReadyError(UnavailableError):
    code = "not_ready"

    def __init__(self, status: str, detail: str | None = None) -> None:
        super().__init__(f"server is {status}" + (f": {detail}" if detail else ""))
        self.status = status


class ModelLoadError(RuntimeServerError):
    """``model`` exists in the store but loading it failed (corrupt files, missing config, wrong class)."""

    code = "model_load_failed"

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"model '{model}' could not be loaded: {reason}")
        self.model = model
        self.reason = reason


class InternalError(RuntimeServerError):
    """A job failed for a reason of ours; ``cause`` names the original exception type."""

    code = "internal"

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = type(cause).__name__
