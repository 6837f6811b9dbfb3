"""The local gateway's edge checks, as API Gateway applies them: the served host only, and the throttle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.local.gateway import Gateway, GatewayServer, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _never_called(event: dict[str, Any], context: Any) -> Any:
    raise AssertionError("the handler must not run")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(clock: Clock) -> Iterator[GatewayServer]:
    kwargs: dict[str, Any] = {"throttle": TokenBucket(rate=2.0, burst=3, clock=clock)}
    server = GatewayServer(Gateway(_never_called, {}, "us-west-2", **kwargs), port=0)
    server.start()
    yield server
    server.stop()


def _code(response: httpx.Response) -> str:
    return str(json.loads(response.content)["error"]["code"])


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.2:{port}", "localhost:1"])
def test_a_request_for_another_host_is_refused_before_the_signature_check(
    served: GatewayServer, host: str
) -> None:
    r = httpx.get(f"{served.url}/v1/models", headers={"Host": host.format(port=served.port)})
    assert (r.status_code, _code(r)) == (403, "host_not_served")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_the_served_host_reaches_the_signature_check(served: GatewayServer, host: str) -> None:
    r = httpx.get(f"{served.url}/v1/models", headers={"Host": host.format(port=served.port)})
    assert r.status_code == 403
    assert _code(r) != "host_not_served"  # unsigned: refused by SigV4, i.e. past the host check


def test_requests_over_the_burst_get_429_until_tokens_refill(served: GatewayServer, clock: Clock) -> None:
    codes = [httpx.get(f"{served.url}/v1/models").status_code for _ in range(5)]
    assert codes[:3] == [403, 403, 403]  # within the burst (refused later, by the signature check)
    assert codes[3:] == [429, 429]
    r = httpx.get(f"{served.url}/v1/models")
    assert (r.status_code, _code(r)) == (429, "too_many_requests")
    clock.now += 1.0  # rate 2/s: two more requests
    assert [httpx.get(f"{served.url}/v1/models").status_code for _ in range(3)] == [403, 403, 429]


def test_the_bucket_never_holds_more_than_the_burst(clock: Clock) -> None:
    bucket = TokenBucket(rate=100.0, burst=2, clock=clock)
    clock.now += 3600
    assert [bucket.take() for _ in range(3)] == [True, True, False]
