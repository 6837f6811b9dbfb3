"""The local gateway's API-key path: the authorizer cache (TTL, flush) and the tenants' usage plans."""

from __future__ import annotations

import pytest

from easel.apikeys import KeyRecord, mint
from easel.config import EaselConfig, parse_config
from infra.local.keyauth import KeyAuth

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(ttl: int = 60, **plan: object) -> EaselConfig:
    return parse_config(
        {
            "api": {"api_keys": {"cache_ttl_seconds": ttl}},
            "tenants": [{"id": "acme", "api_keys": plan}, {"id": "globex"}],
            "models": [{"name": "sd15", "runtime": "sd15"}],
            "runtimes": [{"name": "sd15"}],
        }
    )


class Table:
    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}

    def get(self, key_id: str) -> KeyRecord | None:
        return self.records.get(key_id)


def test_answers_are_cached_for_the_ttl_and_flushed_on_demand() -> None:
    clock, table = Clock(), Table()
    new = mint("acme")
    table.records[new.record.key_id] = new.record
    auth = KeyAuth(_config(ttl=60), table.get, clock=clock)
    assert auth.authenticate(new.key).allowed and auth.lookups == 1
    # Revoked in the table: the cached allow holds within the TTL (as API Gateway's cache does) ...
    table.records[new.record.key_id] = new.record.model_copy(update={"revoked_at": "now"})
    clock.now += 59
    assert auth.authenticate(new.key).allowed and auth.lookups == 1
    # ... and ends with it, or at once with a flush.
    clock.now += 2
    assert auth.authenticate(new.key).reason == "revoked" and auth.lookups == 2
    table.records[new.record.key_id] = new.record
    assert auth.authenticate(new.key).reason == "revoked"  # the deny is cached too
    auth.flush()
    assert auth.authenticate(new.key).allowed and auth.lookups == 3


def test_malformed_keys_are_not_cached_and_ttl_0_caches_nothing() -> None:
    table = Table()
    new = mint("acme")
    table.records[new.record.key_id] = new.record
    auth = KeyAuth(_config(ttl=0), table.get, clock=Clock())
    for _ in range(3):
        assert auth.authenticate(new.key).allowed
        assert auth.authenticate("garbage").status == 401
    assert auth.lookups == 6


def test_a_tenants_usage_plan_throttles_and_caps_its_day() -> None:
    clock, day = Clock(), ["2026-11-30"]
    auth = KeyAuth(_config(rate_limit=1, burst_limit=2, quota_per_day=3), Table().get, clock=clock,
                   today=lambda: day[0])  # fmt: skip
    assert [auth.admit("acme") for _ in range(3)] == [None, None, "throttled"]
    clock.now += 1
    assert auth.admit("acme") is None  # the 3rd request of the day
    clock.now += 10
    assert auth.admit("acme") == "quota_exceeded"
    day[0] = "2026-12-01"
    assert auth.admit("acme") is None
    assert all(auth.admit("globex") is None for _ in range(50))  # no plan: only the stage throttle
