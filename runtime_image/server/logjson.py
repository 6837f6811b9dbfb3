"""One JSON log format for every Easel process: the API and webhooks handlers, the queue agent, the runtime
and the local stack's workers.

Each record is one JSON object on one line: ``ts`` (epoch seconds), ``level``, ``service``, ``logger``,
``msg``, then the fields bound with :func:`log_context` (``task_id``, ``trace_id``, ...), then the record's
``extra`` fields, then ``exc`` for an exception. A line about a task carries its ``task_id`` and
``trace_id``: bound for the duration of the work (:func:`log_context`), passed as ``extra``, or, for
``trace_id``, read from the active span through the hook a process installs (:func:`set_trace_id_hook`).
An ``_aws`` extra (a CloudWatch EMF directive) is kept as is, so a line can also be a metric.

Standard library only: the runtime imports nothing of this repository and keeps an identical copy in
``runtime_image/server/logjson.py`` (``tests/unit/layers/test_runtime_copies.py`` proves they agree).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# botocore/urllib3/httpx at INFO log every request: noise at our rates.
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "httpx", "httpcore")

_bound: ContextVar[dict[str, Any]] = ContextVar("easel_log_context", default={})  # noqa: B039
_trace_id_hook: Callable[[], str | None] | None = None


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` (e.g. ``task_id``, ``trace_id``) to every line logged in this context."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def set_trace_id_hook(hook: Callable[[], str | None] | None) -> None:
    """``hook()`` returns the active trace id (32 hex digits) or ``None``; lines without one get it."""
    global _trace_id_hook
    _trace_id_hook = hook


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_bound.get())
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if "_aws" in record.__dict__:
            doc["_aws"] = record.__dict__["_aws"]
        if "trace_id" not in doc and _trace_id_hook is not None:
            trace_id = _trace_id_hook()
            if trace_id:
                doc["trace_id"] = trace_id
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(service: str, level: str = "INFO", stream: IO[str] | None = None) -> None:
    """JSON lines on ``stream`` (stdout) for the root logger; quiet the per-request loggers of HTTP libs."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
