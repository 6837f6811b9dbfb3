"""An image origin served over real HTTP on 127.0.0.1 (the fake runtime is :mod:`bench.synthetic_runtime`)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.synthetic_runtime import png


class Origin:
    """A plain HTTP server on 127.0.0.1 that counts every request it sees (by path).

    Routes: /img.png (a PNG), /redirect?to=URL (302), /notimage, /big (``big_bytes`` bytes, no length),
    /gzip (a PNG claimed as gzip). Used both as an input origin and as the "victim" that must see nothing.
    """

    def __init__(self, *, image: bytes | None = None, big_bytes: int = 0) -> None:
        self.hits: list[tuple[str, float]] = []
        self.image = image if image is not None else png()
        self.big_bytes = big_bytes
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hit_count(self) -> int:
        return len(self.hits)

    def start(self) -> Origin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                origin.hits.append((url.path, time.monotonic()))
                if url.path == "/img.png":
                    self._send(200, origin.image, "image/png")
                elif url.path == "/redirect":
                    target = parse_qs(url.query)["to"][0]
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif url.path == "/notimage":
                    self._send(200, b"<html>hello</html>", "image/png")
                elif url.path == "/big":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    chunk = b"\0" * 65536
                    sent = 0
                    try:
                        while sent < origin.big_bytes:
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                elif url.path == "/gzip":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(origin.image)))
                    self.end_headers()
                    self.wfile.write(origin.image)
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return

        return Handler
