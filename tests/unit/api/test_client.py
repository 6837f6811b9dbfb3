"""The client SDK signs what it sends (checked by the gateway's verifier), and maps API errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from easel.client import ApiError, ClientConfigError, EaselClient, WaitTimeout
from infra.local.errors import AuthError
from infra.local.sigv4 import LocalCredential, verify

CRED = LocalCredential("acme", "AKIATEST", "s3cret", "arn:aws:iam::123456789012:user/easel-local/acme")


def _client(handler: Any, endpoint: str = "http://127.0.0.1:9999", **kw: Any) -> EaselClient:
    return EaselClient(
        endpoint,
        region="us-west-2",
        access_key_id=CRED.access_key_id,
        secret_access_key=CRED.secret_access_key,
        transport=httpx.MockTransport(handler),
        **kw,
    )


def _verified(request: httpx.Request) -> LocalCredential:
    return verify(
        method=request.method,
        url=str(request.url),
        headers=list(request.headers.multi_items()),
        body=request.content,
        credentials={CRED.access_key_id: CRED},
        region="us-west-2",
    )


def test_every_call_is_signed_verifiably() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert _verified(request) == CRED
        seen.append((request.method, request.url.raw_path.decode()))
        return httpx.Response(200, json={"id": "t1", "status": "queued", "tasks": [], "next": None})

    client = _client(handler)
    client.submit({"model": "sd15", "task_type": "text-to-image", "input": {"prompt": "a dog"}})
    client.get("t1")
    client.cancel("t1")
    client.list(status="queued", limit=5, next="abc_-")
    client.models()
    assert seen == [
        ("POST", "/v1/tasks"),
        ("GET", "/v1/tasks/t1"),
        ("POST", "/v1/tasks/t1/cancel"),
        ("GET", "/v1/tasks?status=queued&limit=5&next=abc_-"),
        ("GET", "/v1/models"),
    ]


def test_a_tampered_request_fails_verification() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        tampered = httpx.Request(
            request.method, request.url, headers=request.headers, content=b'{"model":"x"}'
        )
        with pytest.raises(AuthError):
            _verified(tampered)
        return httpx.Response(200, json={})

    _client(handler).submit({"model": "sd15"})


def test_api_errors_are_raised_with_code_and_field() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {
            "error": {"code": "invalid_field", "message": "input.steps: too many", "field": "input.steps"}
        }
        return httpx.Response(400, json=body)

    with pytest.raises(ApiError) as err:
        _client(handler).submit({})
    assert (err.value.status, err.value.code, err.value.field) == (400, "invalid_field", "input.steps")


def test_non_json_errors_still_raise_api_error() -> None:
    with pytest.raises(ApiError) as err:
        _client(lambda _: httpx.Response(502, text="Bad Gateway")).models()
    assert (err.value.status, err.value.code) == (502, "http_error")


def test_wait_polls_until_terminal_and_reports_updates() -> None:
    statuses = iter(["queued", "processing", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "t1", "status": next(statuses)})

    updates: list[str] = []
    sleeps: list[float] = []
    task = _client(handler).wait("t1", on_update=lambda t: updates.append(t["status"]), sleep=sleeps.append)
    assert task["status"] == "succeeded"
    assert updates == ["queued", "processing", "succeeded"]
    assert len(sleeps) == 2


def test_wait_times_out_with_the_last_objects() -> None:
    client = _client(lambda _: httpx.Response(200, json={"id": "t1", "status": "queued"}))
    with pytest.raises(WaitTimeout) as err:
        client.wait(["t1"], timeout=0, sleep=lambda _: None)
    assert err.value.tasks["t1"]["status"] == "queued"


def test_endpoint_and_region_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EASEL_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ClientConfigError):
        EaselClient()
    with pytest.raises(ClientConfigError):
        EaselClient("ftp://x")
    assert EaselClient("https://abc.execute-api.eu-west-1.amazonaws.com/prod").region == "eu-west-1"
    monkeypatch.setenv("EASEL_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    client = EaselClient()
    assert (client.endpoint, client.region) == ("http://127.0.0.1:1", "ap-south-1")


def test_credentials_from_the_standard_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CRED.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CRED.secret_access_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)

    def handler(request: httpx.Request) -> httpx.Response:
        assert _verified(request) == CRED
        return httpx.Response(200, json={"models": []})

    client = EaselClient("http://127.0.0.1:9999", region="us-west-2", transport=httpx.MockTransport(handler))
    assert client.models() == {"models": []}


def test_request_body_is_the_json_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/json"
        return httpx.Response(202, json=json.loads(request.content))

    assert _client(handler).submit({"model": "sd15"}) == {"model": "sd15"}
