"""The agent's own HTTP endpoint (``EASEL_AGENT_PORT``), for kubelet probes, preStop and benchmarks.

    GET /ready   200 when the runtime is ready and the loop is polling, else 503 (readiness probe)
    GET /live    200 unless one of the agent's threads died (liveness probe: restart the container)
    GET /drain   stop receiving and block until drained (preStop hook); 200, or 503 if not drained in time
    GET /stats   JSON counters (runtime busy seconds, tasks done, ...) for ``easel bench agent``

Standard library server: four GET routes do not justify a web framework in the sidecar image.

The probes are read-only and open to whoever reaches the port (the kubelet, from the node). ``/drain`` (it
stops the pod taking work) and ``/stats`` answer only 127.0.0.1, ::1 and the ``control_peers`` given (the
node's address, from which the kubelet runs the preStop hook); anyone else gets 403. The chart's
NetworkPolicy keeps other pods off the port altogether; this holds where no engine enforces it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probes:
    ready: Callable[[], dict[str, Any]]
    live: Callable[[], dict[str, Any]]
    drain: Callable[[float], bool]
    stats: Callable[[], dict[str, Any]]
    drain_timeout: float = 60.0


class HealthServer:
    def __init__(
        self,
        probes: Probes,
        *,
        host: str = "0.0.0.0",
        port: int = 8081,
        control_peers: Iterable[str] = (),
    ) -> None:
        handler = _handler_for(probes, frozenset({*_LOOPBACK, *(_plain_ip(p) for p in control_peers)}))
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_LOOPBACK = ("127.0.0.1", "::1")
_CONTROL = ("/drain", "/stats")


def _plain_ip(address: str) -> str:
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    return address.strip().removeprefix("::ffff:")


def _handler_for(probes: Probes, control_peers: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path in _CONTROL and _plain_ip(str(self.client_address[0])) not in control_peers:
                self._send(403, {"error": f"{url.path} is only served to the pod itself and its node"})
                return
            if url.path in ("/ready", "/live"):
                state = (probes.ready if url.path == "/ready" else probes.live)()
                self._send(200 if state.get("ok") else 503, state)
            elif url.path == "/drain":
                query = parse_qs(url.query)
                try:
                    timeout = float(query.get("timeout", [probes.drain_timeout])[0])
                except ValueError:
                    self._send(400, {"error": "timeout must be a number of seconds"})
                    return
                drained = probes.drain(timeout)
                self._send(200 if drained else 503, {"drained": drained})
            elif url.path == "/stats":
                self._send(200, probes.stats())
            else:
                self._send(404, {"error": f"no route {url.path}"})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            # Probes hit every few seconds; access logs would drown the task lines.
            return

    return Handler
