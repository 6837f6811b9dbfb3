"""SigV4 verification for the local gateway (service ``execute-api``), the way API Gateway IAM auth does it.

The signature is recomputed with botocore's own signer from the incoming method, URL, the headers the
client says it signed, and the actual body; then compared in constant time. Rejected (``AuthError``):
no/garbled Authorization header, unknown access key, wrong service or region in the scope, missing or
stale ``X-Amz-Date`` (more than 5 minutes off), a declared payload hash that is not the body's, and a
signature that does not match.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from infra.local.errors import AuthError

SERVICE = "execute-api"
MAX_SKEW = timedelta(minutes=5)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


@dataclass(frozen=True)
class LocalCredential:
    """One local credential set: what ``easel local up`` prints, mapped to a principal ARN."""

    tenant: str
    access_key_id: str
    secret_access_key: str
    principal_arn: str


class _Verifier(SigV4Auth):
    """botocore's signer, restricted to exactly the headers the client listed in SignedHeaders."""

    def __init__(self, credentials: Credentials, region: str, signed: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        out = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                out[name] = value
        return out


def verify(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str] | list[tuple[str, str]],
    body: bytes,
    credentials: Mapping[str, LocalCredential],
    region: str,
    now: datetime | None = None,
) -> LocalCredential:
    """Return the credential that signed the request, or raise :class:`AuthError`."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lower: dict[str, list[str]] = {}
    for name, value in pairs:
        lower.setdefault(name.lower(), []).append(value)
    auth = (lower.get("authorization") or [""])[0]
    if not auth:
        raise AuthError("missing_authentication", "request is not signed (no Authorization header)")
    m = _AUTH.match(auth.strip())
    if not m:
        raise AuthError("invalid_authorization", "Authorization header is not AWS4-HMAC-SHA256")
    parts = m["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise AuthError("invalid_authorization", "credential scope is malformed")
    akid, day, scope_region, service, _ = parts
    cred = credentials.get(akid)
    if cred is None:
        raise AuthError("unknown_access_key", f"access key '{akid}' is not a local credential")
    if service != SERVICE:
        raise AuthError("invalid_scope", f"signed for service '{service}', expected '{SERVICE}'")
    if scope_region != region:
        raise AuthError("invalid_scope", f"signed for region '{scope_region}', expected '{region}'")
    amz_date = (lower.get("x-amz-date") or [""])[0]
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthError("invalid_date", "X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ") from None
    if abs((now or datetime.now(UTC)) - signed_at) > MAX_SKEW:
        raise AuthError("stale_request", f"X-Amz-Date {amz_date} is more than 5 minutes from now")
    if day != amz_date[:8]:
        raise AuthError("invalid_scope", "credential scope date differs from X-Amz-Date")
    signed = m["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise AuthError("invalid_authorization", "SignedHeaders must include host and x-amz-date")
    if any(name not in lower for name in signed):
        raise AuthError("invalid_authorization", "a header listed in SignedHeaders is absent")
    declared = next(iter(lower.get("x-amz-content-sha256") or []), None)
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        # Also refuses UNSIGNED-PAYLOAD: the body must always be covered by the signature.
        raise AuthError("invalid_payload_hash", "X-Amz-Content-SHA256 is not the hash of the body")

    request = AWSRequest(method=method.upper(), url=url, data=body)
    for name in signed:
        for value in lower[name]:
            request.headers[name] = value
    request.context["timestamp"] = amz_date
    signer = _Verifier(Credentials(cred.access_key_id, cred.secret_access_key), region, signed)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected.encode(), m["sig"].encode()):
        raise AuthError("invalid_signature", "the request signature does not match")
    return cred
