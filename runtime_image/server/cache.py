"""An LRU cache of loaded models, bounded by bytes, that counts what it does.

Keys are model names; a cached value is reused only while the store's fingerprint of its files is unchanged.
The entry just inserted is never evicted, so a single model larger than the budget still loads (alone).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    value: T
    nbytes: int
    fingerprint: Hashable
    load_seconds: float
    loaded_at: float
    last_used: float
    uses: int = 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    reloads: int = 0
    load_seconds_total: float = 0.0
    evicted: list[str] = field(default_factory=list)


class LruCache(Generic[T]):
    def __init__(
        self,
        max_bytes: int,
        *,
        size_of: Callable[[T], int],
        on_evict: Callable[[str, T], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes={max_bytes}: must be > 0")
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._on_evict = on_evict
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get_or_load(self, key: str, fingerprint: Hashable, load: Callable[[], T]) -> tuple[T, bool]:
        """The cached value for ``key`` (``hit=True``), else ``load()`` it and cache it (``hit=False``)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.fingerprint == fingerprint:
                self._entries.move_to_end(key)
                entry.uses += 1
                entry.last_used = self._clock()
                self.stats.hits += 1
                return entry.value, True
            if entry is not None:
                # The files changed under the same name: the old weights must go.
                self.stats.reloads += 1
                self._drop(key)
            self.stats.misses += 1
        # Loading can take seconds: do it outside the lock so stats stay readable meanwhile.
        start = self._clock()
        value = load()
        took = self._clock() - start
        now = self._clock()
        with self._lock:
            self.stats.load_seconds_total += took
            self._entries[key] = _Entry(value, self._size_of(value), fingerprint, took, now, now, uses=1)
            self._evict_over_budget(keep=key)
        return value, False

    def peek(self, key: str) -> T | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.value if entry else None

    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "max_bytes": self.max_bytes,
                "used_bytes": sum(e.nbytes for e in self._entries.values()),
                "hits": self.stats.hits,
                "misses": self.stats.misses,
                "evictions": self.stats.evictions,
                "reloads": self.stats.reloads,
                "load_seconds_total": round(self.stats.load_seconds_total, 4),
                "evicted": list(self.stats.evicted[-20:]),
                # Most recently used last, as in the LRU order.
                "models": [
                    {
                        "name": key,
                        "bytes": e.nbytes,
                        "uses": e.uses,
                        "load_seconds": round(e.load_seconds, 4),
                        "idle_seconds": round(self._clock() - e.last_used, 3),
                    }
                    for key, e in self._entries.items()
                ],
            }

    def _evict_over_budget(self, keep: str) -> None:
        while sum(e.nbytes for e in self._entries.values()) > self.max_bytes:
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                return
            self._drop(victim)
            self.stats.evictions += 1
            self.stats.evicted.append(victim)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        if self._on_evict is not None:
            self._on_evict(key, entry.value)
