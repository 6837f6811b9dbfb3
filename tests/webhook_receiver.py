"""A webhook receiver on 127.0.0.1 for tests: records every POST (headers lower-cased, raw body)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Answers ``status`` (a redirect status points at an unreachable loopback port), or for a path in
    ``scripted`` the next of its statuses (then ``status``); start/stop it with ``with`` or
    :meth:`start`/:meth:`stop`."""

    def __init__(self, status: int = 204, path: str = "/hook") -> None:
        self.status = status
        self.scripted: dict[str, list[int]] = {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    script = receiver.scripted.get(self.path)
                    status = script.pop(0) if script else receiver.status
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.origin}{path}"

    def script(self, path: str, *statuses: int) -> str:
        """Answer requests to ``path`` with ``statuses`` in order (then ``status``); returns its URL."""
        with self._lock:
            self.scripted[path] = list(statuses)
        return f"{self.origin}{path}"

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return list(self.requests)

    def start(self) -> WebhookReceiver:
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
