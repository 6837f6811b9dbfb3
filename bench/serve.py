"""Serve an ASGI app with uvicorn on 127.0.0.1 (an ephemeral port) in a daemon thread of this process."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import uvicorn


class ThreadedServer:
    """``with ThreadedServer(app) as s: s.url``; ``lifespan`` as uvicorn's ("off" or "on")."""

    def __init__(
        self, app: Any, *, lifespan: Literal["auto", "on", "off"] = "off", start_timeout: float = 60.0
    ) -> None:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the listening
        # socket says TCP, and without it every response pays Nagle + delayed ACK (~40 ms on loopback).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._start_timeout = start_timeout

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the bench server did not start")
            time.sleep(0.01)
        return self

    @property
    def native_id(self) -> int | None:
        """The serving thread's OS id (for per-thread scheduling priority)."""
        return self._thread.native_id

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()
