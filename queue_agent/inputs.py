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
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from easel.naming import tenant_prefix
from queue_agent.errors import (
    InputInvalid,
    InputRefused,
    InputUnavailable,
    is_transient_aws,
)

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> IP address strings``; tests inject a stub that never touches the network."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 64 * 1024


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (and that a host or a gateway may route to)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    packed = int(ip)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    # Deprecated IPv4-compatible form ::a.b.c.d (but not :: and ::1, which are checked as IPv6).
    if packed >> 32 == 0 and packed > 1:
        found.append(ipaddress.IPv4Address(packed))
    return found


def address_refusal(address: str | IPAddress) -> str | None:
    """Why connecting to ``address`` is refused, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    # Embedded IPv4 first: the precise reason ("loopback") beats the generic one for ::ffff:0:0/96.
    candidates: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(ip))
    candidates.append(ip)
    for c in candidates:
        shown = f"{ip}" if c == ip else f"{ip} (embedding {c})"
        if c.is_unspecified:
            return f"{shown} is an unspecified address"
        if c.is_loopback:
            return f"{shown} is a loopback address"
        if c.is_link_local:
            return f"{shown} is a link-local address"
        if c.is_multicast:
            return f"{shown} is a multicast address"
        if c.is_reserved:
            return f"{shown} is a reserved address"
        if c.is_private:
            return f"{shown} is a private address"
        if not c.is_global:
            return f"{shown} is not a globally routable address"
    return None


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


@dataclass(frozen=True)
class _Target:
    """A vetted hop: where to connect and what to say."""

    url: httpx.URL
    ip: str
    host: str
    host_header: str


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
            extensions: dict[str, Any] = {}
            if target.url.scheme == "https":
                extensions["sni_hostname"] = target.host
            request = self._http.build_request(
                "GET",
                target.url.copy_with(host=target.ip),
                # identity: the byte limit then holds for what we read, no gzip bomb behind it.
                headers={
                    "Host": target.host_header,
                    "Accept": "image/png, image/jpeg, image/webp",
                    "Accept-Encoding": "identity",
                },
                extensions=extensions,
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

    def _vet(self, original: str, current: str, where: str) -> _Target:
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
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = list(self._resolve(host, port))
            except OSError as exc:
                raise InputUnavailable(original, f"{where}cannot resolve '{host}': {exc}") from exc
            if not addresses:
                raise InputUnavailable(original, f"{where}'{host}' resolved to no address")
        if not insecure_test:
            # Every answer must be public: a mixed answer is a rebinding attempt, not a fallback.
            for a in addresses:
                why = address_refusal(a)
                if why is not None:
                    raise InputRefused(original, f"{where}host '{host}' resolves to {why}")
        default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        host_header = u.raw_host.decode("ascii") if default_port else f"{u.raw_host.decode('ascii')}:{port}"
        return _Target(url=u, ip=addresses[0], host=host, host_header=host_header)

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
