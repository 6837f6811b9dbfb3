"""train-lora tasks and private (tenant-scoped) LoRAs in generation, against moto and the fake runtime."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.synthetic_runtime import fake_lora, png
from easel.contract import QueueMessage, TaskStatus, parse_input
from easel.naming import lora_key
from tests.agent.conftest import RUNTIME, Stack, wait_for

pytestmark = pytest.mark.integration


def put(stack: Stack, key: str, data: bytes) -> str:
    stack.s3.put_object(Bucket=stack.resources.outputs_bucket, Key=key, Body=data)
    return f"s3://{stack.resources.outputs_bucket}/{key}"


def submit_train(stack: Stack, task_id: str, *, tenant: str = "acme", **inp: Any) -> QueueMessage:
    data: dict[str, Any] = {"instance_prompt": "a photo of sks dog", "output_name": "sks", "steps": 6}
    data.update(inp)
    msg = QueueMessage(
        id=task_id,
        tenant=tenant,
        task_type="train-lora",  # type: ignore[arg-type]
        model="sd15",
        runtime=RUNTIME,
        priority="normal",  # type: ignore[arg-type]
        input=parse_input("train-lora", data),
        created_at=datetime.now(UTC),
    )
    stack.create_record(msg)
    stack.publish(msg)
    return msg


def test_train_lora_fetches_trains_uploads_and_succeeds(stack: Stack) -> None:
    a, b = png(color=(250, 0, 0)), png(color=(0, 250, 0))
    images = [put(stack, "tenants/acme/inputs/a.png", a), put(stack, "tenants/acme/inputs/b.png", b)]
    submit_train(stack, "tr1", images=images, steps=7, learning_rate=0.01, rank=8, resolution=64, seed=3)
    with stack.running():
        result = stack.wait_result("tr1", "succeeded")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "message deleted")

    bucket = stack.resources.outputs_bucket
    uri = f"s3://{bucket}/{lora_key('acme', 'sks')}"
    assert result["output"]["lora"] == uri
    assert result["output"]["images"] == []
    assert result["_attributes"]["task_type"] == "train-lora"
    stored = stack.s3.get_object(Bucket=bucket, Key="tenants/acme/loras/sks.safetensors")["Body"].read()
    assert stored == fake_lora("sks", 3)
    task = stack.task("tr1")
    assert task.status == "succeeded" and task.output is not None and task.output.lora == uri
    assert task.metrics.predict_seconds is not None and task.metrics.predict_seconds > 0
    assert task.metrics.gpu_seconds is not None and task.metrics.gpu_seconds >= task.metrics.predict_seconds

    (call,) = stack.runtime.generation_calls()
    body = call.body
    assert [base64.b64decode(i) for i in body.pop("images")] == [a, b]
    assert body == {
        "model": "sd15",
        "instance_prompt": "a photo of sks dog",
        "output_name": "sks",
        "steps": 7,
        "learning_rate": 0.01,
        "rank": 8,
        "resolution": 64,
        "seed": 3,
        "save": False,
        "return_weights": True,
    }


def test_train_lora_refuses_inputs_of_another_tenant(stack: Stack) -> None:
    theirs = put(stack, "tenants/globex/inputs/a.png", png())
    submit_train(stack, "tr2", images=[theirs])
    with stack.running():
        result = stack.wait_result("tr2", "failed")
    assert result["error"]["code"] == "input_refused"
    assert "tenant prefix" in result["error"]["message"]
    assert stack.runtime.generation_calls() == []
    assert stack.objects("tenants/acme/loras/") == []


def test_cancel_during_training_interrupts_and_uploads_nothing(stack: Stack) -> None:
    stack.runtime.control.hold_seconds = 10
    submit_train(stack, "tr3", images=[put(stack, "tenants/acme/inputs/a.png", png())])
    with stack.running():
        wait_for(lambda: stack.runtime.generation_calls(), 10, "training started")
        stack.wait_status("tr3", "processing")
        stack.store.transition("acme", "tr3", TaskStatus.CANCELED)  # what the API's cancel does
        result = stack.wait_result("tr3", "canceled", timeout=5)
        (call,) = stack.runtime.generation_calls()
        assert call.interrupted
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 5, "message deleted")
    assert stack.runtime.interrupts >= 1
    assert result["output"] is None
    assert stack.objects("tenants/acme/loras/") == []
    assert len(stack.results_for("tr3")) == 1  # one canceled notification


def test_private_lora_is_uploaded_once_then_cached_and_resent_when_changed(stack: Stack) -> None:
    put(stack, lora_key("acme", "mine"), b"acme-lora-v1")
    loras = [{"name": "mine", "weight": 0.7}, {"name": "style", "weight": 0.3}]
    stack.submit("g1", loras=loras)
    stack.submit("g2", loras=loras)
    with stack.running() as agent:
        stack.wait_result("g1", "succeeded")
        stack.wait_result("g2", "succeeded")
        assert stack.runtime.lora_puts == ["acme/mine"]
        assert agent.loras.uploads == 1
        # The adapter is replaced in S3: the next task sends the new bytes.
        put(stack, lora_key("acme", "mine"), b"acme-lora-v2")
        stack.submit("g3", loras=loras)
        stack.wait_result("g3", "succeeded")
    assert stack.runtime.lora_puts == ["acme/mine", "acme/mine"]
    data, etag = stack.runtime.private_loras["acme/mine"]
    assert data == b"acme-lora-v2" and etag
    for call in stack.runtime.generation_calls():
        # Private by its scoped name, the public one by its plain name.
        assert call.body["loras"] == [{"name": "acme/mine", "weight": 0.7}, {"name": "style", "weight": 0.3}]


def test_runtime_copy_with_the_same_etag_is_not_sent_again(stack: Stack) -> None:
    """A restarted agent (empty cache) asks the runtime, which already holds this version."""
    put(stack, lora_key("acme", "mine"), b"acme-lora")
    stack.submit("h1", loras=[{"name": "mine"}])
    with stack.running():
        stack.wait_result("h1", "succeeded")
    stack.submit("h2", loras=[{"name": "mine"}])
    with stack.running() as agent:
        stack.wait_result("h2", "succeeded")
        assert agent.loras.uploads == 0
    assert stack.runtime.lora_puts == ["acme/mine"]


def test_another_tenants_private_lora_is_never_used(stack: Stack) -> None:
    stack.runtime.control.public_loras = {"style"}
    put(stack, lora_key("acme", "mine"), b"acme-lora")
    stack.submit("x1", tenant="globex", loras=[{"name": "mine"}])
    stack.submit("x2", tenant="globex", loras=[{"name": "style"}])
    with stack.running():
        failed = stack.wait_result("x1", "failed")
        stack.wait_result("x2", "succeeded")
    # globex's "mine" is looked up under tenants/globex/ only: the runtime gets the plain (public) name,
    # has no such public LoRA, and the task fails with a reason naming it.
    assert failed["error"]["code"] == "lora_missing"
    assert "mine" in failed["error"]["message"]
    assert stack.runtime.lora_puts == []
    assert [c.body["loras"] for c in stack.runtime.generation_calls()] == [
        [{"name": "mine", "weight": 1.0}],
        [{"name": "style", "weight": 1.0}],
    ]
