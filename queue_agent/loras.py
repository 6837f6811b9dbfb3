"""Private LoRAs of a tenant: ``tenants/<tenant>/loras/<name>.safetensors`` in the outputs bucket.

For each LoRA a generation task names, :meth:`PrivateLoras.resolve` looks ONLY under the task's own tenant
prefix (``easel.naming.lora_key(task.tenant, name)``). If the object exists, the runtime must have it as the
scoped name ``<tenant>/<name>`` (which no client can spell: the contract's LoRA names have no slash), and
that is the name sent to the runtime. Otherwise the plain name is sent: a public LoRA of the models store,
or a 404 from the runtime. Another tenant's adapter can therefore never be used.

The runtime keeps uploads in its private directory (the pod's scratch emptyDir), with the S3 ETag it was
sent. Per task and LoRA: one S3 HEAD (existence, ETag); then, unless the small in-memory cache says this
ETag is already in the runtime, one runtime GET of its copy's ETag; only a missing or changed copy is
downloaded and PUT. The cache is dropped whenever the runtime stops being ready (a restart may lose files).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from botocore.exceptions import ClientError

from easel.naming import lora_key
from queue_agent.errors import InputInvalid, InputRefused, aws_call
from queue_agent.runtimes import Runtime

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 1024**2
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class PrivateLoras:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        runtime: Runtime,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        cache_size: int = 64,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._runtime = runtime
        self._max_bytes = max_bytes
        self._cache_size = cache_size
        # scoped name -> S3 ETag the runtime is known to hold; most recently used last.
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.uploads = 0
        self.cache_hits = 0

    def uri(self, tenant: str, name: str) -> str:
        return f"s3://{self._bucket}/{lora_key(tenant, name)}"

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def resolve(self, tenant: str, names: list[str]) -> dict[str, str]:
        """Contract LoRA name -> the name to send to the runtime (scoped if the tenant has it privately)."""
        return {name: self._resolve_one(tenant, name) for name in names}

    def _resolve_one(self, tenant: str, name: str) -> str:
        key = lora_key(tenant, name)
        head = self._head(key)
        if head is None:
            return name
        etag, size = str(head.get("ETag", "")), int(head.get("ContentLength", 0))
        scoped = f"{tenant}/{name}"
        with self._lock:
            if self._known.get(scoped) == etag:
                self._known.move_to_end(scoped)
                self.cache_hits += 1
                return scoped
        held = self._runtime.private_lora(tenant, name)
        if held is None or held.get("source_etag") != etag or held.get("size") != size:
            self._upload(tenant, name, key, etag, size)
        with self._lock:
            self._known[scoped] = etag
            self._known.move_to_end(scoped)
            while len(self._known) > self._cache_size:
                self._known.popitem(last=False)
        return scoped

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with aws_call("head private lora"):
                head: dict[str, Any] = self._s3.head_object(Bucket=self._bucket, Key=key)
                return head
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                return None
            if code in ("403", "AccessDenied"):
                raise InputRefused(self.uri_of(key), "access denied") from None
            raise

    def uri_of(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def _upload(self, tenant: str, name: str, key: str, etag: str, size: int) -> None:
        url = self.uri_of(key)
        if size > self._max_bytes:
            raise InputInvalid(url, f"{size} bytes, larger than {self._max_bytes}")
        try:
            with aws_call("get private lora"):
                obj = self._s3.get_object(Bucket=self._bucket, Key=key, IfMatch=etag)
                data = obj["Body"].read(self._max_bytes + 1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING or code in ("PreconditionFailed", "412"):
                # Deleted or replaced since the HEAD: the next delivery sees the new state.
                raise InputInvalid(url, f"changed while being read ({code})") from None
            raise
        if len(data) > self._max_bytes:
            raise InputInvalid(url, f"larger than {self._max_bytes} bytes")
        self._runtime.put_private_lora(tenant, name, data, source_etag=etag)
        self.uploads += 1
        log.info("private lora sent to runtime", extra={"tenant": tenant, "lora": name, "bytes": len(data)})
