"""txt2img / img2img through the real HTTP server with the tiny model."""

from __future__ import annotations

import pytest
from PIL import Image

from runtime_image.server.samplers import sampler_names
from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import info, open_png, png_bytes, to_b64_png

BASE = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64, "cfg_scale": 7.0}


def txt2img(server: LiveServer, **fields: object) -> dict:
    response = server.post("/sdapi/v1/txt2img", {**BASE, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def gradient(size: tuple[int, int] = (64, 64), flip: bool = False) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    img.putdata([((x * 255) // w, (y * 255) // h, 255 if flip else 0) for y in range(h) for x in range(w)])
    return img


@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 64), (64, 128)])
def test_txt2img_returns_png_of_asked_size(server: LiveServer, width: int, height: int) -> None:
    body = txt2img(server, width=width, height=height, seed=1)
    assert len(body["images"]) == 1
    img = open_png(body["images"][0])
    assert img.format == "PNG"
    assert img.size == (width, height)
    meta = info(body)
    assert (meta["width"], meta["height"], meta["seed"], meta["all_seeds"]) == (width, height, 1, [1])
    assert body["parameters"]["width"] == width
    # The A1111 "parameters" text chunk travels in the PNG too.
    assert "Seed: 1" in img.info["parameters"]


def test_same_seed_same_bytes_other_seed_other_bytes(server: LiveServer) -> None:
    first = png_bytes(txt2img(server, seed=42)["images"][0])
    again = png_bytes(txt2img(server, seed=42)["images"][0])
    other = png_bytes(txt2img(server, seed=43)["images"][0])
    assert first == again
    assert other != first


def test_random_seed_is_reported_and_reproducible(server: LiveServer) -> None:
    body = txt2img(server, seed=-1)
    seed = info(body)["seed"]
    assert isinstance(seed, int)
    assert 0 <= seed < 2**32
    assert png_bytes(txt2img(server, seed=seed)["images"][0]) == png_bytes(body["images"][0])


@pytest.mark.parametrize("sampler", sampler_names())
def test_each_sampler_name_works(server: LiveServer, sampler: str) -> None:
    body = txt2img(server, sampler_name=sampler, seed=7, steps=2)
    assert open_png(body["images"][0]).size == (64, 64)
    assert info(body)["sampler_name"] == sampler


def test_samplers_differ_and_karras_schedule_changes_the_image(server: LiveServer) -> None:
    euler = png_bytes(txt2img(server, sampler_name="Euler", seed=9, steps=4)["images"][0])
    ddim = png_bytes(txt2img(server, sampler_name="DDIM", seed=9, steps=4)["images"][0])
    karras = png_bytes(
        txt2img(server, sampler_name="Euler", scheduler="Karras", seed=9, steps=4)["images"][0]
    )
    assert len({euler, ddim, karras}) == 3


def test_batch_size_three_gives_three_images_with_consecutive_seeds(server: LiveServer) -> None:
    body = txt2img(server, batch_size=3, seed=100)
    assert len(body["images"]) == 3
    assert info(body)["all_seeds"] == [100, 101, 102]
    pngs = [png_bytes(b) for b in body["images"]]
    assert len(set(pngs)) == 3
    assert all(open_png(b).size == (64, 64) for b in body["images"])


def test_n_iter_runs_batches_one_after_another(server: LiveServer) -> None:
    body = txt2img(server, batch_size=2, n_iter=2, seed=5)
    assert len(body["images"]) == 4
    assert info(body)["all_seeds"] == [5, 6, 7, 8]


def test_send_images_false_returns_no_images(server: LiveServer) -> None:
    body = txt2img(server, send_images=False, seed=1)
    assert body["images"] == []
    assert info(body)["all_seeds"] == [1]


def test_img2img_returns_png_of_asked_size_and_depends_on_the_init_image(server: LiveServer) -> None:
    def run(init: Image.Image, **fields: object) -> dict:
        body = {**BASE, "steps": 4, "seed": 3, "init_images": [to_b64_png(init)], "denoising_strength": 0.5}
        response = server.post("/sdapi/v1/img2img", {**body, **fields})
        assert response.status_code == 200, response.text
        return response.json()

    a = run(gradient())
    img = open_png(a["images"][0])
    assert img.size == (64, 64)
    assert png_bytes(run(gradient())["images"][0]) == png_bytes(a["images"][0])
    assert png_bytes(run(gradient(flip=True))["images"][0]) != png_bytes(a["images"][0])
    # A differently sized init image is resized to the asked size.
    resized = run(gradient((128, 80)), width=96, height=64)
    assert open_png(resized["images"][0]).size == (96, 64)
    assert info(a)["denoising_strength"] == 0.5
    # As A1111: the init image is not echoed back unless asked.
    assert a["parameters"]["init_images"] is None


def test_img2img_accepts_data_urls(server: LiveServer) -> None:
    body = {**BASE, "seed": 3, "init_images": ["data:image/png;base64," + to_b64_png(gradient())]}
    response = server.post("/sdapi/v1/img2img", body)
    assert response.status_code == 200, response.text
    assert open_png(response.json()["images"][0]).size == (64, 64)


def test_models_and_options(server: LiveServer) -> None:
    titles = [m["title"] for m in server.get("/sdapi/v1/sd-models").json()]
    assert titles == ["a", "b"]
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "a"
    assert [lo["name"] for lo in server.get("/sdapi/v1/loras").json()] == ["style"]
    samplers = [s["name"] for s in server.get("/sdapi/v1/samplers").json()]
    assert samplers == sampler_names()


def test_progress_is_idle_between_jobs(server: LiveServer) -> None:
    txt2img(server, seed=1)
    progress = server.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0.0
    assert progress["state"]["job_count"] == 0
    assert (progress["state"]["job"], progress["state"]["sampling_step"]) == ("", 0)
    assert server.post("/sdapi/v1/interrupt").json() == {"interrupted": False}


def test_unexpected_failure_is_a_json_500_and_the_server_keeps_serving(
    make_server, tiny_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime_image.server.pipelines import LoadedModel

    server = make_server(tiny_store, preload_model="a")
    server.wait_status("ready")
    real = LoadedModel.generate

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(LoadedModel, "generate", boom)
    response = server.post("/sdapi/v1/txt2img", {**BASE, "seed": 1})
    assert response.status_code == 500
    assert response.json() == {"error": "internal", "detail": "RuntimeError: CUDA out of memory (simulated)"}
    assert server.get("/sdapi/v1/progress").json()["state"]["job"] == ""
    monkeypatch.setattr(LoadedModel, "generate", real)
    assert server.wait_status("ready")["queue"]["running"] == 0
    assert server.post("/sdapi/v1/txt2img", {**BASE, "seed": 1}).status_code == 200
