"""API keys at the local gateway: the deployed authorizer's decision (:func:`easel.apikeys.authorize`) over
the emulator's keys table, with API Gateway's authorizer cache and per-tenant usage plans around it.

- Cache: an answer (allow or deny) is kept per presented key for ``api.api_keys.cache_ttl_seconds``, as
  API Gateway caches a REQUEST authorizer's policy by its identity source; :meth:`KeyAuth.flush` empties
  it, as ``FlushStageAuthorizersCache`` does (``easel keys revoke`` calls it). The cache holds digests of
  keys, never the keys.
- Usage plans: each tenant with ``api_keys`` gets a token bucket (``rate_limit``/``burst_limit``) and a
  per-UTC-day request count (``quota_per_day``): over either, 429, like API Gateway's THROTTLED and
  QUOTA_EXCEEDED responses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from easel import apikeys
from easel.apikeys import Decision, KeyRecord
from easel.config import EaselConfig
from infra.local.gateway import TokenBucket


@dataclass
class _Plan:
    bucket: TokenBucket
    quota: int | None
    day: str = ""
    used: int = 0


class KeyAuth:
    def __init__(
        self,
        config: EaselConfig,
        lookup: Callable[[str], KeyRecord | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], str] = lambda: datetime.now(UTC).date().isoformat(),
    ) -> None:
        self._lookup = lookup
        self._tenants = config.key_tenants
        self._ttl = float(config.api.api_keys.cache_ttl_seconds)
        self._clock = clock
        self._today = today
        self._cache: dict[str, tuple[float, Decision]] = {}
        self._lock = threading.Lock()
        self._plans = {
            t.id: _Plan(
                TokenBucket(t.api_keys.rate_limit, t.api_keys.burst_limit, clock), t.api_keys.quota_per_day
            )
            for t in config.tenants
            if t.api_keys is not None
        }
        self.lookups = 0  # authorizer invocations (cache misses), as API Gateway's metrics would show

    def authenticate(self, presented: str) -> Decision:
        """The decision for a presented key: cached for the TTL, else taken against the table."""
        slot = apikeys.digest(presented) if presented.isascii() else ""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(slot)
            if hit is not None and hit[0] > now:
                return hit[1]
        decision = apikeys.authorize(presented, lookup=self._lookup, key_tenants=self._tenants)
        with self._lock:
            self.lookups += 1
            # A missing or malformed key never reaches the authorizer in AWS (401 at the edge): not cached.
            if self._ttl > 0 and decision.status != 401:
                self._cache[slot] = (now + self._ttl, decision)
        return decision

    def flush(self) -> None:
        with self._lock:
            self._cache.clear()

    def admit(self, tenant: str) -> str | None:
        """None if the tenant's usage plan lets one more request through; else why not."""
        plan = self._plans.get(tenant)
        if plan is None:
            return None
        if not plan.bucket.take():
            return "throttled"
        with self._lock:
            day = self._today()
            if plan.day != day:
                plan.day, plan.used = day, 0
            if plan.quota is not None and plan.used >= plan.quota:
                return "quota_exceeded"
            plan.used += 1
        return None
