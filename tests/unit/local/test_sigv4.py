"""SigV4 verification of the local gateway: what passes and every way to fail."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.credentials import Credentials

from easel.client import sign_request
from infra.local.errors import AuthError
from infra.local.sigv4 import LocalCredential, verify

CRED = LocalCredential("acme", "AKIALOCAL1", "secret-1", "arn:aws:iam::123456789012:user/easel-local/acme")
OTHER = LocalCredential(
    "globex", "AKIALOCAL2", "secret-2", "arn:aws:iam::123456789012:user/easel-local/globex"
)
CREDS = {c.access_key_id: c for c in (CRED, OTHER)}
URL = "http://127.0.0.1:8787/v1/tasks?limit=2&status=queued"
BODY = b'{"model": "sd15"}'


def _signed(
    *, method: str = "POST", url: str = URL, body: bytes = BODY, secret: str = CRED.secret_access_key,
    akid: str = CRED.access_key_id, region: str = "us-west-2", extra: dict[str, str] | None = None,
) -> dict[str, str]:  # fmt: skip
    headers = {"Content-Type": "application/json", "Host": "127.0.0.1:8787", **(extra or {})}
    return sign_request(
        method, url, body=body, headers=headers, credentials=Credentials(akid, secret), region=region
    )


def _verify(headers: dict[str, str], **kw: object) -> LocalCredential:
    args: dict[str, object] = {
        "method": "POST", "url": URL, "headers": headers, "body": BODY, "credentials": CREDS, "region": "us-west-2",
    }  # fmt: skip
    args.update(kw)
    return verify(**args)  # type: ignore[arg-type]


def _code(headers: dict[str, str], **kw: object) -> str:
    with pytest.raises(AuthError) as err:
        _verify(headers, **kw)
    return err.value.code


def test_valid_signature_identifies_the_credential() -> None:
    assert _verify(_signed()) == CRED
    assert _verify(_signed(akid=OTHER.access_key_id, secret=OTHER.secret_access_key)) == OTHER


def test_session_token_and_payload_hash_headers_are_fine_when_honest() -> None:
    headers = _signed(extra={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    assert _verify(headers) == CRED


def test_unsigned_request() -> None:
    assert _code({"Host": "127.0.0.1:8787"}) == "missing_authentication"


def test_garbled_authorization() -> None:
    assert _code({**_signed(), "Authorization": "Bearer abc"}) == "invalid_authorization"


def test_wrong_secret() -> None:
    assert _code(_signed(secret="nope")) == "invalid_signature"


def test_unknown_access_key() -> None:
    assert _code(_signed(akid="AKIANOPE")) == "unknown_access_key"


def test_wrong_region_or_service() -> None:
    assert _code(_signed(region="eu-west-1")) == "invalid_scope"
    headers = _signed()
    headers["Authorization"] = headers["Authorization"].replace("/execute-api/", "/s3/")
    assert _code(headers) == "invalid_scope"


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"model": "other"}'},
        {"url": URL.replace("limit=2", "limit=3")},
        {"url": URL.replace("/v1/tasks", "/v1/models")},
        {"method": "PUT"},
    ],
)
def test_any_tampering_breaks_the_signature(change: dict[str, object]) -> None:
    assert _code(_signed(), **change) == "invalid_signature"


def test_tampered_signed_header() -> None:
    headers = _signed()
    headers["Content-Type"] = "text/plain"
    assert _code(headers) == "invalid_signature"


def test_stale_and_future_dates() -> None:
    headers = _signed()
    now = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert _verify(headers, now=now + timedelta(minutes=4)) == CRED
    assert _code(headers, now=now + timedelta(minutes=6)) == "stale_request"
    assert _code(headers, now=now - timedelta(minutes=6)) == "stale_request"


def test_missing_date() -> None:
    headers = _signed()
    del headers["X-Amz-Date"]
    assert _code(headers) == "invalid_date"


def test_declared_payload_hash_must_be_the_body() -> None:
    assert _code(_signed(extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})) == "invalid_payload_hash"
