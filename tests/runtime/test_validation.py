"""Invalid and unsupported inputs: 422 naming the field; neutral values of unsupported fields pass."""

from __future__ import annotations

from typing import Any

import pytest

from runtime_image.server.errors import RequestError
from runtime_image.server.policy import check_supported
from runtime_image.server.schemas import Img2ImgRequest, Txt2ImgRequest
from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import to_b64_png

BODY: dict[str, Any] = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 1}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 65}, "width"),
        ({"height": 32}, "height"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"cfg_scale": -1}, "cfg_scale"),
        ({"seed": -2}, "seed"),
        ({"seed": "lucky"}, "seed"),
        ({"sampler_name": "Euler b"}, "sampler_name"),
        ({"sampler_index": "LMS Turbo"}, "sampler_index"),
        ({"scheduler": "Karras", "sampler_name": "Euler a"}, "scheduler"),
        ({"scheduler": "Beta"}, "scheduler"),
        ({"enable_hr": True, "hr_scale": 0}, "hr_scale"),
        ({"restore_faces": True}, "restore_faces"),
        ({"tiling": True}, "tiling"),
        ({"styles": ["cinematic"]}, "styles"),
        ({"subseed_strength": 0.3}, "subseed_strength"),
        ({"seed_resize_from_w": 768}, "seed_resize_from_w"),
        ({"s_noise": 0.9}, "s_noise"),
        ({"script_name": "x/y/z plot"}, "script_name"),
        (
            {"alwayson_scripts": {"ControlNet": {"args": [{"enabled": True}]}}},
            "alwayson_scripts.controlnet.args.0.model",
        ),
        ({"alwayson_scripts": {"Dynamic Prompts": {"args": [True]}}}, "alwayson_scripts"),
        ({"refiner_checkpoint": "sdxl-refiner"}, "refiner_switch_at"),
        ({"override_settings": {"sd_vae": "kl-f8.safetensors"}}, "override_settings.sd_vae"),
        (
            {"override_settings": {"CLIP_stop_at_last_layers": 40}},
            "override_settings.CLIP_stop_at_last_layers",
        ),
        ({"eta": 0.0, "sampler_name": "Euler a"}, "eta"),
        ({"loras": [{"name": "style", "weight": 9}]}, "loras.0.weight"),
        ({"loras": [{"name": "../etc/passwd"}]}, "loras.0.name"),
        ({"prompt": "a cat <lora:style:strong>"}, "prompt"),
    ],
)
def test_txt2img_invalid_fields_are_named(server: LiveServer, fields: dict[str, Any], field: str) -> None:
    response = server.post("/sdapi/v1/txt2img", {**BODY, **fields})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert body["error"] == "invalid_request"
    assert field in body["detail"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"init_images": []}, "init_images"),
        ({"init_images": ["not base64!"]}, "init_images.0"),
        ({"init_images": ["aGVsbG8="]}, "init_images.0"),
        ({"mask": "<b64>"}, "mask"),
        ({"resize_mode": 1}, "resize_mode"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"denoising_strength": 0.1, "steps": 4}, "denoising_strength"),
        ({"initial_noise_multiplier": 0.5}, "initial_noise_multiplier"),
    ],
)
def test_img2img_invalid_fields_are_named(
    server: LiveServer, fields: dict[str, Any], field: str, init_png: str
) -> None:
    response = server.post("/sdapi/v1/img2img", {**BODY, "init_images": [init_png], **fields})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_missing_init_images_is_named(server: LiveServer) -> None:
    response = server.post("/sdapi/v1/img2img", BODY)
    assert response.status_code == 422
    assert response.json()["field"] == "init_images"


def test_missing_model_is_404_naming_it(server: LiveServer) -> None:
    response = server.post(
        "/sdapi/v1/txt2img", {**BODY, "override_settings": {"sd_model_checkpoint": "sdxl"}}
    )
    assert response.status_code == 404
    assert response.json()["model"] == "sdxl"
    response = server.post("/sdapi/v1/options", {"sd_model_checkpoint": "../a"})
    assert response.status_code == 422
    assert response.json()["field"] == "sd_model_checkpoint"


def test_neutral_values_of_unsupported_fields_are_accepted(server: LiveServer) -> None:
    neutral = {
        "enable_hr": False,
        "hr_upscaler": "Latent",  # meaningless without enable_hr, ignored as A1111 does
        "restore_faces": False,
        "tiling": None,
        "styles": [],
        "subseed": 1234,  # only used with a subseed_strength
        "subseed_strength": 0,
        "seed_resize_from_h": -1,
        "seed_resize_from_w": 0,
        "s_churn": 0,
        "s_tmax": 0,
        "s_noise": 1,
        "script_name": None,
        "script_args": [],
        "alwayson_scripts": {"ControlNet": {"args": []}},
        "override_settings": {"sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1},
        "do_not_save_samples": True,
        "save_images": False,
        "comments": {},
    }
    response = server.post("/sdapi/v1/txt2img", {**BODY, **neutral})
    assert response.status_code == 200, response.text


def test_policy_checks_every_declared_rule_directly() -> None:
    ok = Txt2ImgRequest(prompt="x")
    check_supported(ok, "Euler")
    with pytest.raises(RequestError) as err:
        check_supported(Txt2ImgRequest(prompt="x", infotext="Steps: 20"), "Euler")
    assert err.value.field == "infotext"
    with pytest.raises(RequestError) as err:
        check_supported(Img2ImgRequest(init_images=["a", "b"]), "Euler")
    assert err.value.field == "init_images"
    # eta is honoured by DDIM and not refused for non-ancestral samplers, like A1111.
    check_supported(Txt2ImgRequest(prompt="x", eta=0.3), "DDIM")


@pytest.fixture(scope="module")
def init_png() -> str:
    from PIL import Image

    return to_b64_png(Image.new("RGB", (64, 64), (200, 30, 30)))
