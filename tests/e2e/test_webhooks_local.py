"""Webhooks in local mode: results topic -> local webhooks queue -> the webhooks Lambda's deliver() in a
supervised worker -> a signed POST to a receiver on 127.0.0.1 (allowed by the stack's
``webhook_allow_origins``), verifiable with the tenant's secret from ``easel webhooks secret --local``."""

from __future__ import annotations

import base64
import json
import time

import pytest
from typer.testing import CliRunner

from easel.cli import app
from easel.client import EaselClient
from easel.webhook_signing import derive_tenant_secret, verify
from infra.local.stack import LocalStack
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_start_and_completed_webhooks_are_signed_for_the_tenant(
    stack: LocalStack, acme: EaselClient, webhook_receiver: WebhookReceiver
) -> None:
    hook = f"{webhook_receiver.origin}/hooks/easel"
    task = acme.submit(
        {
            "task_type": "text-to-image",
            "model": "sd15",
            "webhook": hook,
            "webhook_events_filter": ["start", "completed"],
            "input": {"prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64, "seed": 3},
        }
    )
    done = acme.wait(task["id"], timeout=240, poll_seconds=0.5)
    assert done["status"] == "succeeded", done.get("error")

    def mine() -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in webhook_receiver.received() if json.loads(b)["id"] == task["id"]]

    deadline = time.monotonic() + 60
    while len(mine()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    got = mine()
    assert sorted(json.loads(b)["status"] for _, b in got) == ["processing", "succeeded"]

    # The secret the operator hands out in local mode, from the running stack's state file.
    result = CliRunner().invoke(
        app, ["webhooks", "secret", "acme", "--local", "--state", str(stack.options.state_path)]
    )
    assert result.exit_code == 0, result.stderr
    secret = result.stdout.strip()
    assert secret == derive_tenant_secret(base64.b64decode(stack.webhook_master_b64), "acme")
    other = derive_tenant_secret(base64.b64decode(stack.webhook_master_b64), "globex")
    for headers, body in got:
        msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
        assert msg_id == f"msg_{task['id']}_{json.loads(body)['status']}"
        assert verify(secret, msg_id, ts, body, headers["webhook-signature"])
        assert not verify(other, msg_id, ts, body, headers["webhook-signature"])
        assert abs(time.time() - ts) < 300
        assert "urls" not in json.loads(body)
