"""Input images at submit: refuse what the agent would refuse, and move inline images to S3.

Checked for every image reference of a request (``init_images``, train-lora ``images``, upscale ``image``,
compat ``alwayson_scripts.image_link``), before anything is stored or queued:

- ``s3://<bucket>/<key>``: the bucket is the outputs bucket and the key lies under the caller's own
  ``tenants/<tenant>/`` (no empty, ``.`` or ``..`` segments); the object exists, is at most
  ``inputs.max_bytes`` and starts like a PNG, JPEG or WebP file (the agent still decodes and checks pixels).
- ``https://host[:port]/...``: the host is in ``inputs.allowed_https_hosts`` (an entry without a port allows
  443 only). The address is vetted by the agent when it fetches (easel.netsafe): DNS may change meanwhile.
- inline base64 (SD WebUI style, with or without a ``data:image/...;base64,`` header): decoded, checked
  like an S3 object, and written to ``tenants/<tenant>/inputs/<sha256>.<ext>`` (content-addressed, so a
  retry writes the same key); the request then carries that ``s3://`` URI, so queue messages stay small.
  Bodies with inline images may be up to ``api.limits.max_inline_body_bytes``; without the images they
  must still fit ``api.limits.max_body_bytes``.
- anything else (http, file, ftp, ...) is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from easel.config import EaselConfig
from easel.contract import GenerationInput, PipelineInput, TaskRequest, TrainLoraInput, UpscaleInput
from easel.errors import FieldError
from easel.naming import input_prefix, tenant_prefix
from lambdas.api.errors import PayloadTooLarge

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
)
_DATA_URI = re.compile(r"^data:(image/[a-z0-9.+-]+)?(;[a-z0-9=.-]+)*;base64,", re.IGNORECASE)
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")
SNIFF_BYTES = 16


class InputObjects(Protocol):
    """The S3 calls this module needs (a fake in unit tests)."""

    def size(self, bucket: str, key: str) -> int | None: ...

    def head_bytes(self, bucket: str, key: str, count: int) -> bytes: ...

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...


def image_kind(head: bytes) -> tuple[str, str] | None:
    """``(extension, content type)`` of a PNG, JPEG or WebP file start, else None."""
    for magic, ext, ctype in _MAGIC:
        if head.startswith(magic):
            return ext, ctype
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", "image/webp"
    return None


@dataclass
class Prepared:
    """A body whose inline images were replaced by S3 URIs, and the objects still to write."""

    body: Any
    pending: list[tuple[str, bytes, str]] = field(default_factory=list)  # (key, data, content type)


def _walk(body: Any, path: tuple[str, ...]) -> Iterator[tuple[Any, str | int, str]]:
    """(container, key, dotted field) for every string at ``path`` (``*`` = each list item)."""
    node = body
    for i, part in enumerate(path):
        if part == "*":
            if not isinstance(node, list):
                return
            prefix = ".".join(path[:i])
            for n, item in enumerate(node):
                if isinstance(item, str):
                    yield node, n, f"{prefix}.{n}"
            return
        if not isinstance(node, dict) or part not in node:
            return
        if i == len(path) - 1:
            if isinstance(node[part], str):
                yield node, part, ".".join(path)
            return
        node = node[part]


def offload_inline(
    body: Any,
    paths: list[tuple[str, ...]],
    *,
    tenant: str,
    bucket: str,
    config: EaselConfig,
) -> Prepared:
    """Replace inline base64 images at ``paths`` by the ``s3://`` URI they will be written to."""
    prepared = Prepared(body=body)
    for path in paths:
        for container, key, name in _walk(body, path):
            value: str = container[key]
            data = _inline_bytes(value, name)
            if data is None:
                continue
            if len(data) > config.inputs.max_bytes:
                raise FieldError(
                    name, f"image is {len(data)} bytes, over inputs.max_bytes {config.inputs.max_bytes}"
                )
            kind = image_kind(data[:SNIFF_BYTES])
            if kind is None:
                raise FieldError(name, "inline data is not a PNG, JPEG or WebP image")
            ext, ctype = kind
            object_key = f"{input_prefix(tenant)}{hashlib.sha256(data).hexdigest()}.{ext}"
            prepared.pending.append((object_key, data, ctype))
            container[key] = f"s3://{bucket}/{object_key}"
    size = len(json.dumps(body, separators=(",", ":")).encode())
    limit = config.api.limits.max_body_bytes
    if size > limit:
        raise PayloadTooLarge(
            f"body is {size} bytes without its inline images, over the limit of {limit}", field="body"
        )
    return prepared


