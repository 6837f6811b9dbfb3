"""Health states, interrupt, the busy policy and the model cache, observed through the server's own API."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime_image.server.loader import load_pipeline
from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import info, open_png, png_bytes

# Large and long enough (seconds on a CPU) that the test can watch it run and stop it.
LONG = {"prompt": "a cat", "steps": 50, "width": 512, "height": 512, "seed": 3}
SHORT = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}


def post_in_background(server: LiveServer, body: dict[str, Any]) -> Future[httpx.Response]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(httpx.post, f"{server.url}/sdapi/v1/txt2img", json=body, timeout=120)
    pool.shutdown(wait=False)
    return future


def wait_for(predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not reached")


def test_health_goes_starting_ready_busy_ready(make_server, tiny_store: Path) -> None:
    gate = threading.Event()

    def gated_loader(*args: Any) -> Any:
        gate.wait(30)
        return load_pipeline(*args)

    server = make_server(tiny_store, preload_model="a", loader=gated_loader)
    starting = server.get("/health")
    assert (starting.status_code, starting.json()["status"]) == (503, "starting")
    refused = server.post("/sdapi/v1/txt2img", SHORT)
    assert (refused.status_code, refused.json()["error"]) == (503, "not_ready")

    gate.set()
    ready = server.wait_status("ready")
    assert ready["model"] == "a"
    assert server.get("/health").status_code == 200

    running = post_in_background(server, LONG)
    busy = server.wait_status("busy")
    assert busy["queue"]["running"] == 1
    assert server.get("/health").status_code == 200
    progress = wait_for(lambda: (p := server.get("/sdapi/v1/progress").json())["progress"] > 0 and p)
    assert progress["state"]["job"] == "txt2img"
    assert progress["state"]["sampling_steps"] == 50
    server.post("/sdapi/v1/interrupt")
    assert running.result().status_code == 200
    assert server.wait_status("ready")["queue"] == {"running": 0, "waiting": 0, "max_waiting": 4}


def test_failed_start_reports_failed(make_server, tiny_store: Path) -> None:
    server = make_server(tiny_store, preload_model="missing-model")
    failed = server.wait_status("failed")
    assert "missing-model" in failed["error"]
    assert server.get("/health").status_code == 503
    assert server.post("/sdapi/v1/txt2img", SHORT).status_code == 503


def test_interrupt_stops_a_50_step_run_early(server: LiveServer) -> None:
    running = post_in_background(server, LONG)
    wait_for(
        lambda: (s := server.get("/sdapi/v1/progress").json()["state"])["job"] and s["sampling_step"] >= 2
    )
    assert server.post("/sdapi/v1/interrupt").json() == {"interrupted": True}
    response = running.result()
    assert response.status_code == 200
    meta = info(response.json())
    assert meta["interrupted"] is True
    assert 2 <= meta["steps_completed"] < 50
    # What it had is still a valid image of the asked size.
    assert open_png(response.json()["images"][0]).size == (512, 512)
    # The interrupt does not leak into the next generation.
    after = server.post("/sdapi/v1/txt2img", SHORT)
    assert info(after.json())["interrupted"] is False
    assert info(after.json())["steps_completed"] == 2


def test_busy_queue_is_bounded_and_full_queue_is_503(make_server, tiny_store: Path) -> None:
    server = make_server(tiny_store, preload_model="a", max_waiting=1)
    server.wait_status("ready")
    running = post_in_background(server, LONG)
    server.wait_status("busy")
    waiting = post_in_background(server, SHORT)
    wait_for(lambda: server.get("/health").json()["queue"]["waiting"] == 1)

    full = server.post("/sdapi/v1/txt2img", SHORT)
    assert full.status_code == 503
    assert full.json()["error"] == "busy"
    assert full.json()["retryable"] is True
    assert full.headers["retry-after"] == "1"

    server.post("/sdapi/v1/interrupt")
    assert running.result().status_code == 200
    queued = waiting.result()
    assert queued.status_code == 200
    assert info(queued.json())["interrupted"] is False
    assert server.wait_status("ready")["queue"]["waiting"] == 0


def test_switching_a_b_a_hits_the_cache(make_server, tiny_store: Path) -> None:
    server = make_server(tiny_store)
    server.wait_status("ready")
    assert server.get("/health").json()["model"] is None

    def generate() -> bytes:
        response = server.post("/sdapi/v1/txt2img", SHORT)
        assert response.status_code == 200, response.text
        return png_bytes(response.json()["images"][0])

    outputs: dict[str, list[bytes]] = {}
    seen = []
    for name in ("a", "b", "a"):
        assert server.post("/sdapi/v1/options", {"sd_model_checkpoint": name}).status_code == 200
        switched = server.cache()
        seen.append((switched["misses"], switched["hits"]))
        outputs.setdefault(name, []).append(generate())
    # a: loaded; b: loaded; back to a: a hit, no load. (Each generation looks its model up too: +1 hit.)
    assert seen == [(1, 0), (2, 1), (2, 3)]
    stats = server.cache()
    assert (stats["misses"], stats["hits"], stats["evictions"]) == (2, 4, 0)
    assert [m["name"] for m in stats["models"]] == ["b", "a"]
    assert stats["active"] == "a"
    assert stats["used_bytes"] == sum(m["bytes"] for m in stats["models"])
    assert outputs["a"][0] == outputs["a"][1]
    assert outputs["a"][0] != outputs["b"][0]

    # override_settings switches per request through the same cache; as in A1111 the selection comes back
    # afterwards unless override_settings_restore_afterwards is false.
    body = {**SHORT, "override_settings": {"sd_model_checkpoint": "b"}}
    assert png_bytes(server.post("/sdapi/v1/txt2img", body).json()["images"][0]) == outputs["b"][0]
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "a"
    assert generate() == outputs["a"][0]
    server.post("/sdapi/v1/txt2img", {**body, "override_settings_restore_afterwards": False})
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "b"
    assert server.cache()["misses"] == 2


def test_cache_is_bounded_by_bytes(make_server, tiny_store: Path) -> None:
    probe = make_server(tiny_store, preload_model="a")
    one_model = probe.wait_status("ready") and probe.cache()["models"][0]["bytes"]
    server = make_server(tiny_store, cache_max_bytes=one_model + one_model // 2)
    server.wait_status("ready")
    for name in ("a", "b", "a"):
        assert server.post("/sdapi/v1/options", {"sd_model_checkpoint": name}).status_code == 200
    stats = server.cache()
    assert (stats["misses"], stats["hits"], stats["evictions"]) == (3, 0, 2)
    assert stats["evicted"] == ["a", "b"]
    assert stats["used_bytes"] <= stats["max_bytes"]
    assert [m["name"] for m in stats["models"]] == ["a"]


def test_no_model_loaded_and_several_in_store_is_422(make_server, tiny_store: Path) -> None:
    server = make_server(tiny_store)
    server.wait_status("ready")
    response = server.post("/sdapi/v1/txt2img", SHORT)
    assert response.status_code == 422
    assert response.json()["field"] == "sd_model_checkpoint"


@pytest.mark.slow
def test_cli_serve_reads_env_defaults_and_serves(tiny_store: Path, tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "EASEL_MODELS_DIR": str(tiny_store),
        "EASEL_RUNTIME_PORT": str(port),
        "EASEL_CACHE_MAX_BYTES": "64MiB",
        "EASEL_RUNTIME_CPU_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    easel = Path(sys.executable).parent / "easel"
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(easel), "runtime", "serve", "--model", "a"], env=env, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> dict[str, Any] | None:
            try:
                body: dict[str, Any] = httpx.get(f"{url}/health", timeout=2).json()
            except httpx.TransportError:
                return None
            return body if body["status"] == "ready" else None

        assert wait_for(healthy, timeout=600)["model"] == "a"
        response = httpx.post(f"{url}/sdapi/v1/txt2img", json=SHORT, timeout=600)
        assert response.status_code == 200
        assert httpx.get(f"{url}/easel/v1/cache").json()["max_bytes"] == 64 * 1024**2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_interrupt_between_batches_keeps_finished_batches(server: LiveServer) -> None:
    body = {**LONG, "steps": 2, "n_iter": 40, "width": 256, "height": 256}
    running = post_in_background(server, body)
    wait_for(lambda: server.get("/sdapi/v1/progress").json()["state"]["job_no"] >= 1)
    assert server.post("/sdapi/v1/interrupt").json() == {"interrupted": True}
    result = running.result().json()
    meta = info(result)
    assert meta["interrupted"] is True
    assert 1 <= len(result["images"]) < 40
    assert meta["all_seeds"] == [3 + i for i in range(len(result["images"]))]
