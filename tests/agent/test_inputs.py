"""Safe input fetch (queue_agent/inputs.py).

Loopback targets are tried LIVE against a local server that must see no request (its hit counter stays 0).
Link-local, private and other non-public targets are tried ONLY through a stubbed resolver and a transport
that fails the test if anything but the allowed loopback test origin is ever connected to.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from bench.synthetic_runtime import png
from easel.netsafe import address_refusal
from queue_agent.errors import InputInvalid, InputRefused
from queue_agent.inputs import FetchedImage, InputFetcher, InputPolicy, check_image
from tests.agent.origin import Origin

BUCKET = "easel-outputs"


class GuardTransport(httpx.BaseTransport):
    """Connects only to the listed loopback origins (host, port); anything else fails the test."""

    def __init__(self, allowed: set[tuple[str, int]]) -> None:
        self.allowed = allowed
        self.real = httpx.HTTPTransport()
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        target = (request.url.host, request.url.port or 443)
        if target not in self.allowed:
            raise AssertionError(f"connection attempted to {target}")
        return self.real.handle_request(request)


class NoS3:
    def get_object(self, **kw: Any) -> Any:
        raise AssertionError(f"S3 must not be called: {kw}")


class StubResolver:
    """Answers from a table and records the questions; never touches the network."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"stub: no answer for {host}")
        return self.table[host]


def fetcher(
    *,
    hosts: tuple[str, ...] = (),
    origins: tuple[str, ...] = (),
    resolver: Any = None,
    transport: httpx.BaseTransport | None = None,
    s3: Any = None,
    max_bytes: int = 1_000_000,
    max_pixels: int = 4096 * 4096,
) -> InputFetcher:
    policy = InputPolicy(
        allowed_buckets=frozenset({BUCKET, "extra-inputs"}),
        allowed_https_hosts=frozenset(hosts),
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        timeout_seconds=5,
        test_insecure_origins=frozenset(origins),
    )
    kw: dict[str, Any] = {}
    if resolver is not None:
        kw["resolver"] = resolver
    return InputFetcher(
        policy,
        s3=s3 or NoS3(),
        http=httpx.Client(transport=transport or GuardTransport(set()), trust_env=False),
        **kw,
    )


@pytest.fixture
def victim() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin(big_bytes=3_000_000).start()
    yield server
    server.stop()


def origin_of(server: Origin) -> str:
    return f"http://127.0.0.1:{server.port}"


# -- address classification -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a globally routable"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    reason = address_refusal(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


# -- schemes and hosts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://127.0.0.1:70/_GET", "scheme 'gopher'"),
        ("ftp://example.com/x.png", "scheme 'ftp'"),
        ("http://images.example.com/x.png", "scheme 'http'"),
        ("dict://127.0.0.1:11211/stat", "scheme 'dict'"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme 'data'"),
        ("https://evil.example.org/x.png", "not in EASEL_ALLOWED_HTTPS_HOSTS"),
        ("https://images.example.com:8443/x.png", "not in EASEL_ALLOWED_HTTPS_HOSTS"),
        ("https://user:pw@images.example.com/x.png", "user info"),
        ("https://images.example.com@evil.example.org/x.png", "user info"),
    ],
)
def test_schemes_and_hosts_outside_the_policy_are_refused(url: str, reason: str) -> None:
    resolver = StubResolver({})
    f = fetcher(hosts=("images.example.com",), resolver=resolver)
    with pytest.raises(InputRefused) as err:
        f.fetch(url, "acme")
    assert reason in str(err.value)
    assert url in str(err.value)
    assert resolver.asked == []  # refused before any resolution


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        (["169.254.169.254"], "link-local"),
        (["10.0.0.7"], "private"),
        (["192.168.0.10"], "private"),
        (["fd00:ec2::254"], "private"),
        (["::ffff:169.254.169.254"], "link-local"),
        (["93.184.216.34", "127.0.0.1"], "loopback"),  # a rebinding-style mixed answer
    ],
)
def test_dns_names_resolving_to_internal_addresses_are_refused(answers: list[str], why: str) -> None:
    """Only through the stub: nothing is ever connected to (the guard transport allows nothing)."""
    transport = GuardTransport(set())
    resolver = StubResolver({"images.example.com": answers})
    f = fetcher(hosts=("images.example.com",), resolver=resolver, transport=transport)
    with pytest.raises(InputRefused) as err:
        f.fetch("https://images.example.com/cat.png", "acme")
    assert why in str(err.value)
    assert "images.example.com" in str(err.value)
    assert resolver.asked == ["images.example.com"]
    assert transport.seen == []