def _inline_bytes(value: str, name: str) -> bytes | None:
    match = _DATA_URI.match(value)
    if match:
        text = value[match.end() :]
    elif "://" in value or len(value) < 64 or not _BASE64.match(value[:4096]):
        return None
    else:
        text = value
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(name, "inline image is not valid base64") from None


def request_refs(request: TaskRequest) -> list[tuple[str, str]]:
    """``(field, uri)`` of every image a validated request points at."""
    inp = request.input
    if isinstance(inp, GenerationInput):
        return [(f"input.init_images.{i}", u) for i, u in enumerate(inp.init_images)]
    if isinstance(inp, TrainLoraInput):
        return [(f"input.images.{i}", u) for i, u in enumerate(inp.images)]
    if isinstance(inp, PipelineInput):
        return [(f"input.images.{name}", u) for name, u in inp.images.items()]
    if isinstance(inp, UpscaleInput):
        return [("input.image", inp.image)]
    return []


def check_refs(
    refs: list[tuple[str, str]],
    *,
    tenant: str,
    bucket: str,
    config: EaselConfig,
    objects: InputObjects,
    pending: set[str],
) -> None:
    """Refuse every ``(field, uri)`` the agent would refuse; ``pending`` keys are about to be written."""
    for name, uri in refs:
        if uri.startswith("s3://"):
            _check_s3(
                name, uri, tenant=tenant, bucket=bucket, config=config, objects=objects, pending=pending
            )
        elif uri.lower().startswith("https://"):
            _check_https(name, uri, config.inputs.allowed_https_hosts)
        else:
            scheme = uri.split("://", 1)[0][:16] if "://" in uri else "none"
            raise FieldError(
                name, f"scheme '{scheme}' is not allowed; use an s3:// URI from POST /v1/uploads or https://"
            )


def _check_s3(
    name: str,
    uri: str,
    *,
    tenant: str,
    bucket: str,
    config: EaselConfig,
    objects: InputObjects,
    pending: set[str],
) -> None:
    ref_bucket, _, key = uri.removeprefix("s3://").partition("/")
    if ref_bucket != bucket:
        raise FieldError(name, f"bucket '{ref_bucket[:63]}' is not an input bucket of this API")
    segments = key.split("/")
    if not key.startswith(tenant_prefix(tenant)) or any(s in ("", ".", "..") for s in segments):
        raise FieldError(name, "the key is outside your tenant's prefix (tenants/<you>/)")
    if key in pending:
        return
    size = objects.size(bucket, key)
    if size is None:
        raise FieldError(name, "no such object; upload it first (POST /v1/uploads)")
    if size > config.inputs.max_bytes:
        raise FieldError(name, f"object is {size} bytes, over inputs.max_bytes {config.inputs.max_bytes}")
    if image_kind(objects.head_bytes(bucket, key, SNIFF_BYTES)) is None:
        raise FieldError(name, "object is not a PNG, JPEG or WebP image")


def _check_https(name: str, uri: str, allowed: list[str]) -> None:
    rest = uri.split("://", 1)[1]
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        raise FieldError(name, "URLs with user info are not allowed")
    host, port = authority.lower(), ""
    if ":" in host and not host.startswith("["):
        host, port = host.rsplit(":", 1)
    for entry in allowed:
        entry_host, _, entry_port = entry.lower().partition(":")
        if host == entry_host and (port or "443") == (entry_port or "443"):
            return
    raise FieldError(name, f"host '{authority[:100]}' is not in inputs.allowed_https_hosts")
