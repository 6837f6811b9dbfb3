"""API keys of tenants (``x-api-key``): format, hashing, the stored record, the table, and the decision an
authorizer takes over a presented key.

A key reads ``easel_<key id>_<secret>``:

    easel_k7q2mx4vb3nd6wpa_Jm0...43 url-safe base64 characters...
          `- key id (16 base32)  `- secret: 32 random bytes

The key id is public (it is what ``easel keys list`` shows, what the logs carry and what revocation names);
it says nothing about the tenant, so a key seen in a screenshot does not tell whose it is. Only the SHA-256
digest of the whole key is stored. A fast hash is right here, where a slow one (scrypt, argon2) is right
for passwords: a password is guessable, so each guess must be expensive; a 256-bit random secret is not,
so a leaked table still gives nothing to brute-force, and the authorizer stays a millisecond. The digest is
compared in constant time.

The table (``Names.api_keys_table``) holds one item per key, partition key ``key_id``, and an index
``by_tenant`` (``tenant``, ``created_at``) for ``easel keys list``. The authorizer only ever reads one item
by key id; the CLI (an operator) creates, lists and revokes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from easel.errors import ApiKeyNotFound, StoreUnavailable

PREFIX = "easel"
HEADER = "x-api-key"
PARTITION_KEY = "key_id"
GSI_BY_TENANT = "by_tenant"
KEY_ID = r"[a-z2-7]{16}"
KEY_PATTERN = re.compile(rf"^{PREFIX}_(?P<key_id>{KEY_ID})_(?P<secret>[A-Za-z0-9_-]{{43}})$")
KEY_ID_PATTERN = re.compile(rf"^{KEY_ID}$")
# Longer than any valid key; a header over this is refused before any regex or lookup runs.
MAX_KEY_CHARS = 128
# What a refused caller reads (code, message): the key API's gateway responses in AWS
# (infra/constructs/apikeys.py) and the local gateway's answers, by status or usage-plan verdict.
REFUSALS: dict[int | str, tuple[str, str]] = {
    401: ("unauthorized", "send a valid API key in the x-api-key header"),
    403: ("forbidden", "the API key is not valid (unknown, revoked, or its tenant takes no API keys)"),
    "throttled": ("too_many_requests", "rate limit of this tenant's API keys exceeded; retry with backoff"),
    "quota_exceeded": ("quota_exceeded", "daily request quota of this tenant's API keys exceeded"),
}
# API Gateway API keys (the usage plans' identifiers) must be at least 20 characters long.
_USAGE_ID_MIN = 20


class KeyRecord(BaseModel):
    """One stored key: never the secret, only its digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    tenant: str
    key_hash: str
    created_at: str
    label: str = ""
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict[str, Any]:
        """What an operator may see (``easel keys list``): everything but the digest."""
        return self.model_dump(exclude={"key_hash"})


class KeyLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9 ._:/@-]*$")


@dataclass(frozen=True)
class NewKey:
    """A key just minted: ``key`` is shown once and then exists only in the client's hands."""

    key: str
    record: KeyRecord


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def mint(tenant: str, *, label: str = "", now: datetime | None = None) -> NewKey:
    key_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    record = KeyRecord(
        key_id=key_id,
        tenant=tenant,
        key_hash=digest(key),
        created_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        label=KeyLabel(label=label).label,
    )
    return NewKey(key, record)


def key_id_of(presented: str) -> str | None:
    """The key id of a well-formed key, or None (nothing to look up)."""
    if len(presented) > MAX_KEY_CHARS:
        return None
    m = KEY_PATTERN.fullmatch(presented)  # fullmatch: "$" alone would let a trailing newline through
    return m["key_id"] if m else None


def matches(record: KeyRecord, presented: str) -> bool:
    return hmac.compare_digest(record.key_hash.encode(), digest(presented).encode())