def test_metadata_ip_literal_is_refused_without_resolving() -> None:
    resolver = StubResolver({})
    transport = GuardTransport(set())
    f = fetcher(hosts=("169.254.169.254",), resolver=resolver, transport=transport)
    with pytest.raises(InputRefused, match="link-local"):
        f.fetch("https://169.254.169.254/latest/meta-data/iam/security-credentials/", "acme")
    assert resolver.asked == [] and transport.seen == []


def test_connects_to_the_vetted_ip_with_host_header_and_sni() -> None:
    """No second resolution: the request goes to the IP the resolver gave, the name rides in Host/SNI."""
    image = png(32, 32)
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, content=image, headers={"Content-Type": "image/png"})

    resolver = StubResolver({"images.example.com": ["93.184.216.34"]})
    f = fetcher(hosts=("images.example.com",), resolver=resolver, transport=httpx.MockTransport(handler))
    got = f.fetch("https://images.example.com/a/cat.png?v=1", "acme")
    assert isinstance(got, FetchedImage) and got.data == image and (got.width, got.height) == (32, 32)
    (req,) = captured
    assert req.url.host == "93.184.216.34"
    assert req.url.path == "/a/cat.png" and req.url.query == b"v=1"
    assert req.headers["host"] == "images.example.com"
    assert req.extensions["sni_hostname"] == "images.example.com"
    assert req.headers["accept-encoding"] == "identity"


def test_redirect_hops_are_each_revetted_and_limited() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        n = int(request.url.path.strip("/") or 0)
        return httpx.Response(302, headers={"Location": f"/{n + 1}"})

    resolver = StubResolver({"images.example.com": ["93.184.216.34"]})
    f = fetcher(hosts=("images.example.com",), resolver=resolver, transport=httpx.MockTransport(handler))
    with pytest.raises(InputRefused, match="more than 3 redirects"):
        f.fetch("https://images.example.com/0", "acme")
    assert len(calls) == 4
    assert resolver.asked == ["images.example.com"] * 4


def test_redirect_to_metadata_is_refused_before_connecting() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "93.184.216.34", "only the vetted first hop may be contacted"
        return httpx.Response(301, headers={"Location": "https://cdn.example.com/latest/meta-data/"})

    resolver = StubResolver({"images.example.com": ["93.184.216.34"], "cdn.example.com": ["169.254.169.254"]})
    f = fetcher(
        hosts=("images.example.com", "cdn.example.com"),
        resolver=resolver,
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(InputRefused) as err:
        f.fetch("https://images.example.com/cat.png", "acme")
    assert "redirect 1 to 'https://cdn.example.com/latest/meta-data/'" in str(err.value)
    assert "link-local" in str(err.value)


# -- live loopback: the victim server must see nothing ------------------------------------------------------------
@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "2130706433", "127.1", "[::ffff:127.0.0.1]"],
)
def test_loopback_targets_refused_live(victim: Origin, host: str) -> None:
    """Allow-listed on purpose: the address check alone must stop it (system resolver, real client)."""
    hostname = host.strip("[]")
    f = fetcher(
        hosts=(f"{hostname}:{victim.port}",),
        transport=httpx.HTTPTransport(),  # a real transport: only the vetting stands in the way
    )
    url = f"https://{host}:{victim.port}/img.png"
    with pytest.raises(InputRefused) as err:
        f.fetch(url, "acme")
    assert "loopback" in str(err.value) and url in str(err.value)
    assert victim.hit_count == 0


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/img.png", "https://localhost:{port}/img.png"])
def test_redirect_to_loopback_refused_live(origin: Origin, victim: Origin, target: str) -> None:
    """The test origin (allowed via the test-only flag) redirects to the victim on loopback."""
    to = target.format(port=victim.port)
    f = fetcher(
        hosts=(f"localhost:{victim.port}",),
        origins=(origin_of(origin),),
        transport=GuardTransport({("127.0.0.1", origin.port)}),
    )
    with pytest.raises(InputRefused) as err:
        f.fetch(f"{origin.url}/redirect?to={to}", "acme")
    assert f"redirect 1 to '{to}'" in str(err.value)
    assert origin.hit_count == 1
    assert victim.hit_count == 0


