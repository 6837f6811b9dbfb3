"""Stock SD WebUI client request bodies work unchanged (see data/README.md for where they come from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import info, open_png

DATA = Path(__file__).parent / "data"


@pytest.mark.slow  # 512x512, 20 steps, as recorded
def test_recorded_webuiapi_txt2img_body_works_unchanged(server: LiveServer) -> None:
    body = json.loads((DATA / "a1111_txt2img_webuiapi.json").read_text())
    response = server.post("/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"images", "parameters", "info"}
    assert isinstance(result["info"], str)
    meta = info(result)
    assert meta["seed"] == body["seed"]
    assert meta["all_seeds"] == [body["seed"]]
    assert meta["sampler_name"] == body["sampler_name"]
    assert meta["prompt"] == body["prompt"]
    assert meta["negative_prompt"] == body["negative_prompt"]
    assert open_png(result["images"][0]).size == (body["width"], body["height"])
    # "parameters" echoes the request, every field the client sent included.
    for key, value in body.items():
        assert result["parameters"][key] == value, key


def test_recorded_webuiapi_img2img_body_works_unchanged(server: LiveServer) -> None:
    body = json.loads((DATA / "a1111_img2img_webuiapi.json").read_text())
    response = server.post("/sdapi/v1/img2img", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert open_png(result["images"][0]).size == (body["width"], body["height"])
    assert info(result)["seed"] == body["seed"]
    assert result["parameters"]["init_images"] is None


def test_stock_client_calls_around_generation(server: LiveServer) -> None:
    """The calls webuiapi makes besides txt2img: models, options, progress, interrupt."""
    models = server.get("/sdapi/v1/sd-models").json()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    response = server.post("/sdapi/v1/options", {"sd_model_checkpoint": models[0]["title"]})
    assert response.status_code == 200
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == models[0]["title"]
    # A1111 titles carry a short hash suffix; such a title selects the same model.
    response = server.post("/sdapi/v1/options", {"sd_model_checkpoint": "a.safetensors [0123abcd]"})
    assert response.status_code == 200
    assert response.json()["sd_model_checkpoint"] == "a"
    progress = server.get("/sdapi/v1/progress").json()
    assert {"progress", "eta_relative", "state", "current_image", "textinfo"} <= set(progress)
    assert server.post("/sdapi/v1/interrupt").status_code == 200
    refreshed = server.post("/sdapi/v1/refresh-checkpoints")
    assert (refreshed.status_code, refreshed.json()) == (200, None)
