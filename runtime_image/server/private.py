"""Private LoRA adapters: a writable directory beside the (read-only) model store, one folder per tenant.

Layout::

    <private_loras_dir>/<tenant>/<name>.safetensors   the adapter (validated safetensors with LoRA keys)
    <private_loras_dir>/<tenant>/<name>.meta.json     {"size", "sha256", "source_etag"} of the last upload

A private adapter is addressed by its *scoped* name ``<tenant>/<name>``. The task contract's LoRA names
(``^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$``) cannot contain a slash, so a client can never spell a scoped name:
only the queue agent builds one, from the tenant of the task it runs. Scoped names are resolved for the
``loras`` request field only, never for ``<lora:...>`` prompt tags (the prompt is client text).

In production the directory is the pod's scratch emptyDir: the agent uploads adapters from the outputs
bucket (``PUT /easel/v1/loras/{tenant}/{name}``) when they are missing or changed, so losing it on a restart
costs one upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime_image.server.errors import RequestError

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # easel.config.TENANT_ID
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # easel.contract NAME_PATTERN
_LORA_KEY_MARKERS = ("lora_A", "lora_B", "lora_up", "lora_down", "lora.up", "lora.down")
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class PrivateRef:
    tenant: str
    name: str

    @property
    def scoped(self) -> str:
        return f"{self.tenant}/{self.name}"


def parse_scoped(scoped: str) -> PrivateRef | None:
    """``tenant/name`` -> its parts, or None if the string is not a well-formed scoped name."""
    tenant, sep, name = scoped.partition("/")
    if not sep or not TENANT_PATTERN.match(tenant) or not NAME_PATTERN.match(name):
        return None
    return PrivateRef(tenant, name)


def check_ref(tenant: str, name: str) -> PrivateRef:
    if not TENANT_PATTERN.match(tenant):
        raise RequestError("tenant", tenant, f"must match {TENANT_PATTERN.pattern}")
    if not NAME_PATTERN.match(name):
        raise RequestError("name", name, f"must match {NAME_PATTERN.pattern}")
    return PrivateRef(tenant, name)


def check_lora_safetensors(data: bytes, field: str = "body") -> int:
    """Raise :class:`RequestError` unless ``data`` is a complete safetensors file of LoRA weights.

    Only the header is parsed (no tensor is materialized); every tensor's byte range must lie inside the
    file, and at least one key must look like a LoRA weight (peft/diffusers or kohya naming). Returns the
    number of tensors.
    """
    if len(data) < 8:
        raise RequestError(field, f"{len(data)} bytes", "not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise RequestError(field, f"header of {header_len} bytes", "not a safetensors file")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, ValueError):
        raise RequestError(field, "header", "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise RequestError(field, "header", "not a safetensors file (header is not an object)")
    payload = len(data) - 8 - header_len
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise RequestError(field, "header", "holds no tensors")
    for key, spec in tensors.items():
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= payload
        ):
            raise RequestError(field, key, "tensor data lies outside the file")
    if not any(marker in key for key in tensors for marker in _LORA_KEY_MARKERS):
        raise RequestError(field, "keys", "no LoRA weights (lora_A/lora_B or lora_up/lora_down keys)")
    return len(tensors)


class PrivateLoras:
    """The tenant-scoped adapter directory. Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, ref: PrivateRef) -> Path:
        return self.root / ref.tenant / f"{ref.name}.safetensors"

    def _meta_path(self, ref: PrivateRef) -> Path:
        return self.root / ref.tenant / f"{ref.name}.meta.json"

    def find(self, scoped: str) -> Path | None:
        ref = parse_scoped(scoped)
        if ref is None:
            return None
        path = self.path(ref)
        return path if path.is_file() else None

    def info(self, ref: PrivateRef) -> dict[str, Any] | None:
        path = self.path(ref)
        if not path.is_file():
            return None
        try:
            meta = json.loads(self._meta_path(ref).read_text())
        except (OSError, ValueError):
            meta = {}
        return {
            "tenant": ref.tenant,
            "name": ref.name,
            "scoped_name": ref.scoped,
            "size": path.stat().st_size,
            "sha256": meta.get("sha256"),
            "source_etag": meta.get("source_etag"),
        }

    def put(self, ref: PrivateRef, data: bytes, source_etag: str | None = None) -> dict[str, Any]:
        if len(data) > self.max_bytes:
            raise RequestError("body", f"{len(data)} bytes", f"larger than {self.max_bytes} bytes")
        check_lora_safetensors(data)
        folder = self.root / ref.tenant
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "source_etag": source_etag}
        _atomic_write(self.path(ref), data)
        _atomic_write(self._meta_path(ref), json.dumps(meta).encode())
        info = self.info(ref)
        assert info is not None
        return info


def _atomic_write(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