def test_test_origin_happy_path_and_hop_to_allowed_image(origin: Origin) -> None:
    f = fetcher(origins=(origin_of(origin),), transport=GuardTransport({("127.0.0.1", origin.port)}))
    assert f.fetch(f"{origin.url}/img.png", "acme").data == origin.image
    assert f.fetch(f"{origin.url}/redirect?to=/img.png", "acme").data == origin.image
    assert [p for p, _ in origin.hits] == ["/img.png", "/redirect", "/img.png"]


# -- bytes ----------------------------------------------------------------------------------------------------
def test_non_image_bytes_refused(origin: Origin) -> None:
    f = fetcher(origins=(origin_of(origin),), transport=GuardTransport({("127.0.0.1", origin.port)}))
    with pytest.raises(InputInvalid, match="not a valid PNG, JPEG or WebP"):
        f.fetch(f"{origin.url}/notimage", "acme")


def test_oversized_stream_stops_at_the_limit(origin: Origin) -> None:
    f = fetcher(
        origins=(origin_of(origin),),
        transport=GuardTransport({("127.0.0.1", origin.port)}),
        max_bytes=100_000,
    )
    with pytest.raises(InputInvalid, match="more than 100000 bytes"):
        f.fetch(f"{origin.url}/big", "acme")


def test_compressed_transfer_refused(origin: Origin) -> None:
    f = fetcher(origins=(origin_of(origin),), transport=GuardTransport({("127.0.0.1", origin.port)}))
    with pytest.raises(InputInvalid, match="content-encoding 'gzip'"):
        f.fetch(f"{origin.url}/gzip", "acme")


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height zeros, built row by row (never held decoded in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding() -> None:
    bomb = _bomb_png(20000, 20000)
    assert len(bomb) < 200_000  # small file, 400 megapixels
    with pytest.raises(InputInvalid) as err:
        check_image("s3://b/tenants/acme/bomb.png", bomb, 4096 * 4096)
    assert "bomb" in str(err.value) or "exceeds the limit" in str(err.value)


def test_pixel_limit_checked_from_the_header() -> None:
    data = _bomb_png(5000, 4000)
    with pytest.raises(InputInvalid, match="5000x4000 = 20000000 pixels exceeds the limit of 16777216"):
        check_image("s3://b/tenants/acme/big.png", data, 4096 * 4096)


def test_truncated_image_refused() -> None:
    data = png(64, 64)
    with pytest.raises(InputInvalid, match="not a valid"):
        check_image("u", data[: len(data) // 2], 4096 * 4096)


def test_jpeg_and_webp_accepted() -> None:
    for fmt in ("JPEG", "WEBP"):
        out = io.BytesIO()
        Image.new("RGB", (16, 8), (1, 2, 3)).save(out, format=fmt)
        assert check_image("u", out.getvalue(), 1000).format == fmt


# -- s3 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"s3://{BUCKET}/tenants/globex/inputs/cat.png", "outside the task's tenant prefix 'tenants/acme/'"),
        (f"s3://{BUCKET}/tenants/acme-evil/cat.png", "outside the task's tenant prefix"),
        (f"s3://{BUCKET}/cat.png", "outside the task's tenant prefix"),
        (f"s3://{BUCKET}/tenants/acme/../globex/cat.png", "'.' or '..' segments"),
        ("s3://someone-elses-bucket/tenants/acme/cat.png", "not an allowed input bucket"),
        ("s3://", "not an s3://bucket/key URI"),
    ],
)
def test_s3_refusals(url: str, reason: str) -> None:
    with pytest.raises(InputRefused) as err:
        fetcher().fetch(url, "acme")
    assert reason in str(err.value) and url in str(err.value)


class FakeS3:
    def __init__(self, data: bytes, length: int | None = None) -> None:
        self.data = data
        self.length = len(data) if length is None else length

    def get_object(self, **_kw: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.data), "ContentLength": self.length}


def test_s3_object_too_large_refused_by_its_length() -> None:
    f = fetcher(s3=FakeS3(png(), length=5_000_000), max_bytes=1_000_000)
    with pytest.raises(InputInvalid, match="5000000 bytes exceeds the limit of 1000000"):
        f.fetch("s3://extra-inputs/tenants/acme/x.png", "acme")


def test_s3_allowed_input_bucket_under_tenant_prefix() -> None:
    image = png(8, 8)
    got = fetcher(s3=FakeS3(image)).fetch("s3://extra-inputs/tenants/acme/inputs/x.png", "acme")
    assert got.data == image
