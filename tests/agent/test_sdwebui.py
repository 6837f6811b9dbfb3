"""The stock SD WebUI adapter against the SD WebUI fake (real HTTP): readiness without /health, checkpoints
by any name the WebUI knows, LoRAs checked before generating, and the WebUI's error answers classified."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from easel.contract import parse_input
from queue_agent.errors import LoraMissing, ModelMissing, RuntimeFault, RuntimeRejected, Unsupported
from queue_agent.runtimes import RuntimeRequest
from queue_agent.runtimes.health import RuntimeHealth
from queue_agent.runtimes.sdwebui import SdWebUiRuntime
from tests.agent.conftest import wait_for
from tests.agent.fake_sdwebui import FakeSdWebUi, checkpoint


@pytest.fixture
def webui() -> Iterator[FakeSdWebUi]:
    fake = FakeSdWebUi().up()
    yield fake
    fake.down()


@pytest.fixture
def runtime(webui: FakeSdWebUi) -> SdWebUiRuntime:
    return SdWebUiRuntime(httpx.Client(base_url=webui.url, trust_env=False), model_trust_seconds=0)


def test_ready_from_the_api_it_has(webui: FakeSdWebUi, runtime: SdWebUiRuntime) -> None:
    http = httpx.Client(base_url=webui.url)
    # What a --nowebui WebUI does not serve: the probes and the agent must not depend on it.
    assert http.get("/health").status_code == 404
    assert http.get("/internal/ping").status_code == 404
    assert runtime.health() is RuntimeHealth.READY
    webui.down()
    assert runtime.health() is RuntimeHealth.DOWN


@pytest.mark.parametrize("name", ["other.safetensors", "other", "title", "hash", "sha256"])
def test_a_checkpoint_by_any_of_its_names(webui: FakeSdWebUi, runtime: SdWebUiRuntime, name: str) -> None:
    entry = checkpoint("other.safetensors")
    given = entry.get(name, name) if name in ("title", "hash", "sha256") else name
    assert runtime.ensure_model(given) is True
    assert webui.loads == [entry["title"]]
    assert runtime.ensure_model(given) is False  # already loaded: no second switch
    assert webui.loads == [entry["title"]]


def test_an_unknown_checkpoint_is_model_missing(webui: FakeSdWebUi, runtime: SdWebUiRuntime) -> None:
    with pytest.raises(ModelMissing, match="no checkpoint 'ghost'"):
        runtime.ensure_model("ghost")
    # The WebUI's own answer to an unknown sd_model_checkpoint (500 RuntimeError) means the same.
    with pytest.raises(ModelMissing, match="not found"):
        runtime._call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": "ghost"}, timeout=5)
    assert webui.loads == []


def _request(runtime: SdWebUiRuntime, **inp: object) -> RuntimeRequest:
    data = parse_input("text-to-image", {"prompt": "a fox", "width": 64, "height": 64, "steps": 2, **inp})
    return runtime.generation_request(data, init_images=[], lora_names={})  # type: ignore[arg-type]


def test_loras_as_prompt_tags_checked_first(webui: FakeSdWebUi, runtime: SdWebUiRuntime) -> None:
    request = _request(runtime, loras=[{"name": "style", "weight": 0.5}])
    assert request.body["prompt"] == "a fox <lora:style:0.5>" and "loras" not in request.body
    assert len(runtime.generate(request)) == 1
    missing = _request(runtime, loras=[{"name": "nowhere", "weight": 1.0}])
    with pytest.raises(LoraMissing, match="nowhere"):
        runtime.generate(missing)
    assert len(webui.generations) == 1  # the WebUI would have generated without it: never asked


def test_the_webuis_refusals_are_permanent(webui: FakeSdWebUi, runtime: SdWebUiRuntime) -> None:
    with pytest.raises(RuntimeRejected, match="Sampler not found"):  # 404 HTTPException
        runtime.generate(_request(runtime, sampler_name="PNDM"))
    with pytest.raises(RuntimeRejected, match="422"):  # FastAPI body validation
        runtime.generate(RuntimeRequest("txt2img", {"prompt": "x", "steps": "many"}))
    with pytest.raises(RuntimeRejected, match="Invalid encoded image"):  # 500 HTTPException
        runtime.generate(RuntimeRequest("img2img", {"prompt": "x", "init_images": ["not base64!"]}))


def test_a_crash_is_unknown_not_permanent(runtime: SdWebUiRuntime) -> None:
    answer = httpx.Response(
        500,
        json={"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory"},
        request=httpx.Request("POST", "http://x/sdapi/v1/txt2img"),
    )
    assert isinstance(runtime._refusal("POST /sdapi/v1/txt2img", answer, None), RuntimeFault)


def test_no_training_and_no_private_loras(runtime: SdWebUiRuntime) -> None:
    data = parse_input("train-lora", {"images": ["s3://b-x/k"], "instance_prompt": "x", "output_name": "me"})
    with pytest.raises(Unsupported, match="diffusers"):
        runtime.training_request(data, images=[], model="m")  # type: ignore[arg-type]
    with pytest.raises(Unsupported):
        runtime.put_private_lora("acme", "me", b"x")
    assert runtime.private_lora("acme", "me") is None
    assert runtime.batching is False


def test_progress_interrupt_and_skip(webui: FakeSdWebUi, runtime: SdWebUiRuntime) -> None:
    webui.control.hold = True
    done: list[list[bytes]] = []
    worker = threading.Thread(target=lambda: done.append(runtime.generate(_request(runtime, steps=4))))
    worker.start()
    wait_for(webui.generating.is_set, 10, "generating")
    assert (runtime.progress() or 0) > 0
    assert runtime.skip() is True
    worker.join(timeout=10)
    assert webui._state.skipped and len(done) == 1
    # An interrupt ends the job early; the WebUI still answers 200 with what it has.
    worker = threading.Thread(target=lambda: done.append(runtime.generate(_request(runtime, steps=4))))
    worker.start()
    wait_for(webui.generating.is_set, 10, "generating again")
    assert runtime.interrupt() is True
    worker.join(timeout=10)
    assert webui.interrupts == 1 and len(done) == 2
    assert done[1][0][:4] == b"\x89PNG"
