"""Serve an ASGI app with uvicorn on 127.0.0.1 in a daemon thread of this process.

The port is taken when the server is made (``url`` is known before it starts) and kept: a server stopped and
started again comes back where its clients expect it (a runtime that goes down and returns).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import uvicorn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listen(port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says TCP, and without it every response pays Nagle + delayed ACK (~40 ms on loopback).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class ThreadedServer:
    """``with ThreadedServer(app) as s: s.url``, or ``start()`` / ``stop()`` as often as needed.

    ``port``: a fixed port (an ephemeral one by default); ``lifespan`` as uvicorn's ("off" or "on").
    """

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        lifespan: Literal["auto", "on", "off"] = "off",
        start_timeout: float = 60.0,
        graceful_seconds: int | None = None,
    ) -> None:
        self.app = app
        self._sock: socket.socket | None = _listen(port)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._lifespan: Literal["auto", "on", "off"] = lifespan
        self._start_timeout = start_timeout
        self._graceful = graceful_seconds
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def native_id(self) -> int | None:
        """The serving thread's OS id (for per-thread scheduling priority)."""
        return self._thread.native_id if self._thread is not None else None

    def start(self) -> ThreadedServer:
        sock = self._sock or _listen(self.port)
        self._sock = None  # uvicorn closes it when it stops
        # graceful_seconds: how long a stop waits for requests in flight (None: until they end; a fake that
        # holds requests passes a bound). The runtime bench needs None.
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan=self._lifespan,
            timeout_graceful_shutdown=self._graceful,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{self.port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None
        if self._sock is not None:  # made but never started
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