def usage_identifier(stack_name: str, tenant: str) -> str:
    """The value of the tenant's API Gateway API key, returned by the authorizer as ``usageIdentifierKey``
    so API Gateway applies that tenant's usage plan. It is an identifier, not a credential: with the API's
    key source ``AUTHORIZER`` no client-sent value is ever compared with it."""
    return f"{stack_name}-usage-{tenant}".ljust(_USAGE_ID_MIN, "-")


# -- the decision ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What an authorizer answers: allowed with the key's tenant, or refused with a reason. ``status`` is
    what API Gateway sends the client: 401 for no or malformed key (nothing to look up), 403 for a key that
    is unknown, revoked, or of a tenant without API keys."""

    allowed: bool
    reason: str
    tenant: str | None = None
    key_id: str | None = None

    @property
    def status(self) -> int:
        return 200 if self.allowed else (401 if self.reason in ("missing", "malformed") else 403)


def authorize(
    presented: str | None,
    *,
    lookup: Callable[[str], KeyRecord | None],
    key_tenants: Collection[str],
) -> Decision:
    """Allow a well-formed, known, unrevoked key whose tenant has API keys enabled (``key_tenants``)."""
    if not presented:
        return Decision(False, "missing")
    key_id = key_id_of(presented)
    if key_id is None:
        return Decision(False, "malformed")
    record = lookup(key_id)
    if record is None or not matches(record, presented):
        return Decision(False, "unknown", key_id=key_id)
    if record.revoked:
        return Decision(False, "revoked", tenant=record.tenant, key_id=key_id)
    if record.tenant not in key_tenants:
        return Decision(False, "tenant_disabled", tenant=record.tenant, key_id=key_id)
    return Decision(True, "ok", tenant=record.tenant, key_id=key_id)


# -- the table ---------------------------------------------------------------------------------------------
class KeyStore:
    """The API keys table over a boto3 DynamoDB client."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def get(self, key_id: str) -> KeyRecord | None:
        # Strongly consistent: a revocation is seen by the very next uncached lookup.
        item = self._call("get_item", Key={PARTITION_KEY: {"S": key_id}}, ConsistentRead=True).get("Item")
        return _record(item) if item else None

    def put(self, record: KeyRecord) -> None:
        self._call(
            "put_item",
            Item=_item(record),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": PARTITION_KEY},
        )

    def list(self, tenant: str) -> list[KeyRecord]:
        out: list[KeyRecord] = []
        kwargs: dict[str, Any] = {
            "IndexName": GSI_BY_TENANT,
            "KeyConditionExpression": "tenant = :t",
            "ExpressionAttributeValues": {":t": {"S": tenant}},
        }
        while True:
            resp = self._call("query", **kwargs)
            out.extend(_record(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def revoke(self, key_id: str, *, tenant: str, now: datetime | None = None) -> KeyRecord:
        """Mark the key revoked (idempotent: a revoked key keeps its first revocation time). A key of another
        tenant is :class:`ApiKeyNotFound`, as an unknown one."""
        record = self.get(key_id)
        if record is None or record.tenant != tenant:
            raise ApiKeyNotFound(key_id, tenant)
        if record.revoked:
            return record
        at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        self._call(
            "update_item",
            Key={PARTITION_KEY: {"S": key_id}},
            UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :at)",
            ConditionExpression="tenant = :t",
            ExpressionAttributeValues={":at": {"S": at}, ":t": {"S": tenant}},
        )
        return record.model_copy(update={"revoked_at": at})

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result: dict[str, Any] = getattr(self._ddb, operation)(TableName=self._table, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise StoreUnavailable(f"api keys table {operation}: {code or 'error'}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"api keys table {operation}: {exc}") from exc
        return result


def _item(record: KeyRecord) -> dict[str, Any]:
    return {k: {"S": v} for k, v in record.model_dump().items() if v is not None}


def _record(item: dict[str, Any]) -> KeyRecord:
    return KeyRecord.model_validate({k: v["S"] for k, v in item.items() if "S" in v})
