"""Deliver one signed webhook over a pinned, vetted connection (see :mod:`easel.netsafe`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx

from easel.netsafe import Refused, Resolver, Unresolvable, resolve_pinned, system_resolver
from easel.webhook_signing import sign
from lambdas.webhooks.errors import DeliveryFailed, DeliveryRefused, DeliveryRejected


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float = 5.0
    allowed_ports: frozenset[int] = frozenset({443})
    # Test only: origins ("http://127.0.0.1:PORT") reachable without https and address vetting.
    test_insecure_origins: frozenset[str] = frozenset()


class WebhookSender:
    def __init__(
        self, policy: DeliveryPolicy, *, http: httpx.Client, resolver: Resolver = system_resolver
    ) -> None:
        self._policy = policy
        self._http = http
        self._resolve = resolver

    def send(self, url: str, *, secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> int:
        """POST ``body`` signed with ``secret``; returns the receiver's status or raises a WebhookError."""
        try:
            u = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise DeliveryRefused(url, f"not a valid URL ({exc})") from None
        port = u.port or (443 if u.scheme == "https" else 80)
        origin = f"{u.scheme}://{u.raw_host.decode('ascii')}:{port}"
        insecure_test = origin in self._policy.test_insecure_origins
        if not insecure_test:
            if u.scheme != "https":
                raise DeliveryRefused(url, f"scheme '{u.scheme}' is not allowed (https only)")
            if u.userinfo:
                raise DeliveryRefused(url, "user info in URLs is not allowed")
            if port not in self._policy.allowed_ports:
                raise DeliveryRefused(url, f"port {port} is not allowed")
        try:
            target = resolve_pinned(u, self._resolve, vet=not insecure_test)
        except Refused as exc:
            raise DeliveryRefused(url, str(exc)) from None
        except Unresolvable as exc:
            raise DeliveryFailed(url, str(exc)) from None
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, body),
            "user-agent": "easel-webhooks/1",
            "idempotency-key": str(uuid.uuid5(uuid.NAMESPACE_URL, msg_id)),
        }
        request = target.build_request(
            self._http, "POST", content=body, headers=headers, timeout=self._policy.timeout_seconds
        )
        try:
            response = self._http.send(request, follow_redirects=False)
        except httpx.TimeoutException:
            raise DeliveryFailed(url, f"timed out after {self._policy.timeout_seconds}s") from None
        except httpx.TransportError as exc:
            raise DeliveryFailed(url, f"{exc.__class__.__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return status
        if response.is_redirect:
            raise DeliveryRejected(url, f"HTTP {status} redirect (redirects are not followed)", status=status)
        if status in (408, 429) or status >= 500:
            raise DeliveryFailed(url, f"HTTP {status}", status=status)
        raise DeliveryRejected(url, f"HTTP {status}", status=status)
