"""The one fake runtime (benches and agent tests): one generation at a time, held until interrupted or
released, its busy spans recorded, and back on the same port after going down. Waits are on the fake's own
state (an event seen through its records), never on wall-clock windows."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bench.synthetic_runtime import SyntheticRuntime

pytestmark = pytest.mark.integration


def _until(pred: Callable[[], Any], what: str) -> None:
    """Poll the fake's records; the bound only turns a hang into a failure."""
    deadline = time.monotonic() + 10
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_one_generation_at_a_time_each_held_until_interrupted_or_released() -> None:
    with (
        SyntheticRuntime(hold_seconds=600) as rt,
        httpx.Client(base_url=rt.url, timeout=30, trust_env=False) as http,
        ThreadPoolExecutor(2) as pool,
    ):
        body = {"prompt": "p", "width": 8, "height": 8, "batch_size": 2, "seed": 5}
        first = pool.submit(http.post, "/sdapi/v1/txt2img", json=body)
        _until(lambda: rt.generating == 1, "the first generation to hold the runtime")
        assert http.get("/health").json() == {"status": "busy"}
        second = pool.submit(http.post, "/sdapi/v1/img2img", json={**body, "seed": 9})
        _until(lambda: len(rt.calls) == 2, "the second call to arrive")
        assert rt.generating == 1  # the second waits for the first: one generation at a time
        assert http.post("/sdapi/v1/interrupt").status_code == 200
        answer = first.result(timeout=10).json()
        assert len(answer["images"]) == 2 and '"all_seeds": [5, 6]' in answer["info"]
        _until(lambda: rt.calls[1].started > rt.calls[1].arrived, "the second generation to start")
        rt.release()
        assert second.result(timeout=10).status_code == 200
        assert http.get("/health").json() == {"status": "ready"}
    a, b = rt.generation_calls()
    assert (a.path, b.path) == ("txt2img", "img2img")
    assert a.interrupted and b.interrupted and rt.interrupts == 1
    assert a.ended is not None and b.ended is not None and a.ended <= b.started
    assert rt.busy_spans() == [(a.started, a.ended), (b.started, b.ended)]


def test_scripted_failures_model_switch_and_restart_on_the_same_port() -> None:
    rt = SyntheticRuntime(models={"m1", "m2"}, current_model="m1").up()
    try:
        http = httpx.Client(base_url=rt.url, timeout=30, trust_env=False)
        rt.control.fail_next = [503]
        assert http.post("/sdapi/v1/txt2img", json={}).status_code == 503
        ok = http.post("/sdapi/v1/txt2img", json={})
        assert ok.status_code == 200 and not rt.generation_calls()[1].interrupted
        assert http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "ghost"}).status_code == 404
        assert http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "m2"}).status_code == 200
        assert http.get("/sdapi/v1/options").json() == {"sd_model_checkpoint": "m2"}
        assert rt.option_posts == ["ghost", "m2"]
        url = rt.url
        rt.down()
        with pytest.raises(httpx.ConnectError):
            http.get("/health")
        rt.up()
        assert rt.url == url and http.get("/health").json() == {"status": "ready"}
        rt.reset(hold_seconds=0)
        assert http.post("/sdapi/v1/txt2img", json={}).status_code == 200
        assert len(rt.generation_calls()) == 1  # reset forgot the earlier calls
    finally:
        rt.down()
