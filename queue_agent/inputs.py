"""Safe fetch of task inputs (``init_images``): the agent's only outbound requests chosen by a client.

Rules, in the order they are checked (DESIGN section 6):

1. ``s3://bucket/key``: the bucket is the outputs bucket or one of ``EASEL_INPUT_BUCKETS``, and the key lies
   under the task's tenant prefix ``tenants/<tenant>/`` (no ``.``/``..`` segments).
2. ``https://host[:port]/...``: the host is in ``EASEL_ALLOWED_HTTPS_HOSTS`` (an entry without a port allows
   443 only); no user info. Every other scheme (http, file, ftp, gopher, data, ...) is refused.
3. The host is resolved once with an injectable resolver; if ANY address is loopback, private, link-local,
   multicast, reserved, unspecified or otherwise not globally routable (IPv4, IPv6, and IPv4 embedded in
   IPv6: mapped, compatible, 6to4, Teredo, NAT64) the input is refused.
4. The request goes to the vetted IP itself (Host header and TLS SNI carry the name, so the certificate is
   still checked against it): no second resolution an attacker's DNS could answer differently.
5. Redirects are not followed by the client; each hop (at most 3) goes through rules 2-4 again.
6. Timeouts per hop and overall; bytes are streamed and the read stops past ``EASEL_MAX_INPUT_BYTES``.
7. The bytes must be a PNG, JPEG or WebP whose header declares at most ``EASEL_MAX_INPUT_PIXELS`` pixels
   (checked before any decoding, so a decompression bomb is never expanded), then verify and a full decode.

Refusals raise :class:`InputRefused` / :class:`InputInvalid` (permanent), naming the URL and the reason.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from easel.naming import tenant_prefix
from easel.netsafe import (
    PinnedTarget,
    Refused,
    Resolver,
    Unresolvable,
    resolve_pinned,
    system_resolver,
)
from queue_agent.errors import (
    InputInvalid,
    InputRefused,
    InputUnavailable,
    is_transient_aws,
)

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class InputPolicy:
    allowed_buckets: frozenset[str]
    allowed_https_hosts: frozenset[str]
    max_bytes: int
    max_pixels: int
    timeout_seconds: float = 10.0
    max_redirects: int = 3
    # Test only (see AgentSettings.agent_test_insecure_origins).
    test_insecure_origins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FetchedImage:
    url: str
    data: bytes
    width: int
    height: int
    format: str


class InputFetcher:
    """Fetches one input under :class:`InputPolicy`. Clients and resolver are injected."""

    def __init__(
        self,
        policy: InputPolicy,
        *,
        s3: Any,
        http: httpx.Client,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._policy = policy
        self._s3 = s3
        self._http = http
        self._resolve = resolver

    def fetch(self, url: str, tenant: str) -> FetchedImage:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        data = self._fetch_s3(url, tenant) if scheme == "s3" else self._fetch_http(url)
        return check_image(url, data, self._policy.max_pixels)

    # -- s3 -----------------------------------------------------------------------------------------------
    def _fetch_s3(self, url: str, tenant: str) -> bytes:
        bucket, key = _split_s3(url)
        if bucket not in self._policy.allowed_buckets:
            raise InputRefused(url, f"bucket '{bucket}' is not an allowed input bucket")
        prefix = tenant_prefix(tenant)
        if not key.startswith(prefix):
            raise InputRefused(url, f"key is outside the task's tenant prefix '{prefix}'")
        if any(seg in (".", "..") for seg in key.split("/")):
            raise InputRefused(url, "key contains '.' or '..' segments")
        try:
            obj = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise InputInvalid(url, "object not found") from None
            if code in ("AccessDenied", "403", "AllAccessDisabled"):
                raise InputRefused(url, "access denied") from None
            if is_transient_aws(exc):
                raise InputUnavailable(url, code) from exc
            raise
        except Exception as exc:
            if is_transient_aws(exc):
                raise InputUnavailable(url, str(exc)) from exc
            raise
        body = obj["Body"]
        try:
            size = int(obj.get("ContentLength") or 0)
            if size > self._policy.max_bytes:
                raise InputInvalid(url, f"{size} bytes exceeds the limit of {self._policy.max_bytes}")
            data = body.read(self._policy.max_bytes + 1)
        finally:
            body.close()
        if len(data) > self._policy.max_bytes:
            raise InputInvalid(url, f"more than {self._policy.max_bytes} bytes")
        return bytes(data)

    # -- https ----------------------------------------------------------------------------------------------
    def _fetch_http(self, url: str) -> bytes:
        deadline = time.monotonic() + self._policy.timeout_seconds
        current = url
        for hop in range(self._policy.max_redirects + 1):
            where = "" if hop == 0 else f"redirect {hop} to '{current}': "
            target = self._vet(url, current, where)
            timeout = httpx.Timeout(max(0.1, min(self._policy.timeout_seconds, deadline - time.monotonic())))
            request = target.build_request(
                self._http,
                "GET",
                # identity: the byte limit then holds for what we read, no gzip bomb behind it.
                headers={"Accept": "image/png, image/jpeg, image/webp", "Accept-Encoding": "identity"},
                timeout=timeout,
            )
            try:
                response = self._http.send(request, stream=True, follow_redirects=False)
            except httpx.TimeoutException as exc:
                raise InputUnavailable(url, f"{where}timed out ({exc.__class__.__name__})") from exc
            except httpx.TransportError as exc:
                raise InputUnavailable(url, f"{where}{exc.__class__.__name__}: {exc}") from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise InputInvalid(url, f"{where}HTTP {response.status_code} without Location")
                    current = urljoin(current, location)
                    continue
                if response.status_code in (408, 429) or response.status_code >= 500:
                    raise InputUnavailable(url, f"{where}HTTP {response.status_code}")
                if response.status_code != 200:
                    raise InputInvalid(url, f"{where}HTTP {response.status_code}")
                return self._read_limited(url, response, deadline)
            finally:
                response.close()
        raise InputRefused(url, f"more than {self._policy.max_redirects} redirects")

    def _vet(self, original: str, current: str, where: str) -> PinnedTarget:
        """Rules 2-3 for one hop; raises InputRefused naming the original URL and the hop."""
        try:
            u = httpx.URL(current)
        except httpx.InvalidURL as exc:
            raise InputRefused(original, f"{where}not a valid URL ({exc})") from None
        scheme = u.scheme.lower()
        host = u.raw_host.decode("ascii").lower().rstrip(".")
        port = u.port or (443 if scheme == "https" else 80)
        insecure_test = bool(host) and f"{scheme}://{host}:{port}" in self._policy.test_insecure_origins
        if not insecure_test:
            if scheme != "https":
                raise InputRefused(
                    original, f"{where}scheme '{scheme}' is not allowed (only s3:// and https://)"
                )
            if not host:
                raise InputRefused(original, f"{where}URL has no host")
            if u.userinfo:
                raise InputRefused(original, f"{where}user info in URLs is not allowed")
            allowed = self._policy.allowed_https_hosts
            if not (host in allowed and port == 443) and f"{host}:{port}" not in allowed:
                raise InputRefused(original, f"{where}host '{host}' is not in EASEL_ALLOWED_HTTPS_HOSTS")
        try:
            return resolve_pinned(u, self._resolve, vet=not insecure_test)
        except Refused as exc:
            raise InputRefused(original, f"{where}{exc}") from None
        except Unresolvable as exc:
            raise InputUnavailable(original, f"{where}{exc}") from exc

    def _read_limited(self, url: str, response: httpx.Response, deadline: float) -> bytes:
        limit = self._policy.max_bytes
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            raise InputInvalid(url, f"content-encoding '{encoding}' (only identity is accepted)")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise InputInvalid(url, f"{declared} bytes exceeds the limit of {limit}")
        buf = bytearray()
        # iter_bytes == raw bytes here: any content-encoding but identity was refused above.
        for chunk in response.iter_bytes(_CHUNK):
            buf.extend(chunk)
            if len(buf) > limit:
                raise InputInvalid(url, f"more than {limit} bytes")
            if time.monotonic() > deadline:
                raise InputUnavailable(url, f"download exceeded {self._policy.timeout_seconds}s")
        return bytes(buf)


def _split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :] if url.lower().startswith("s3://") else ""
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise InputRefused(url, "not an s3://bucket/key URI")
    return bucket, key


def check_image(url: str, data: bytes, max_pixels: int) -> FetchedImage:
    """Rule 7: the header's pixel count first (no decoding), then verify and a bounded full decode."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            fmt = str(img.format)
            if width * height > max_pixels:
                raise InputInvalid(
                    url, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                )
            img.verify()
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            img.load()
    except Image.DecompressionBombError as exc:
        raise InputInvalid(url, f"decompression bomb refused ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputInvalid(url, f"not a valid PNG, JPEG or WebP image ({exc.__class__.__name__})") from None
    return FetchedImage(url=url, data=data, width=width, height=height, format=fmt)
