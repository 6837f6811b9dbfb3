"""API keys: format, digest, the authorizer's decision, the usage identifier, and the config that enables them."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from easel import apikeys
from easel.apikeys import KEY_PATTERN, KeyRecord, authorize, key_id_of, matches, mint, usage_identifier
from easel.config import EaselConfig, parse_config
from easel.errors import ConfigError

pytestmark = pytest.mark.unit


def test_a_minted_key_has_the_documented_shape_and_only_its_digest_is_kept() -> None:
    new = mint("acme", label="ci runner")
    m = KEY_PATTERN.fullmatch(new.key)
    assert m is not None and m["key_id"] == new.record.key_id
    assert len(new.record.key_id) == 16 and len(m["secret"]) == 43  # 32 random bytes
    assert new.record.key_hash == hashlib.sha256(new.key.encode()).hexdigest()
    assert m["secret"] not in new.record.model_dump_json()
    assert "acme" not in new.key  # the key does not tell whose it is
    assert new.record.public().keys() == {"key_id", "tenant", "created_at", "label", "revoked_at"}
    other = mint("acme")
    assert other.key != new.key and other.record.key_id != new.record.key_id


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "easel_",
        "easel_abcdefghijklmnop",
        "Easel_abcdefghijklmnop_" + "a" * 43,  # wrong prefix
        "easel_ABCDEFGHIJKLMNOP_" + "a" * 43,  # key id is lower-case base32
        "easel_abcdefghijklmno1_" + "a" * 43,  # 1 is not base32
        "easel_abcdefghijklmnop_" + "a" * 42,  # secret too short
        "easel_abcdefghijklmnop_" + "a" * 44,  # too long
        "easel_abcdefghijklmnop_" + "a" * 42 + "=",
        "easel_abcdefghijklmnop_" + "é" * 43,
        "easel_abcdefghijklmnop_" + "a" * 43 + "\n",
        "x" * 10_000,
    ],
)
def test_malformed_keys_have_no_key_id(presented: str) -> None:
    assert key_id_of(presented) is None


def test_matches_is_the_digest_of_the_whole_key() -> None:
    new = mint("acme")
    assert matches(new.record, new.key)
    assert not matches(new.record, new.key[:-1] + ("A" if new.key[-1] != "A" else "B"))


class Table:
    def __init__(self, *records: KeyRecord) -> None:
        self.records = {r.key_id: r for r in records}
        self.lookups: list[str] = []

    def get(self, key_id: str) -> KeyRecord | None:
        self.lookups.append(key_id)
        return self.records.get(key_id)


def test_the_decisions() -> None:
    good, revoked, orphan = mint("acme"), mint("acme"), mint("initech")
    table = Table(
        good.record,
        revoked.record.model_copy(update={"revoked_at": "2026-01-01T00:00:00+00:00"}),
        orphan.record,
    )
    forged = good.key[:-1] + ("A" if good.key[-1] != "A" else "B")

    def decide(key: str | None) -> tuple[bool, str, int, str | None]:
        d = authorize(key, lookup=table.get, key_tenants={"acme", "globex"})
        return d.allowed, d.reason, d.status, d.tenant

    assert decide(good.key) == (True, "ok", 200, "acme")
    assert decide(None) == (False, "missing", 401, None)
    assert decide("") == (False, "missing", 401, None)
    assert decide("not-a-key") == (False, "malformed", 401, None)
    assert decide(mint("acme").key) == (False, "unknown", 403, None)
    assert decide(forged) == (False, "unknown", 403, None)  # a known id with a wrong secret
    assert decide(revoked.key) == (False, "revoked", 403, "acme")
    assert decide(orphan.key) == (False, "tenant_disabled", 403, "initech")
    # Malformed keys never reach the table.
    assert "not-a-key" not in table.lookups and len(table.lookups) == 5


def test_usage_identifiers_are_long_enough_for_api_gateway_and_distinct() -> None:
    ids = {usage_identifier("easel", t) for t in ("a", "acme", "globex")}
    assert len(ids) == 3 and all(len(i) >= 20 for i in ids)


def test_labels_are_bounded() -> None:
    with pytest.raises(ValidationError):
        mint("acme", label="x" * 65)
    with pytest.raises(ValidationError):
        mint("acme", label="<script>")


def _config(**tenant: object) -> EaselConfig:
    return parse_config(
        {
            "tenants": [{"id": "acme", **tenant}, {"id": "globex"}],
            "models": [{"name": "sd15", "runtime": "sd15"}],
            "runtimes": [{"name": "sd15"}],
        }
    )


def test_api_keys_are_off_unless_a_tenant_sets_them() -> None:
    assert _config().key_tenants == frozenset()
    config = _config(api_keys={"rate_limit": 2, "quota_per_day": 100})
    assert config.key_tenants == {"acme"}
    plan = config.tenants[0].api_keys
    assert plan is not None and (plan.rate_limit, plan.burst_limit, plan.quota_per_day) == (2, 10, 100)
    assert config.api.api_keys.cache_ttl_seconds == 60


@pytest.mark.parametrize(
    ("tenant", "key"),
    [
        ({"api_keys": {"rate_limit": 0}}, "tenants.0.api_keys.rate_limit"),
        ({"api_keys": {"quota_per_day": 0}}, "tenants.0.api_keys.quota_per_day"),
        ({"api_keys": {"burst": 3}}, "tenants.0.api_keys.burst"),
    ],
)
def test_bad_api_key_settings_name_the_key(tenant: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(**tenant)
    assert err.value.key == key


def test_the_cache_ttl_is_bounded_like_api_gateways() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "api": {"api_keys": {"cache_ttl_seconds": 3601}},
                "tenants": [{"id": "acme"}],
                "models": [{"name": "sd15", "runtime": "sd15"}],
                "runtimes": [{"name": "sd15"}],
            }
        )
    assert err.value.key == "api.api_keys.cache_ttl_seconds"
    assert apikeys.HEADER == "x-api-key"
