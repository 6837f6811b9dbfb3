"""The Lambdas' Powertools ``Logger`` writes the one JSON line format of every Easel process
(:mod:`easel.logjson`) instead of Powertools' own: the keys Powertools appends (``append_keys``, the Lambda
context of ``inject_lambda_context``) become fields of the line, and ``trace_id`` is the invocation's X-Ray
trace as a W3C id (the id the agent's and the runtime's spans of the task carry)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

from easel.logjson import JsonFormatter
from easel.tracing import xray_trace_id


class EaselLogFormatter(BasePowertoolsFormatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._json = JsonFormatter(service)
        self._keys: dict[str, Any] = {}

    def append_keys(self, **additional_keys: Any) -> None:
        self._keys.update(additional_keys)

    def get_current_keys(self) -> dict[str, Any]:
        return dict(self._keys)

    def remove_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._keys.pop(key, None)

    def clear_state(self) -> None:
        self._keys.clear()

    def thread_safe_append_keys(self, **additional_keys: Any) -> None:
        self.append_keys(**additional_keys)

    def thread_safe_get_current_keys(self) -> dict[str, Any]:
        return self.get_current_keys()

    def thread_safe_remove_keys(self, keys: Iterable[str]) -> None:
        self.remove_keys(keys)

    def thread_safe_clear_keys(self) -> None:
        self.clear_state()

    def format(self, record: logging.LogRecord) -> str:
        for key, value in self._keys.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "trace_id"):
            trace_id = xray_trace_id(os.environ.get("_X_AMZN_TRACE_ID", ""))
            if trace_id:
                record.trace_id = trace_id
        return self._json.format(record)
