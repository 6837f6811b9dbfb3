"""The whole pipeline on this machine: signed API -> SNS -> SQS -> real queue agent -> real diffusers runtime
(tiny random model on CPU) -> S3 -> results topic, all as `easel local up` runs it (supervised processes)."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from easel.client import EaselClient
from infra.local.demo import tiny_png, upload_init_image
from infra.local.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def results_queue(stack: LocalStack) -> str:
    """An SQS queue subscribed to the results topic, as a user would subscribe."""
    assert stack.resources is not None
    sqs, sns = stack.client("sqs"), stack.client("sns")
    url = sqs.create_queue(QueueName="e2e-results")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=stack.resources.results_topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return str(url)


def results(stack: LocalStack, url: str, want: int, timeout: float = 30) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", []):
            found.append({"task": json.loads(m["Body"]), "attributes": m.get("MessageAttributes", {})})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return found


def t2i(**input_: Any) -> dict[str, Any]:
    return {
        "task_type": "text-to-image",
        "model": "sd15",
        "input": {"prompt": "a lighthouse", "steps": 3, "width": 64, "height": 64, "seed": 7, **input_},
    }


def test_text_and_image_to_image_end_to_end(stack: LocalStack, acme: EaselClient, results_queue: str) -> None:
    assert stack.resources is not None
    init = upload_init_image(stack.client("s3"), stack.resources.outputs_bucket, "acme", tiny_png(64, 64))
    a = acme.submit(t2i(batch_size=2))
    b = acme.submit(
        {
            "task_type": "image-to-image",
            "model": "sd15",
            "priority": "high",
            "input": {"prompt": "a lighthouse at dusk", "steps": 4, "width": 64, "height": 64,
                      "init_images": [init], "denoising_strength": 0.5},
        }
    )  # fmt: skip
    done = acme.wait([a["id"], b["id"]], timeout=240, poll_seconds=0.5)
    for task, n in ((done[a["id"]], 2), (done[b["id"]], 1)):
        assert task["status"] == "succeeded", task.get("error")
        assert len(task["output"]["images"]) == n
        assert all(uri.startswith(f"s3://{stack.resources.outputs_bucket}/tenants/acme/tasks/{task['id']}/")
                   for uri in task["output"]["images"])  # fmt: skip
        for url in task["output"]["urls"]:
            with Image.open(io.BytesIO(acme.download(url))) as img:
                assert img.format == "PNG"
                assert img.size == (64, 64)
        assert task["metrics"]["predict_seconds"] > 0
        assert task["metrics"]["gpu_seconds"] >= task["metrics"]["predict_seconds"]
    notes = results(stack, results_queue, 2)
    by_id = {n["task"]["id"]: n for n in notes}
    assert set(by_id) == {a["id"], b["id"]}
    for note in notes:
        assert note["attributes"]["status"]["StringValue"] == "succeeded"
        assert note["attributes"]["tenant"]["StringValue"] == "acme"


def test_same_seed_same_image_through_the_whole_pipeline(acme: EaselClient) -> None:
    first = acme.submit(t2i(seed=1234))
    second = acme.submit(t2i(seed=1234))
    done = acme.wait([first["id"], second["id"]], timeout=240, poll_seconds=0.5)
    images = [acme.download(done[t["id"]]["output"]["urls"][0]) for t in (first, second)]
    assert images[0] == images[1]


def test_cancel_of_a_running_task_interrupts_the_runtime(
    stack: LocalStack, acme: EaselClient, results_queue: str
) -> None:
    results(stack, results_queue, 99, timeout=1)  # drain earlier notifications
    task = acme.submit(t2i(steps=100, width=256, height=256))
    deadline = time.monotonic() + 120
    while acme.get(task["id"])["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert acme.get(task["id"])["status"] == "processing"
    canceled = acme.cancel(task["id"])
    assert canceled["status"] == "canceled"
    notes = results(stack, results_queue, 1, timeout=60)
    assert [n["task"]["status"] for n in notes] == ["canceled"]
    assert stack.resources is not None
    listed = stack.client("s3").list_objects_v2(
        Bucket=stack.resources.outputs_bucket, Prefix=f"tenants/acme/tasks/{task['id']}/"
    )
    assert listed.get("KeyCount", 0) == 0
    # The runtime is free again: the next task runs at once.
    after = acme.wait(acme.submit(t2i())["id"], timeout=120, poll_seconds=0.5)
    assert after["status"] == "succeeded"


def test_a_dead_agent_is_restarted_and_the_pipeline_carries_on(stack: LocalStack, acme: EaselClient) -> None:
    before = {c.name: c for c in stack.children}
    agent = before["sd15/agent"]
    assert agent.pid is not None
    os.kill(agent.pid, signal.SIGKILL)
    killed = time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = {c.name: c for c in stack.children}["sd15/agent"]
        if now.pid not in (None, agent.pid) and now.restarts > agent.restarts:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the agent was not restarted")
    state = json.loads(stack.options.state_path.read_text())
    assert state["children"]["sd15/agent"]["pid"] == now.pid
    # A receive the dead agent had open may still be answered by the queue (the message then stays
    # invisible for the visibility timeout, as in SQS): wait out its long poll, then for readiness.
    port = state["children"]["sd15/agent"]["port"]
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    time.sleep(max(0.0, killed + 3.0 - time.monotonic()))
    done = acme.wait(acme.submit(t2i(seed=99))["id"], timeout=180, poll_seconds=0.5)
    assert done["status"] == "succeeded"
