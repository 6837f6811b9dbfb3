"""LoRA adapters applied per request.

A request names adapters in the Easel field ``loras: [{"name", "weight"}]`` or with the A1111 prompt syntax
``<lora:name:weight>``. The first use of an adapter on a model reads its file and injects it (peft); later
uses only switch it on (a cache hit). After every request all adapters are switched off, so the next request
without LoRAs runs the base weights exactly. Each model keeps at most ``max_resident`` adapters injected;
the least recently used one is deleted beyond that.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from runtime_image.server.errors import RequestError
from runtime_image.server.store import ModelStore

# <lora:name>, <lora:name:weight>, and A1111's <lora:name:te_weight:unet_weight> (the unet weight is ignored).
_PROMPT_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>")


@dataclass(frozen=True)
class LoraUse:
    name: str
    weight: float = 1.0
    # Only the ``loras`` request field may name a private ``<tenant>/<name>`` adapter; prompt tags are
    # client text and resolve in the public store only.
    allow_private: bool = False


def parse_prompt_loras(prompt: str) -> tuple[str, list[LoraUse]]:
    """Split A1111 ``<lora:name:weight>`` tags out of ``prompt``."""
    uses: list[LoraUse] = []

    def take(match: re.Match[str]) -> str:
        name, raw = match.group(1).strip(), (match.group(2) or "").strip()
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            raise RequestError("prompt", match.group(0), "LoRA weight must be a number") from None
        uses.append(LoraUse(name, weight))
        return ""

    cleaned = _PROMPT_TAG.sub(take, prompt)
    return re.sub(r"\s{2,}", " ", cleaned).strip(" ,"), uses


def merge_uses(explicit: list[LoraUse], from_prompt: list[LoraUse]) -> list[LoraUse]:
    seen: set[str] = set()
    for use in [*explicit, *from_prompt]:
        if use.name in seen:
            raise RequestError("loras", use.name, "adapter requested twice (loras field or prompt tags)")
        seen.add(use.name)
    return [*explicit, *from_prompt]


def adapter_name(name: str) -> str:
    """A peft adapter name (a module key: no dots) that stays unique for every store name."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"lora_{re.sub(r'[^A-Za-z0-9_]', '_', name)}_{digest}"


@dataclass
class LoraStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    active: list[dict[str, Any]] = field(default_factory=list)


class AdapterSet:
    """The adapters injected into one pipeline (one per cached model)."""

    def __init__(self, max_resident: int, stats: LoraStats, lock: threading.Lock) -> None:
        self.max_resident = max_resident
        self._stats = stats
        self._lock = lock
        # store name -> (peft adapter name, file fingerprint); most recently used last. Only the worker
        # thread touches it; readers get the immutable snapshot in _names.
        self._resident: OrderedDict[str, tuple[str, tuple[int, int]]] = OrderedDict()
        self._names: tuple[str, ...] = ()

    @property
    def resident(self) -> list[str]:
        return list(self._names)

    @contextmanager
    def applied(self, pipe: Any, uses: list[LoraUse], store: ModelStore, model: str) -> Iterator[None]:
        """Switch ``uses`` on for the duration of the block, and every adapter off afterwards."""
        if not uses:
            # Adapters of an earlier request are already off; nothing to do.
            yield
            return
        try:
            ensured = [self._ensure(pipe, use, store, model) for use in uses]
            names = [adapter for adapter, _ in ensured]
            self._trim(pipe, keep={key for _, key in ensured})
        finally:
            self._names = tuple(self._resident)
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=[u.weight for u in uses])
        with self._lock:
            self._stats.active = [{"name": u.name, "weight": u.weight, "model": model} for u in uses]
        try:
            yield
        finally:
            pipe.disable_lora()
            with self._lock:
                self._stats.active = []

    def _ensure(self, pipe: Any, use: LoraUse, store: ModelStore, model: str) -> tuple[str, str]:
        """Inject ``use`` if needed; returns (peft adapter name, cache key)."""
        entry = store.lora(use.name, allow_private=use.allow_private)
        fingerprint = entry.fingerprint()
        known = self._resident.get(entry.key)
        if known is not None and known[1] == fingerprint:
            self._resident.move_to_end(entry.key)
            with self._lock:
                self._stats.hits += 1
            return known[0], entry.key
        if known is not None:
            pipe.delete_adapters([known[0]])
            del self._resident[entry.key]
        name = adapter_name(entry.key)
        try:
            pipe.load_lora_weights(str(entry.path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError) as exc:
            self._forget(pipe, name)
            raise RequestError("loras", use.name, f"cannot be applied to model '{model}': {exc}") from None
        with self._lock:
            self._stats.misses += 1
        self._resident[entry.key] = (name, fingerprint)
        return name, entry.key

    def _trim(self, pipe: Any, keep: set[str]) -> None:
        for store_name in [n for n in self._resident if n not in keep]:
            if len(self._resident) <= self.max_resident:
                return
            victim, _ = self._resident.pop(store_name)
            pipe.delete_adapters([victim])
            with self._lock:
                self._stats.evictions += 1

    @staticmethod
    def _forget(pipe: Any, name: str) -> None:
        """Remove what a failed load may have injected."""
        loaded = {a for names in pipe.get_list_adapters().values() for a in names}
        if name in loaded:
            pipe.delete_adapters([name])
