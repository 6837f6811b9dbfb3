"""Standard Webhooks signatures (https://www.standardwebhooks.com): ``v1,<base64 HMAC-SHA256>``. Standard
library only: the webhooks Lambda signs with it, the CLI derives tenant secrets, receivers verify.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``. Each tenant has its own secret, derived
from one master secret so that no per-tenant secret has to be stored: ``whsec_`` + base64 of
HMAC-SHA256(master, "easel-webhooks/<tenant>"). Operators hand a tenant its secret with
``easel webhooks secret TENANT``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "whsec_"


def derive_tenant_secret(master: bytes, tenant: str) -> str:
    key = hmac.new(master, f"easel-webhooks/{tenant}".encode(), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(key).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver does: any of the space-separated signatures may match (key rotation)."""
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split())
