"""Run an agent module with its SQS receive/delete calls timestamped (``python -m bench.probe``).

    python -m bench.probe EVENTS_FILE MODULE [ARGS...]

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
import math
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
    """Also timestamp the agent's calls to the runtime (httpx or requests), for the overhead breakdown.

    Besides start and end, each call records when its first and last bytes were handed to the socket
    (``written``, ``written_last``; httpx writes headers and body separately) and how much CPU the calling
    thread used until the first write (``cpu_to_write``): wall time minus that CPU time is time the thread
    was ready but not running (waiting for the GIL or for a core).
    """
    import socket

    lock = threading.Lock()
    local = threading.local()

    def record(method: str, url: str, start: float, end: float) -> None:
        path = url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
        written, cpu = getattr(local, "written", None) or (math.nan, math.nan)
        last = getattr(local, "last_write", None) or math.nan
        event = {
            "op": "http",
            "queue": f"{method} /{path}",
            "start": start,
            "end": end,
            "count": 1,
            "written": written,
            "written_last": last,
            "cpu_to_write": cpu,
        }
        line = json.dumps(event)
        with lock:
            out.write(line + "\n")
            out.flush()

    def mark_write() -> None:
        if getattr(local, "in_call", False):
            local.last_write = time.monotonic()
        entry = getattr(local, "entry", None)
        if entry is not None:
            local.entry = None
            local.written = (local.last_write, time.thread_time() - entry)

    def timed(original: Any) -> Any:
        def send(self: Any, request: Any, **kwargs: Any) -> Any:
            local.entry, local.written, local.last_write, local.in_call = time.thread_time(), None, None, True
            start = time.monotonic()
            try:
                return original(self, request, **kwargs)
            finally:
                local.entry, local.in_call = None, False
                record(str(request.method), str(request.url), start, time.monotonic())

        return send

    for name in ("send", "sendall"):
        sock_original: Any = getattr(socket.socket, name)

        def wrapped(self: Any, *args: Any, _original: Any = sock_original, **kwargs: Any) -> Any:
            mark_write()
            return _original(self, *args, **kwargs)

        setattr(socket.socket, name, wrapped)

    import httpx

    httpx.Client.send = timed(httpx.Client.send)  # type: ignore[method-assign]
    try:
        import requests
    except ImportError:
        return
    requests.Session.send = timed(requests.Session.send)  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.probe EVENTS_FILE MODULE [ARGS...]")
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
