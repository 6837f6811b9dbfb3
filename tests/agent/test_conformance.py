"""One agent conformance suite, run against every runtime kind (tests/agent/conformance.py backends).

Each case is the same agent behaviour seen through a different runtime: success with outputs in S3, cancel
of a running task, the runtime down then back (retry), a permanent rejection, a model switch, drain on
SIGTERM, and a duplicate delivery. The real Easel runtime runs it twice: as kind ``diffusers`` and as kind
``sdwebui`` (driven by the stock SD WebUI adapter, which proves it a drop-in SD WebUI API).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from easel.contract import QueueMessage, TaskStatus, parse_input
from tests.agent.conformance import (
    Backend,
    ComfyUiFakeBackend,
    EaselRuntimeBackend,
    SdWebUiFakeBackend,
    TaskShape,
    tiny_store,
)
from tests.agent.conftest import RUNTIME, Stack, wait_for

KINDS = [
    pytest.param("sdwebui-fake", id="sdwebui-fake"),
    pytest.param("comfyui-fake", id="comfyui-fake"),
    pytest.param("diffusers", id="diffusers", marks=pytest.mark.slow),
    pytest.param("easel-as-sdwebui", id="easel-as-sdwebui", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance-models")


@pytest.fixture
def backend(request: pytest.FixtureRequest, models_root: Path) -> Iterator[Backend]:
    name = request.param
    b: Backend
    if name == "sdwebui-fake":
        b = SdWebUiFakeBackend()
    elif name == "comfyui-fake":
        b = ComfyUiFakeBackend()
    else:
        if not (models_root / "sd15").exists():
            tiny_store(models_root)
        b = EaselRuntimeBackend(models_root, kind="sdwebui" if name == "easel-as-sdwebui" else "diffusers")
    b.up()
    yield b
    b.release()
    b.down()


@pytest.fixture
def kstack(stack: Stack, backend: Backend) -> Stack:
    def put(key: str, data: bytes) -> str:
        full = f"tenants/acme/{key}"
        stack.s3.put_object(Bucket=stack.resources.outputs_bucket, Key=full, Body=data)
        return f"s3://{stack.resources.outputs_bucket}/{full}"

    backend.setup(put)
    return stack


def settings(stack: Stack, backend: Backend, **over: Any) -> Any:
    return stack.settings(runtime_url=backend.url, runtime_kind=backend.kind, models=backend.models, **over)


def running(stack: Stack, backend: Backend, **over: Any) -> Any:
    """The agent of this backend's kind, running in a thread."""
    return stack.running(stack.agent(settings(stack, backend, **over)))


def message(task_id: str, shape: TaskShape) -> QueueMessage:
    return QueueMessage(
        id=task_id,
        tenant="acme",
        task_type=shape.task_type,  # type: ignore[arg-type]
        model=shape.model,
        runtime=RUNTIME,
        priority="normal",  # type: ignore[arg-type]
        input=parse_input(shape.task_type, shape.input),
        created_at=datetime.now(UTC),
    )


def submit(stack: Stack, task_id: str, shape: TaskShape) -> QueueMessage:
    msg = message(task_id, shape)
    stack.create_record(msg)
    stack.publish(msg)
    return msg


def images_of(stack: Stack, task_id: str) -> list[Image.Image]:
    keys = stack.objects(f"tenants/acme/tasks/{task_id}/")
    out = []
    for key in keys:
        body = stack.s3.get_object(Bucket=stack.resources.outputs_bucket, Key=key)["Body"].read()
        out.append(Image.open(io.BytesIO(body)))
    return out


