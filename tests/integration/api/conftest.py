"""A local stack (moto server + signed gateway, no workers) shared by a test module, reset per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from easel.client import EaselClient
from infra.local.stack import LocalStack
from tests.conftest import TWO_RUNTIMES_CONFIG
from tests.integration.api.helpers import client_for, control_plane

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("local")
    with control_plane(TWO_RUNTIMES_CONFIG, work) as running:
        yield running


@pytest.fixture
def fresh(stack: LocalStack) -> LocalStack:
    """Empty table and queues (moto reset + provision again)."""
    stack.reset()
    return stack


@pytest.fixture
def acme(fresh: LocalStack) -> Iterator[EaselClient]:
    with client_for(fresh, "acme") as client:
        yield client


@pytest.fixture
def globex(fresh: LocalStack) -> Iterator[EaselClient]:
    with client_for(fresh, "globex") as client:
        yield client
