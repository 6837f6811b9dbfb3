"""The local gateway's API-key path over real HTTP: the event the handler gets, usage-plan 429s, which path a
request takes, and the cache flush that only the stack's admin token may ask for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from easel.apikeys import REFUSALS, KeyRecord, mint
from easel.config import parse_config
from infra.local.gateway import ADMIN_HEADER, FLUSH_PATH, Gateway, GatewayServer
from infra.local.keyauth import KeyAuth

pytestmark = pytest.mark.unit

TOKEN = "admin-token-of-this-run"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Handler:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}


@pytest.fixture
def setup() -> Iterator[tuple[GatewayServer, Handler, dict[str, KeyRecord], str]]:
    config = parse_config(
        {
            "tenants": [{"id": "acme", "api_keys": {"rate_limit": 1, "burst_limit": 2}}, {"id": "globex"}],
            "models": [{"name": "sd15", "runtime": "sd15"}],
            "runtimes": [{"name": "sd15"}],
        }
    )
    records: dict[str, KeyRecord] = {}
    new = mint("acme")
    records[new.record.key_id] = new.record
    handler = Handler()
    auth = KeyAuth(config, records.get, clock=Clock())
    server = GatewayServer(Gateway(handler, {}, "us-west-2", key_auth=auth, admin_token=TOKEN), port=0)
    server.start()
    yield server, handler, records, new.key
    server.stop()


def test_a_key_call_reaches_the_handler_as_an_authorizer_call_then_the_plan_throttles(
    setup: tuple[GatewayServer, Handler, dict[str, KeyRecord], str],
) -> None:
    server, handler, _, key = setup
    replies = [httpx.get(f"{server.url}/v1/tasks", headers={"x-api-key": key}) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]  # burst 2, no time passes on the fake clock
    assert replies[2].json()["error"]["code"] == REFUSALS["throttled"][0]
    context = handler.events[0]["requestContext"]
    assert context["authorizer"]["tenant"] == "acme" and context["authorizer"]["key_id"] == key.split("_")[1]
    assert context["identity"]["userArn"] is None and context["identity"]["accessKey"] is None


def test_authorization_header_means_sigv4_whatever_key_rides_along(
    setup: tuple[GatewayServer, Handler, dict[str, KeyRecord], str],
) -> None:
    server, handler, _, key = setup
    r = httpx.get(f"{server.url}/v1/tasks", headers={"x-api-key": key, "Authorization": "AWS4-HMAC-SHA256 x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_authorization"
    assert handler.events == []


def test_only_the_admin_token_flushes_the_cache(
    setup: tuple[GatewayServer, Handler, dict[str, KeyRecord], str],
) -> None:
    server, _, records, key = setup
    assert httpx.get(f"{server.url}/v1/tasks", headers={"x-api-key": key}).status_code == 200
    key_id = key.split("_")[1]
    records[key_id] = records[key_id].model_copy(update={"revoked_at": "now"})
    for headers in ({}, {ADMIN_HEADER: "wrong"}, {ADMIN_HEADER: TOKEN + "x"}):
        assert httpx.post(f"{server.url}{FLUSH_PATH}", headers=headers).status_code == 403
    assert httpx.get(f"{server.url}{FLUSH_PATH}", headers={ADMIN_HEADER: TOKEN}).status_code == 403
    assert httpx.get(f"{server.url}/v1/tasks", headers={"x-api-key": key}).status_code == 200  # still cached
    assert httpx.post(f"{server.url}{FLUSH_PATH}", headers={ADMIN_HEADER: TOKEN}).status_code == 204
    refused = httpx.get(f"{server.url}/v1/tasks", headers={"x-api-key": key})
    assert refused.status_code == 403 and json.loads(refused.content)["error"]["code"] == "forbidden"
