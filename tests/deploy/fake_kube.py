"""A fake Kubernetes API server on loopback: objects by path, GET/list with label selectors, JSON merge
PATCH (with the deployments ``/scale`` subresource), DELETE honouring finalizers, bearer-token checks.

Controllers are simulated by ``on_request`` hooks (called after each request with the fake itself), so a
test drives state changes from the requests the code makes, never from wall-clock time.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Hook = Callable[["FakeKube", str, str], None]


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKube:
    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.hooks: list[Hook] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if not fake.authorized(self.headers.get("Authorization", "")):
                    self._send(401, {"kind": "Status", "message": "Unauthorized"})
                    return
                status, out = fake.handle(method, self.path, body)
                self._send(status, out)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKube:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def authorized(self, header: str) -> bool:
        return header == f"Bearer {self.token}" or (
            self.token == "*eks*" and header.startswith("Bearer k8s-aws-v1.")
        )

    # -- state -----------------------------------------------------------------------------------------------
    def put(self, path: str, obj: dict[str, Any]) -> None:
        obj.setdefault("metadata", {}).setdefault("name", path.rsplit("/", 1)[-1])
        self.objects[path] = obj

    def paths(self, prefix: str) -> list[str]:
        return [p for p in self.objects if p.startswith(prefix)]

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        with self._lock:
            self.requests.append((method, raw_path, body))
            result = self._apply(method, path, query, body)
        for hook in list(self.hooks):
            hook(self, method, path)
        return result

    def _apply(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        scale = path.endswith("/scale")
        target = path.removesuffix("/scale")
        if method == "GET":
            if target in self.objects:
                return 200, self.objects[target]
            items = [
                o
                for p, o in self.objects.items()
                if p.rsplit("/", 1)[0] == path and _matches(o, query.get("labelSelector", [""])[0])
            ]
            if items or _is_collection(path):
                return 200, {"kind": "List", "items": items}
            return 404, {"kind": "Status", "message": f"{path} not found"}
        if target not in self.objects:
            return 404, {"kind": "Status", "message": f"{target} not found"}
        obj = self.objects[target]
        if method == "PATCH":
            if scale:
                obj.setdefault("spec", {})["replicas"] = body["spec"]["replicas"]
            else:
                merge(obj, body)
            return 200, obj
        if obj["metadata"].get("finalizers"):
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        else:
            del self.objects[target]
        return 200, {"kind": "Status", "status": "Success"}


COLLECTIONS = ("pods", "nodeclaims", "nodepools", "ec2nodeclasses", "deployments", "scaledobjects")


def _is_collection(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in COLLECTIONS


def _matches(obj: dict[str, Any], label_selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels", {})
    for term in filter(None, label_selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True
