"""Shared fixtures: a real moto server on loopback, and a provisioned local stack per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from easel.config import EaselConfig, load_config
from easel.naming import Names
from infra.local.provision import Resources, provision

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.yaml"
TWO_RUNTIMES_CONFIG = ROOT / "tests" / "configs" / "two-runtimes.yaml"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server (real HTTP on 127.0.0.1) for the whole session; tests reset it as they need."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every boto3 client in this test at moto, with dummy credentials, after a reset."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return moto_endpoint


@pytest.fixture
def example_config() -> EaselConfig:
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture
def two_runtimes_config() -> EaselConfig:
    return load_config(TWO_RUNTIMES_CONFIG)


@pytest.fixture
def aws_session(aws_env: str) -> boto3.Session:
    return boto3.Session(region_name="us-west-2")


@pytest.fixture
def provisioned(
    aws_session: boto3.Session, two_runtimes_config: EaselConfig
) -> tuple[EaselConfig, Names, Resources]:
    """The two-runtime config provisioned in a freshly reset moto."""
    names = Names.of(two_runtimes_config, region="us-west-2")
    return two_runtimes_config, names, provision(two_runtimes_config, names, aws_session)


# -- kinds -------------------------------------------------------------------------------------------------
# Every test carries one kind marker (``-m unit``, ``-m integration``, ``-m e2e``, ``-m infra``, ``-m charts``;
# ``slow`` is orthogonal). A module marks itself with ``pytestmark``; an unmarked one takes its folder's kind.
KINDS = ("unit", "integration", "e2e", "infra", "charts")
_FOLDER_KIND = {
    "e2e": "e2e",
    "infra": "infra",
    "charts": "charts",
    # Real diffusers behind a real HTTP server on loopback, or the benchmarks' local processes.
    "runtime": "integration",
    "bench": "integration",
    "fuzz": "integration",
    "integration": "integration",
}


def kind_of(item: pytest.Item) -> str:
    parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
    folder = _FOLDER_KIND.get(parts[0], "unit") if len(parts) > 1 else "unit"
    if folder == "e2e":
        return folder  # e2e modules also say `integration` (they talk to moto); their kind is e2e
    marked = [k for k in KINDS if item.get_closest_marker(k) is not None]
    return marked[0] if marked else folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(getattr(pytest.mark, kind_of(item)))
