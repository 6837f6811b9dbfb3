"""Run an agent module with its SQS receive/delete calls timestamped (``python -m easel.bench.probe``).

    python -m easel.bench.probe EVENTS_FILE MODULE [ARGS...]

wraps botocore's ``BaseClient._make_api_call`` (every boto3 client, whatever the agent builds), then runs
``MODULE`` as ``__main__``. Each ``ReceiveMessage`` / ``DeleteMessage`` / ``DeleteMessageBatch`` appends
one JSON line ``{"op", "queue", "start", "end", "count"}`` to EVENTS_FILE, where ``count`` is the number of
messages received or successfully deleted and the times are ``time.monotonic()`` (CLOCK_MONOTONIC, the
same clock in every process of the machine, so they line up with the synthetic runtime's records). Used for
Easel's agent and the baseline alike, so both pay the same (microseconds) for being measured. HTTP calls
(httpx and requests) are recorded too (``op`` ``http``, ``queue`` = ``METHOD /path``): they split each
task's overhead into request transit, runtime, response transit and the agent's own turnaround.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from typing import Any, TextIO

RECORDED = frozenset({"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch"})


def _count(op: str, result: dict[str, Any]) -> int:
    if op == "ReceiveMessage":
        return len(result.get("Messages", []))
    if op == "DeleteMessageBatch":
        return len(result.get("Successful", []))
    return 1


def install(out: TextIO) -> None:
    from botocore.client import BaseClient

    original: Any = BaseClient._make_api_call  # type: ignore[attr-defined]
    lock = threading.Lock()

    def recorded(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if operation_name not in RECORDED:
            return original(self, operation_name, api_params)
        start = time.monotonic()
        result = original(self, operation_name, api_params)
        end = time.monotonic()
        queue = str(api_params.get("QueueUrl", "")).rsplit("/", 1)[-1]
        count = _count(operation_name, result)
        line = json.dumps({"op": operation_name, "queue": queue, "start": start, "end": end, "count": count})
        with lock:
            out.write(line + "\n")
            out.flush()
        return result

    BaseClient._make_api_call = recorded  # type: ignore[attr-defined]


def install_http(out: TextIO) -> None:
    """Also timestamp the agent's calls to the runtime (httpx or requests), for the overhead breakdown."""
    lock = threading.Lock()

    def record(method: str, url: str, start: float, end: float) -> None:
        path = url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
        event = {"op": "http", "queue": f"{method} /{path}", "start": start, "end": end, "count": 1}
        line = json.dumps(event)
        with lock:
            out.write(line + "\n")
            out.flush()

    import httpx

    original_send: Any = httpx.Client.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        response = original_send(self, request, **kwargs)
        record(request.method, str(request.url), start, time.monotonic())
        return response

    httpx.Client.send = send  # type: ignore[method-assign]
    try:
        import requests
    except ImportError:
        return
    original_rsend: Any = requests.Session.send

    def rsend(self: Any, request: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        response = original_rsend(self, request, **kwargs)
        record(str(request.method), str(request.url), start, time.monotonic())
        return response

    requests.Session.send = rsend  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m easel.bench.probe EVENTS_FILE MODULE [ARGS...]")
    events, module, *rest = argv
    out = open(events, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    install(out)
    install_http(out)
    # Diagnostic only (docs/benchmarks.md): a shorter GIL switch interval shows how much of the overhead is
    # threads of the agent waiting for the GIL.
    interval = os.environ.get("EASEL_BENCH_SWITCH_INTERVAL")
    if interval:
        sys.setswitchinterval(float(interval))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
