"""The real `webuiapi` client (PyPI) drives each new feature against the live server, bodies unchanged."""

from __future__ import annotations

from urllib.parse import urlparse

import numpy as np
import pytest
import webuiapi
from PIL import Image

from tests.runtime.conftest import LiveServer
from tests.runtime.test_workloads import arch_store, live  # noqa: F401 - the shared tiny store and server


@pytest.fixture(scope="module")
def api(live: LiveServer) -> webuiapi.WebUIApi:  # noqa: F811
    url = urlparse(live.url)
    return webuiapi.WebUIApi(host=url.hostname, port=url.port, sampler="Euler", steps=2)


def _init() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def test_txt2img_with_hires_fix(api: webuiapi.WebUIApi) -> None:
    api.util_set_model("sd15")
    result = api.txt2img(
        prompt="a cat",
        width=64,
        height=64,
        seed=3,
        enable_hr=True,
        hr_scale=2,
        hr_upscaler=webuiapi.HiResUpscaler.Latent,
    )
    assert result.image.size == (128, 128)
    assert result.info["all_seeds"] == [3]


def test_img2img_with_a_mask(api: webuiapi.WebUIApi) -> None:
    init = _init()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 32, 40))
    result = api.img2img(
        images=[init],
        mask_image=mask,
        mask_blur=0,
        prompt="a cat",
        width=64,
        height=64,
        seed=3,
        denoising_strength=1.0,
    )
    out = np.asarray(result.image.convert("RGB"))
    outside = np.asarray(mask) == 0
    assert (out[outside] == np.asarray(init)[outside]).all()
    assert (out[~outside] != np.asarray(init)[~outside]).any()


def test_controlnet_units_through_its_helper(api: webuiapi.WebUIApi) -> None:
    plain = api.txt2img(prompt="a cat", width=64, height=64, seed=4)
    unit = webuiapi.ControlNetUnit(image=_init(), module="canny", model="cn-sd15", weight=0.8)
    controlled = api.txt2img(prompt="a cat", width=64, height=64, seed=4, controlnet_units=[unit])
    assert (np.asarray(controlled.image) != np.asarray(plain.image)).any()
    off = webuiapi.ControlNetUnit(image=_init(), module="canny", model="cn-sd15", enabled=False)
    disabled = api.txt2img(prompt="a cat", width=64, height=64, seed=4, controlnet_units=[off])
    assert (np.asarray(disabled.image) == np.asarray(plain.image)).all()


def test_extra_single_image_and_upscalers(api: webuiapi.WebUIApi) -> None:
    names = [u["name"] for u in api.get_upscalers()]
    assert {"None", "Lanczos", "Nearest", "4x-tiny"} <= set(names)
    result = api.extra_single_image(
        image=Image.new("RGB", (40, 24)), upscaler_1="4x-tiny", upscaling_resize=2
    )
    assert result.image.size == (80, 48)
