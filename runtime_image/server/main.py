"""Process entry: quiet, offline library defaults, then uvicorn serving :func:`create_app`."""

from __future__ import annotations

import os
import warnings

from fastapi import FastAPI

from runtime_image.server import logjson, tracing
from runtime_image.server.settings import RuntimeSettings

SERVICE = "easel-runtime"


def offline_defaults() -> None:
    """No hub access from this process (weights come from the store only) and no progress bars in logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    # Several adapters per model are the design (see lora.py), not an accident peft should warn about.
    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
    warnings.filterwarnings(
        "ignore", message="Adapter .* was active which is now deleted", category=UserWarning
    )


def build_app(settings: RuntimeSettings) -> FastAPI:
    offline_defaults()
    from runtime_image.server.http import create_app
    from runtime_image.server.runner import Runner

    return create_app(Runner(settings))


def serve(settings: RuntimeSettings, *, log_level: str = "info") -> None:
    import uvicorn

    # The one JSON line format of every Easel process; uvicorn's loggers go through the same handler.
    logjson.configure_logging(SERVICE, log_level)
    tracing.configure_tracing(SERVICE)
    logjson.set_trace_id_hook(tracing.current_trace_id)
    uvicorn.run(
        build_app(settings), host=settings.host, port=settings.port, log_level=log_level, log_config=None
    )
