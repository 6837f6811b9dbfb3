"""stable-diffusion-on-eks tasks through the whole agent (moto over real HTTP, a fake runtime): the image of
``alwayson_scripts.image_link`` / a URL ``init_images`` fetched with the SSRF guard, outputs and the ``.out``
under the task's ``prefix`` inside the tenant's prefix, and the reference's result fields. A refused input or
prefix fails the task with its reason (one notification, message deleted): never lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.synthetic_runtime import png
from easel.contract import CompatInfo, QueueMessage, TaskRequest, request_fingerprint
from easel.lifecycle import queued_task
from tests.agent.conftest import Stack, wait_for
from tests.agent.origin import Origin
from tests.agent.test_inputs import StubResolver

pytestmark = pytest.mark.integration

CAT = png(64, 64, (1, 2, 3))


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin(image=CAT).start()
    yield server
    server.stop()


def submit_compat(
    stack: Stack,
    task_id: str,
    *,
    prefix: str | None = "output",
    context: Any = None,
    record: bool = True,
    **inp: Any,
) -> QueueMessage:
    """What /v1alpha2 queues: image_link already moved to init_images by the API, compat info, prefix."""
    msg = stack.message(task_id, **inp).model_copy(
        update={
            "output_prefix": prefix,
            "compat": CompatInfo(api="v1alpha2", runtime="sdruntime", context=context),
            "created_at": datetime.now(UTC),
        }
    )
    if record:
        task = queued_task(msg).model_copy(update={"context": context if isinstance(context, dict) else None})
        req = TaskRequest(id=msg.id, task_type=msg.task_type, model=msg.model, input=msg.input)
        stack.store.create(task, request_fingerprint(req))
    stack.publish(msg)
    return msg


def read_json(stack: Stack, uri: str) -> Any:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_image_link_fetched_and_results_in_the_reference_shape(stack: Stack, origin: Origin) -> None:
    settings = stack.settings(agent_test_insecure_origins=origin.url)
    link = f"{origin.url}/img.png"
    submit_compat(
        stack, "test-i2i", task_type="image-to-image", init_images=[link], seed=5, context={"job": 7}
    )
    with stack.running(stack.agent(settings)):
        result = stack.wait_result("test-i2i", "succeeded")
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 10, "message deleted")
    bucket = stack.resources.outputs_bucket
    folder = "tenants/acme/output/test-i2i/"
    # The image the origin served reached the runtime (as base64 init image).
    assert [p for p, _ in origin.hits] == ["/img.png"]
    [call] = stack.runtime.generation_calls()
    assert call.path == "img2img" and len(call.body["init_images"]) == 1
    # Outputs and .out under the prefix, inside the tenant's own prefix.
    assert stack.objects(folder) == [f"{folder}0.png", f"{folder}test-i2i.out"]
    assert stack.objects("tenants/acme/tasks/") == []
    assert result["id"] == "test-i2i" and result["result"] is True
    assert result["image_url"] == result["output"]["images"] == [f"s3://{bucket}/{folder}0.png"]
    assert result["output_url"] == f"s3://{bucket}/{folder}test-i2i.out"
    assert result["context"] == {"job": 7} and result["status"] == "succeeded"
    out = read_json(stack, result["output_url"])
    assert out["images"] == [""] and out["info"] == ""
    params = out["parameters"]
    assert (params["id_task"], params["error_msg"], params["init_images"]) == ("test-i2i", "", None)
    assert params["image_seed"] == "5" and params["prompt"] == "prompt of test-i2i"
    head = stack.s3.head_object(Bucket=bucket, Key=f"{folder}test-i2i.out")
    assert head["ContentType"] == "application/json"


def test_refused_inputs_and_prefix_fail_the_task_with_reason(stack: Stack, origin: Origin) -> None:
    """A host not in the allow-list, an allowed host resolving to a private address (stubbed resolver, no
    network), and a prefix that would leave the tenant's prefix (published to the topic directly)."""
    resolver = StubResolver({"images.example.com": ["10.1.2.3"]})
    settings = stack.settings(allowed_https_hosts="images.example.com")
    submit_compat(
        stack, "not-allowed", task_type="image-to-image", init_images=["https://cdn.example.org/cat.png"]
    )
    submit_compat(
        stack, "private", task_type="image-to-image", init_images=["https://images.example.com/cat.png"]
    )
    submit_compat(stack, "escape", prefix="../globex", record=False)
    with stack.running(stack.agent(settings, resolver=resolver)):
        results = {t: stack.wait_result(t, "failed") for t in ("not-allowed", "private", "escape")}
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 10, "messages deleted")
    expected = {
        "not-allowed": ("input_refused", "host 'cdn.example.org' is not in EASEL_ALLOWED_HTTPS_HOSTS"),
        "private": ("input_refused", "private address"),
        "escape": ("invalid_message", "output_prefix '../globex'"),
    }
    for task_id, (code, needle) in expected.items():
        r = results[task_id]
        assert r["error"]["code"] == code and needle in r["error"]["message"], r["error"]
        assert r["result"] is False and r["image_url"] == [] and r["id"] == task_id
        assert len(stack.results_for(task_id)) == 1
        assert stack.task(task_id).status == "failed"
    assert resolver.asked == ["images.example.com"]  # cdn.example.org was never even resolved
    assert origin.hit_count == 0 and stack.runtime.generation_calls() == []
    # The failure .out beside where the images would be; nothing at all for the refused prefix.
    failed = read_json(stack, results["not-allowed"]["output_url"])
    assert failed["parameters"]["status"] == 0
    assert failed["parameters"]["error_msg"].startswith("input_refused: ")
    assert "'https://cdn.example.org/cat.png' refused" in failed["parameters"]["error_msg"]
    assert results["escape"]["output_url"] is None
    assert stack.objects("tenants/globex/") == [] and stack.objects("tenants/acme/tasks/") == []
    assert stack.objects("tenants/acme/output/") == [
        "tenants/acme/output/not-allowed/not-allowed.out",
        "tenants/acme/output/private/private.out",
    ]
