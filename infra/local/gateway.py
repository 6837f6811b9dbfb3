"""The local API gateway: throttle, host and SigV4 checks, then the same Lambda handler through a REST
proxy event.

A raw ASGI app (no framework routing: every path goes to the handler, as with API Gateway's
``/{proxy+}``), served by uvicorn on 127.0.0.1 from a background thread. The handler runs in a worker thread
so a slow request does not block the event loop.

As API Gateway does: requests over the stage's rate/burst (``api.throttle``, a token bucket) get 429
before anything else runs, and only the host the gateway serves is answered (an execute-api domain
answers only for itself), so a signed request with another ``Host`` cannot steer the URLs the API
builds from it.

A request with ``x-api-key`` and no ``Authorization`` header is authorized by the API-key path instead of
SigV4 (:mod:`infra.local.keyauth`: the deployed authorizer's decision, its cache, the tenants' usage plans);
in AWS the two are separate APIs with the same routes (docs/api.md, "API keys"). The handler then sees
what API Gateway hands it after a Lambda authorizer: ``requestContext.authorizer`` with the key's tenant
and key id, and no IAM identity. ``POST /_easel/flush-authorizers-cache`` with the stack's admin token (in
the state file) empties the authorizer cache, as ``FlushStageAuthorizersCache`` does in AWS.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from easel.apikeys import HEADER as API_KEY_HEADER
from easel.apikeys import REFUSALS as KEY_REFUSALS
from infra.local.errors import AuthError, StackError
from infra.local.events import LocalLambdaContext, ProxyResponse, from_proxy_result, proxy_event
from infra.local.sigv4 import LocalCredential, verify

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from infra.local.keyauth import KeyAuth

log = logging.getLogger("easel.local.gateway")

Handler = Callable[[dict[str, Any], Any], Any]
# API Gateway's own payload cap; the handler enforces the (smaller) configured limit with a 4xx of its own.
MAX_PAYLOAD = 10 * 1024 * 1024
FLUSH_PATH = "/_easel/flush-authorizers-cache"
ADMIN_HEADER = "x-easel-admin-token"


class TokenBucket:
    """API Gateway's throttle: ``rate`` requests per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