pytestmark = [
    pytest.mark.parametrize("backend", KINDS, indirect=True),
    # numpy 2 deprecations raised inside diffusers' schedulers (the real runtime's cases): not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]


def test_success_puts_outputs_in_s3(kstack: Stack, backend: Backend) -> None:
    submit(kstack, "ok", backend.ok())
    with running(kstack, backend):
        result = kstack.wait_result("ok", "succeeded", timeout=120)
    images = images_of(kstack, "ok")
    assert len(images) == 1 and images[0].size[0] > 0
    assert result["output"]["images"] == [
        f"s3://{kstack.resources.outputs_bucket}/tenants/acme/tasks/ok/0.png"
    ]
    assert kstack.queue_counts(kstack.normal_url) == (0, 0)


def test_cancel_of_running_task(kstack: Stack, backend: Backend) -> None:
    backend.hold()
    submit(kstack, "run", backend.long())
    with running(kstack, backend):
        kstack.wait_status("run", "processing", timeout=60)
        wait_for(backend.generating, 60, "generation running")
        kstack.store.transition("acme", "run", TaskStatus.CANCELED)  # what the API's cancel does
        result = kstack.wait_result("run", "canceled", timeout=60)
        backend.release()
        # The runtime took the interrupt and is free for the next task.
        submit(kstack, "next", backend.ok(seed=2))
        kstack.wait_result("next", "succeeded", timeout=120)
    assert result["output"] is None
    assert kstack.objects("tenants/acme/tasks/run/") == []
    assert [r["status"] for r in kstack.results_for("run")] == ["canceled"]


def test_runtime_down_then_back_is_retried(kstack: Stack, backend: Backend) -> None:
    with running(kstack, backend) as agent:
        backend.down()
        submit(kstack, "later", backend.ok())
        # The agent received it, could not reach the runtime and gave it back with a backoff.
        wait_for(lambda: agent.stats.snapshot()["retried"] >= 1, 60, "a retry")
        assert kstack.task("later").status in ("queued", "processing")
        backend.up()
        kstack.wait_result("later", "succeeded", timeout=180)
    assert len(images_of(kstack, "later")) == 1


def test_permanent_rejection_fails_the_task(kstack: Stack, backend: Backend) -> None:
    shape, code = backend.rejected()
    submit(kstack, "bad", shape)
    with running(kstack, backend):
        result = kstack.wait_result("bad", "failed", timeout=120)
        wait_for(lambda: kstack.queue_counts(kstack.normal_url) == (0, 0), 30, "message deleted")
    assert result["error"]["code"] == code
    assert "/sdapi" not in result["error"]["message"]


def test_model_switch(kstack: Stack, backend: Backend) -> None:
    submit(kstack, "first", backend.ok(model="sd15"))
    with running(kstack, backend):
        kstack.wait_result("first", "succeeded", timeout=120)
        submit(kstack, "second", backend.ok(model="other", seed=3))
        kstack.wait_result("second", "succeeded", timeout=180)
        assert backend.loaded() == "other"
        submit(kstack, "third", backend.ok(model="sd15", seed=4))
        kstack.wait_result("third", "succeeded", timeout=180)
        assert backend.loaded() == "sd15"


def test_drain_on_sigterm_returns_the_running_task(kstack: Stack, backend: Backend) -> None:
    backend.hold()
    submit(kstack, "drained", backend.long())
    agent = kstack.agent(settings(kstack, backend, agent_shutdown_grace_seconds=0))
    with kstack.running(agent):
        kstack.wait_status("drained", "processing", timeout=60)
        wait_for(backend.generating, 60, "generation running")
        agent.request_stop("SIGTERM")  # what the signal handler does
        wait_for(agent.shutdown.drained.is_set, 60, "drained")
    backend.release()
    # Interrupted and given back at once (visibility 0): the task is not lost, nor failed.
    wait_for(lambda: kstack.queue_counts(kstack.normal_url)[0] == 1, 30, "message visible again")
    assert kstack.task("drained").status == "processing"
    assert kstack.objects("tenants/acme/tasks/drained/") == []


def test_duplicate_delivery_yields_one_result(kstack: Stack, backend: Backend) -> None:
    msg = message("twice", backend.ok())
    kstack.create_record(msg)
    kstack.publish(msg)
    kstack.publish(msg)
    with running(kstack, backend):
        kstack.wait_result("twice", "succeeded", timeout=120)
        wait_for(lambda: kstack.queue_counts(kstack.normal_url) == (0, 0), 60, "both messages deleted")
    assert [r["status"] for r in kstack.results_for("twice")] == ["succeeded"]
    assert len(kstack.objects("tenants/acme/tasks/twice/")) == 1
