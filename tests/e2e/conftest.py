"""One local stack with workers (real runtime + agent processes) shared by the end-to-end tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from easel.client import EaselClient
from infra.local.stack import LocalStack, StackOptions
from tests.conftest import EXAMPLE_CONFIG


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1 recording every POST (headers lower-cased, raw body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.requests)


@pytest.fixture(scope="package")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


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
