"""Cross-task batching through the agent with the real runtime (tiny model on CPU) and moto: four compatible
tasks run as one batch, and each task's image equals the image the same task gets alone, within the
runtime's stated tolerance (tests/runtime/test_batch.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from easel.contract import TaskStatus
from easel.contract.tasks import GenerationInput
from queue_agent.runtimes import RuntimeRequest
from queue_agent.runtimes.webui import WebUiRuntime
from queue_agent.runtimes.webui_bodies import runtime_body
from tests.agent.conftest import Stack, wait_for
from tests.runtime.conftest import LiveServer
from tests.runtime.test_batch import TOLERANCE

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from runtime_image.server.settings import RuntimeSettings
    from runtime_image.server.tiny import make_tiny_model

    root: Path = tmp_path_factory.mktemp("models")
    make_tiny_model(root / "sd15", seed=0)
    live = LiveServer(RuntimeSettings(models_dir=root, preload_model="sd15")).start()
    live.wait_status("ready")
    yield live
    live.stop()


class CountingRuntime(WebUiRuntime):
    """The real adapter, recording the size of every batch it sends."""

    def __init__(self, http: httpx.Client) -> None:
        super().__init__(http)
        self.batches: list[int] = []

    def generate_batch(self, requests: list[RuntimeRequest]) -> list[list[bytes] | Exception]:
        self.batches.append(len(requests))
        return super().generate_batch(requests)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_four_tasks_batched_through_the_agent_match_each_task_alone(
    stack: Stack, real_runtime: LiveServer
) -> None:
    runtime = CountingRuntime(httpx.Client(base_url=real_runtime.url, trust_env=False))
    settings = stack.settings(
        runtime_url=real_runtime.url, agent_batch_max_images=5, agent_batch_max_wait_seconds=5.0
    )
    agent = stack.agent(settings, runtime=runtime)
    ids = ["p0", "p1", "p2", "p3"]  # five images in all: one batch at max_images 5
    inputs = [
        {"prompt": "a red house", "seed": 11},
        {"prompt": "a blue car", "negative_prompt": "blurry", "seed": 12},
        {"prompt": "a green tree", "seed": 13, "batch_size": 2},
        {"prompt": "a yellow sun", "negative_prompt": "dark", "seed": 14},
    ]
    with stack.running(agent):
        # A long task of another size (so it runs alone) keeps the runtime busy while the four are received;
        # canceling it interrupts the runtime, and the four then run together.
        stack.submit("blocker", width=256, height=256, steps=500)
        stack.wait_status("blocker", "processing", timeout=30)
        messages = [stack.submit(tid, steps=3, **inp) for tid, inp in zip(ids, inputs, strict=True)]
        wait_for(lambda: len(agent.prefetcher._buffer) == 4, 30, "the four tasks prepared")
        stack.store.transition("acme", "blocker", TaskStatus.CANCELED)
        for tid in ids:
            stack.wait_result(tid, "succeeded", timeout=120)
        stack.wait_result("blocker", "canceled", timeout=30)
    assert runtime.batches == [4]
    worst = 0
    for tid, msg in zip(ids, messages, strict=True):
        keys = stack.objects(f"tenants/acme/tasks/{tid}/")
        batched = [
            stack.s3.get_object(Bucket=stack.resources.outputs_bucket, Key=k)["Body"].read() for k in keys
        ]
        inp = msg.input
        assert isinstance(inp, GenerationInput)
        kind, body = runtime_body(inp)
        alone = runtime.generate(RuntimeRequest(kind, body))
        assert len(batched) == len(alone) == inp.batch_size
        for b, a in zip(batched, alone, strict=True):
            worst = max(worst, int(np.abs(pixels(b) - pixels(a)).max()))
        task = stack.task(tid)
        assert task.metrics.gpu_seconds is not None and task.metrics.predict_seconds is not None
        share = inp.batch_size / 5
        assert task.metrics.gpu_seconds == pytest.approx(task.metrics.predict_seconds * share, abs=2e-6)
    assert worst <= TOLERANCE, f"largest per-pixel difference {worst} > {TOLERANCE}"
