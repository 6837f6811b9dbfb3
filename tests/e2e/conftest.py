"""One local stack with workers (real runtime + agent processes) shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from easel.client import EaselClient
from infra.local.stack import LocalStack, StackOptions
from tests.conftest import EXAMPLE_CONFIG
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="package")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def stack(
    tmp_path_factory: pytest.TempPathFactory, webhook_receiver: WebhookReceiver
) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("e2e")
    options = StackOptions(
        config_path=EXAMPLE_CONFIG,
        port=0,
        state_path=work / "local.json",
        work_dir=work,
        models_dir=work / "models",
        workers=True,
        # Only the test's own receiver: the local webhooks worker may call it despite the SSRF guard.
        webhook_allow_origins=(webhook_receiver.origin,),
        # Progress written every 0.1 s (deployed: 1 s), so a CLI polling a short task sees many steps.
        worker_env={"EASEL_AGENT_PROGRESS_SECONDS": "0.1"},
    )
    with LocalStack(options) as running:
        yield running


def client_of(stack: LocalStack, tenant: str) -> EaselClient:
    cred = stack.tenant_credentials(tenant)
    return EaselClient(
        stack.endpoint,
        region=stack.region,
        access_key_id=cred.access_key_id,
        secret_access_key=cred.secret_access_key,
    )


@pytest.fixture(scope="package")
def acme(stack: LocalStack) -> Iterator[EaselClient]:
    with client_of(stack, "acme") as c:
        yield c


@pytest.fixture(scope="package")
def globex(stack: LocalStack) -> Iterator[EaselClient]:
    with client_of(stack, "globex") as c:
        yield c
