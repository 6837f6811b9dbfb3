"""What only a ComfyUI runtime does, against the ComfyUI fake: node errors named, unknown node types refused,
the websocket-less polling fallback, and cancel of a prompt still waiting in ComfyUI's own queue."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from easel.contract import TaskStatus
from queue_agent.runtimes.comfyui import ComfyUiRuntime
from tests.agent.conformance import ComfyUiFakeBackend, workflow
from tests.agent.conftest import Stack, wait_for
from tests.agent.test_conformance import message, running, settings, submit


@pytest.fixture
def comfy() -> Iterator[ComfyUiFakeBackend]:
    backend = ComfyUiFakeBackend()
    backend.up()
    yield backend
    backend.release()
    backend.down()


def test_a_node_that_raises_fails_the_task_naming_the_node(stack: Stack, comfy: ComfyUiFakeBackend) -> None:
    comfy.fake.control.explode = "CUDA error: device-side assert triggered"
    submit(stack, "boom", comfy.pipeline(workflow()))
    with running(stack, comfy):
        result = stack.wait_result("boom", "failed", timeout=30)
    assert result["error"]["code"] == "node_failed"
    assert "node 3 (KSampler)" in result["error"]["message"]
    assert "device-side assert" in result["error"]["message"]


def test_an_unknown_node_type_is_refused_naming_it(stack: Stack, comfy: ComfyUiFakeBackend) -> None:
    graph = workflow()
    graph["20"] = {"class_type": "NotInstalledNode", "inputs": {}}
    submit(stack, "unknown", comfy.pipeline(graph))
    with running(stack, comfy):
        result = stack.wait_result("unknown", "failed", timeout=30)
    assert result["error"]["code"] == "runtime_rejected"
    assert "NotInstalledNode" in result["error"]["message"] and "#20" in result["error"]["message"]
    assert comfy.fake.prompts == []  # nothing was queued in ComfyUI


def test_without_the_websocket_the_agent_polls_history(stack: Stack, comfy: ComfyUiFakeBackend) -> None:
    def no_socket(url: str) -> object:
        raise OSError(f"refused: {url}")

    runtime = ComfyUiRuntime(
        httpx.Client(base_url=comfy.url, trust_env=False),
        ws_connect=no_socket,
        poll_seconds=0.05,  # type: ignore[arg-type]
    )
    submit(stack, "polled", comfy.pipeline(workflow(steps=3)))
    agent = stack.agent(settings(stack, comfy), runtime=runtime)
    with stack.running(agent):
        result = stack.wait_result("polled", "succeeded", timeout=30)
    assert len(result["output"]["images"]) == 1
    assert len(stack.objects("tenants/acme/tasks/polled/")) == 1


def test_cancel_removes_a_prompt_still_queued_in_comfyui(stack: Stack, comfy: ComfyUiFakeBackend) -> None:
    # Another client of the same ComfyUI holds it busy: our prompt waits in ComfyUI's queue.
    comfy.hold()
    other = httpx.post(f"{comfy.url}/prompt", json={"prompt": workflow(steps=5), "client_id": "someone"})
    assert other.status_code == 200
    wait_for(comfy.generating, 10, "the other prompt running")
    submit(stack, "waiting", comfy.pipeline(workflow()))
    with running(stack, comfy):
        stack.wait_status("waiting", "processing", timeout=30)
        ours = wait_for(lambda: [p for p in comfy.fake.prompts if p["client_id"] != "someone"], 30, "queued")
        stack.store.transition("acme", "waiting", TaskStatus.CANCELED)
        stack.wait_result("waiting", "canceled", timeout=30)
        assert comfy.fake.deleted == [ours[0]["prompt_id"]]
        # The other client's prompt was never interrupted by our cancel.
        assert comfy.fake.interrupts == 0 and comfy.generating()
    comfy.release()
    assert stack.objects("tenants/acme/tasks/waiting/") == []


def test_ws_progress_is_the_task_progress(comfy: ComfyUiFakeBackend) -> None:
    runtime = ComfyUiRuntime(httpx.Client(base_url=comfy.url, trust_env=False))
    comfy.hold()
    import threading

    request = runtime.pipeline_request(message("p", comfy.pipeline(workflow(steps=4))).input, images={})  # type: ignore[arg-type]
    done: list[list[bytes]] = []
    worker = threading.Thread(target=lambda: done.append(runtime.generate(request)), daemon=True)
    worker.start()
    wait_for(comfy.generating, 10, "running")
    # Held after its first of 4 steps: the websocket's progress message says 1/4.
    wait_for(lambda: runtime.progress() == 0.25, 10, "progress 1/4")
    comfy.release()
    worker.join(timeout=30)
    assert len(done) == 1 and len(done[0]) == 1
    assert runtime.progress() is None  # nothing of ours runs any more