class Gateway:
    def __init__(
        self,
        handler: Handler,
        credentials: Mapping[str, LocalCredential],
        region: str,
        *,
        max_payload: int = MAX_PAYLOAD,
        throttle: TokenBucket | None = None,
        hosts: frozenset[str] = frozenset(),
        tracer: Tracer | None = None,
        key_auth: KeyAuth | None = None,
        admin_token: str = "",
    ) -> None:
        """``hosts``: the ``Host`` values answered (``host:port``); empty until the server pins its own.
        ``key_auth``: accept ``x-api-key`` too; ``admin_token``: what a cache flush must present."""
        self._handler = handler
        self._credentials = dict(credentials)
        self._region = region
        self._max_payload = max_payload
        self._throttle = throttle
        self.hosts = hosts
        # The request span of each call (local mode's stand-in for API Gateway's and Lambda's X-Ray trace).
        self._tracer = tracer
        self._key_auth = key_auth
        self._admin_token = admin_token

    def pin(self, host: str, port: int) -> None:
        """Serve only this address (by IP, and as ``localhost`` when it is the loopback)."""
        names = {host, "localhost"} if host in ("127.0.0.1", "::1") else {host}
        self.hosts = frozenset(f"{name}:{port}" for name in names)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        response = await self._respond(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        log.info(
            "%s %s -> %d (%.1f ms)",
            scope["method"],
            scope["path"],
            response.status,
            (time.monotonic() - started) * 1000,
        )

    async def _respond(self, scope: dict[str, Any], receive: Any) -> ProxyResponse:
        if self._throttle is not None and not self._throttle.take():
            return _error(429, "too_many_requests", "rate limit exceeded; retry with backoff")
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if len(body) > self._max_payload:
                return _error(413, "payload_too_large", f"body over {self._max_payload} bytes")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        host = next((v for k, v in headers if k.lower() == "host"), "")
        if host.lower() not in self.hosts:
            return _error(403, "host_not_served", "this gateway does not serve that host")
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client") or ("127.0.0.1", 0)
        if scope["path"] == FLUSH_PATH:
            return self._flush(scope["method"], headers)
        names = {k.lower() for k, _ in headers}
        if self._key_auth is not None and API_KEY_HEADER in names and "authorization" not in names:
            return await self._with_key(scope, headers, bytes(body), query, host, client[0])
        url = f"http://{host}{raw_path.decode('latin-1')}" + (f"?{query}" if query else "")
        try:
            cred = verify(
                method=scope["method"],
                url=url,
                headers=headers,
                body=bytes(body),
                credentials=self._credentials,
                region=self._region,
            )
        except AuthError as exc:
            return _error(403, exc.code, exc.message)
        event = proxy_event(
            method=scope["method"],
            path=scope["path"],
            query=query,
            headers=headers,
            body=bytes(body),
            principal_arn=cred.principal_arn,
            access_key_id=cred.access_key_id,
            source_ip=client[0],
            host=host,
        )
        return await anyio.to_thread.run_sync(self._invoke, event)

    async def _with_key(
        self,
        scope: dict[str, Any],
        headers: list[tuple[str, str]],
        body: bytes,
        query: str,
        host: str,
        source_ip: str,
    ) -> ProxyResponse:
        assert self._key_auth is not None
        # API Gateway's identity source takes one value; the last of a repeated header, like the proxy maps.
        presented = [v for k, v in headers if k.lower() == API_KEY_HEADER][-1]
        decision = await anyio.to_thread.run_sync(self._key_auth.authenticate, presented)
        if not decision.allowed or decision.tenant is None:
            # The key id only (never the key): what the authorizer logs too.
            log.info("api key refused: %s (key id %s)", decision.reason, decision.key_id or "-")
            return _error(decision.status, *KEY_REFUSALS[decision.status])
        limited = self._key_auth.admit(decision.tenant)
        if limited is not None:
            return _error(429, *KEY_REFUSALS[limited])
        event = proxy_event(
            method=scope["method"],
            path=scope["path"],
            query=query,
            headers=headers,
            body=body,
            principal_arn=None,
            access_key_id=None,
            source_ip=source_ip,
            host=host,
            authorizer={"principalId": decision.key_id, "tenant": decision.tenant, "key_id": decision.key_id},
        )
        return await anyio.to_thread.run_sync(self._invoke, event)

    def _flush(self, method: str, headers: list[tuple[str, str]]) -> ProxyResponse:
        import hmac

        token = next((v for k, v in headers if k.lower() == ADMIN_HEADER), "")
        if method != "POST" or not self._admin_token or not hmac.compare_digest(token, self._admin_token):
            return _error(403, "forbidden", "flushing the authorizer cache needs the stack's admin token")
        if self._key_auth is not None:
            self._key_auth.flush()
        return ProxyResponse(204, [], b"")

    def _invoke(self, event: dict[str, Any]) -> ProxyResponse:
        if self._tracer is None:
            return self._call_handler(event)
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        method, path = event["httpMethod"], event["path"]
        with self._tracer.start_as_current_span(
            f"{method} {path}",
            context=propagate.extract(headers),  # a caller's own traceparent stays the parent
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            # The API reads the W3C parent of the task's message from the request (lambdas/api/http.py), as
            # the Lambda does from API Gateway's trace header.
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            event["headers"] = {**(event.get("headers") or {}), **carrier}
            event["multiValueHeaders"] = {
                **(event.get("multiValueHeaders") or {}),
                **{k: [v] for k, v in carrier.items()},
            }
            response = self._call_handler(event)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status}"))
            task_id = _created_task_id(method, path, response)
            if task_id is not None:
                span.set_attribute("easel.task_id", task_id)
            return response

    def _call_handler(self, event: dict[str, Any]) -> ProxyResponse:
        try:
            result = self._handler(event, LocalLambdaContext())
        except Exception:
            # What API Gateway does when the function itself fails.
            log.exception("handler raised")
            return _error(502, "lambda_error", "the API function failed")
        return from_proxy_result(result)


def _created_task_id(method: str, path: str, response: ProxyResponse) -> str | None:
    """The id of the task a submit created (its span then belongs to the task's trace); None otherwise
    (reads and cancels are traces of their own)."""
    if method != "POST" or path.endswith("/cancel") or not 200 <= response.status < 300:
        return None
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    task_id = body.get("id") if isinstance(body, dict) else None
    return task_id if isinstance(task_id, str) else None


def _error(status: int, code: str, message: str) -> ProxyResponse:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return ProxyResponse(status, [("content-type", "application/json")], body)


class GatewayServer:
    """uvicorn serving a :class:`Gateway` on 127.0.0.1 from a daemon thread."""

    def __init__(self, app: Gateway, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio turns on TCP_NODELAY only for sockets whose proto says TCP, and
        # without it every response waits ~40 ms for the client's delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise StackError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host, self.port = self._sock.getsockname()[:2]
        app.pin(self.host, self.port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StackError(f"the local gateway did not start on {self.url}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
