"""The everyday workloads on tiny generated models of every architecture, through the live HTTP server:
SDXL, inpainting, hires fix, ControlNet, upscaling (extras), output formats, A1111 leniency, malformed input."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime_image.server.formats import read_infotext
from runtime_image.server.settings import RuntimeSettings
from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import info, png_bytes, to_b64_png

BODY: dict[str, Any] = {
    "prompt": "a cat",
    "steps": 2,
    "width": 64,
    "height": 64,
    "seed": 7,
    "sampler_name": "Euler",
}
MODELS = ("sd15", "sdxl", "sd15-inpaint", "sdxl-inpaint")


@pytest.fixture(scope="session")
def arch_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model of every architecture, named after it, plus ControlNets and an ESRGAN upscaler."""
    from runtime_image.server.tiny import make_tiny

    root = tmp_path_factory.mktemp("archs")
    for arch in (*MODELS, "sdxl-refiner"):
        make_tiny(root / arch, arch)
    make_tiny(root / "controlnet" / "cn-sd15", "controlnet-sd15")
    make_tiny(root / "controlnet" / "cn-sdxl", "controlnet-sdxl")
    make_tiny(root / "upscalers" / "4x-tiny.safetensors", "esrgan")
    return root


@pytest.fixture(scope="session")
def live(arch_store: Path) -> Iterator[LiveServer]:
    server = LiveServer(RuntimeSettings(models_dir=arch_store, preload_model="sd15")).start()
    server.wait_status("ready", timeout=600)  # a loaded CI box can take minutes to import and load
    yield server
    server.stop()


def _img(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(png_bytes(b64)))
    img.load()
    return img


def gen(
    live: LiveServer, path: str = "/sdapi/v1/txt2img", model: str = "sd15", **fields: Any
) -> dict[str, Any]:
    settings = {"sd_model_checkpoint": model, **fields.pop("override_settings", {})}
    response = live.post(path, {**BODY, "override_settings": settings, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pixels(body: dict[str, Any], index: int = 0) -> np.ndarray:
    return np.asarray(_img(body["images"][index]).convert("RGB"))


@pytest.fixture(scope="module")
def init_image() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def square_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 40, 48))
    return mask


# ---- architectures ----------------------------------------------------------------------------------------
def test_sd_models_reports_each_architecture(live: LiveServer) -> None:
    listing = {m["title"]: m["arch"] for m in live.get("/sdapi/v1/sd-models").json()}
    assert listing == {a: a for a in (*MODELS, "sdxl-refiner")}


@pytest.mark.parametrize("model", MODELS)
def test_text_to_image_is_seeded_and_deterministic(live: LiveServer, model: str) -> None:
    first = pixels(gen(live, model=model))
    assert (pixels(gen(live, model=model)) == first).all()
    assert (pixels(gen(live, model=model, seed=8)) != first).any()


@pytest.mark.parametrize("model", MODELS)
def test_image_to_image_is_deterministic(live: LiveServer, model: str, init_image: Image.Image) -> None:
    body = {"init_images": [to_b64_png(init_image)], "denoising_strength": 0.6}
    first = pixels(gen(live, "/sdapi/v1/img2img", model, **body))
    assert (pixels(gen(live, "/sdapi/v1/img2img", model, **body)) == first).all()


def test_sdxl_refiner_changes_the_base_output(live: LiveServer) -> None:
    base = pixels(gen(live, model="sdxl", steps=4))
    refined = gen(live, model="sdxl", steps=4, refiner_checkpoint="sdxl-refiner", refiner_switch_at=0.5)
    assert (pixels(refined) != base).any()
    assert "Refiner: sdxl-refiner" in info(refined)["infotexts"][0]
    again = gen(live, model="sdxl", steps=4, refiner_checkpoint="sdxl-refiner", refiner_switch_at=0.5)
    assert (pixels(again) == pixels(refined)).all()


# ---- inpainting -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("full_res", [False, True])
def test_inpainting_keeps_every_pixel_outside_the_mask(
    live: LiveServer, model: str, full_res: bool, init_image: Image.Image, square_mask: Image.Image
) -> None:
    body = gen(
        live,
        "/sdapi/v1/img2img",
        model,
        init_images=[to_b64_png(init_image)],
        mask=to_b64_png(square_mask),
        mask_blur=0,
        denoising_strength=1.0,
        inpaint_full_res=full_res,
        inpaint_full_res_padding=4,
    )
    out = pixels(body)
    inside = np.asarray(square_mask) > 0
    original = np.asarray(init_image)
    assert (out[~inside] == original[~inside]).all()
    assert (out[inside] != original[inside]).any()
    assert info(body)["is_using_inpainting_conditioning"] is True


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inverted_mask_and_every_fill_mode(
    live: LiveServer, fill: int, init_image: Image.Image, square_mask: Image.Image
) -> None:
    body = gen(
        live,
        "/sdapi/v1/img2img",
        init_images=[to_b64_png(init_image)],
        mask=to_b64_png(square_mask),
        mask_blur=0,
        inpainting_mask_invert=1,
        inpainting_fill=fill,
        inpaint_full_res=False,
        denoising_strength=0.75,
    )
    inside = np.asarray(square_mask) > 0
    # Inverted: the square is what stays.
    assert (pixels(body)[inside] == np.asarray(init_image)[inside]).all()


# ---- hires fix --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({"hr_scale": 2}, (128, 128)),
        ({"hr_scale": 1.5, "hr_upscaler": "Lanczos"}, (96, 96)),
        ({"hr_resize_x": 96, "hr_resize_y": 80, "hr_upscaler": "Latent (bicubic antialiased)"}, (96, 80)),
        ({"hr_resize_x": 128, "hr_upscaler": "4x-tiny"}, (128, 128)),
        (
            {"hr_scale": 2, "hr_upscaler": "Nearest", "hr_second_pass_steps": 3, "hr_sampler_name": "DDIM"},
            (128, 128),
        ),
    ],
)
def test_hires_fix_output_is_at_the_scaled_size(
    live: LiveServer, fields: dict[str, Any], size: tuple[int, int]
) -> None:
    body = gen(live, enable_hr=True, denoising_strength=0.6, **fields)
    assert _img(body["images"][0]).size == size
    assert (info(body)["width"], info(body)["height"]) == size
    assert f"Hires resize: {size[0]}x{size[1]}" in info(body)["infotexts"][0]


def test_hires_prompt_changes_the_second_pass_only(live: LiveServer) -> None:
    plain = pixels(gen(live, enable_hr=True, hr_scale=2))
    assert (pixels(gen(live, enable_hr=True, hr_scale=2)) == plain).all()
    other = pixels(
        gen(live, enable_hr=True, hr_scale=2, hr_prompt="a dog at night", hr_negative_prompt="red")
    )
    assert (other != plain).any()


@pytest.mark.parametrize("model", ["sdxl", "sd15-inpaint"])
def test_hires_fix_on_other_architectures(live: LiveServer, model: str) -> None:
    body = gen(live, model=model, enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos")
    assert _img(body["images"][0]).size == (96, 96)


# ---- ControlNet -------------------------------------------------------------------------------------------
def _unit(image: Image.Image, **fields: Any) -> dict[str, Any]:
    return {"enabled": True, "image": to_b64_png(image), "module": "canny", "model": "cn-sd15", **fields}


def _cn(*units: dict[str, Any]) -> dict[str, Any]:
    return {"alwayson_scripts": {"controlnet": {"args": list(units)}}}


def test_controlnet_unit_changes_the_output_and_neutral_units_do_not(
    live: LiveServer, init_image: Image.Image
) -> None:
    plain = pixels(gen(live))
    controlled = gen(live, **_cn(_unit(init_image)))
    assert (pixels(controlled) != plain).any()
    assert 'ControlNet 0: "Module: canny, Model: cn-sd15' in info(controlled)["infotexts"][0]
    assert (pixels(gen(live, **_cn(_unit(init_image, enabled=False)))) == plain).all()
    assert (pixels(gen(live, **_cn(_unit(init_image, weight=0)))) == plain).all()
    # Two units (one of them neutral) equal the one that counts.
    both = gen(live, **_cn(_unit(init_image), _unit(init_image, module="invert", weight=0)))
    assert (pixels(both) == pixels(controlled)).all()


def test_two_controlnet_units_and_every_mode(
    live: LiveServer, init_image: Image.Image, square_mask: Image.Image
) -> None:
    units = _cn(
        _unit(init_image, guidance_start=0.0, guidance_end=0.5, resize_mode="Just Resize"),
        _unit(
            init_image,
            module="invert",
            weight=0.5,
            control_mode="ControlNet is more important",
            pixel_perfect=True,
        ),
    )
    units["alwayson_scripts"]["controlnet"]["args"][0]["control_mode"] = 2
    two = pixels(gen(live, **units))
    one = pixels(gen(live, **_cn(_unit(init_image))))
    assert (two != one).any()
    init: dict[str, Any] = {"init_images": [to_b64_png(init_image)]}
    gen(live, "/sdapi/v1/img2img", **init, **_cn(_unit(init_image)))
    masked = gen(
        live, "/sdapi/v1/img2img", **init, mask=to_b64_png(square_mask), mask_blur=0, **_cn(_unit(init_image))
    )
    outside = np.asarray(square_mask) == 0
    assert (pixels(masked)[outside] == np.asarray(init_image)[outside]).all()
    hires = gen(live, enable_hr=True, hr_scale=2, **_cn(_unit(init_image)))
    assert _img(hires["images"][0]).size == (128, 128)


def test_sdxl_controlnet(live: LiveServer, init_image: Image.Image) -> None:
    plain = pixels(gen(live, model="sdxl"))
    controlled = pixels(
        gen(live, model="sdxl", **_cn(_unit(init_image, model="cn-sdxl [abc123]", module="none")))
    )
    assert (controlled != plain).any()


def test_controlnet_endpoints(live: LiveServer) -> None:
    assert live.get("/controlnet/version").json() == {"version": 3}
    assert live.get("/controlnet/model_list").json() == {"model_list": ["cn-sd15", "cn-sdxl"]}
    modules = live.get("/controlnet/module_list").json()
    assert {"none", "canny", "invert"} <= set(modules["module_list"])
    assert "depth_midas" not in modules["module_list"]


def test_canny_finds_the_edges_of_a_square() -> None:
    from runtime_image.server.controlnet import canny

    img = np.zeros((32, 32), dtype=np.uint8)
    img[8:24, 8:24] = 255
    edges = canny(img, 100, 200) > 0
    assert edges[8:24, 7:9].any() and edges[8:24, 23:25].any()
    assert not edges[12:20, 12:20].any() and not edges[0:4, 0:4].any()


# ---- upscaling (extras) -----------------------------------------------------------------------------------
def test_upscalers_list(live: LiveServer) -> None:
    names = [u["name"] for u in live.get("/sdapi/v1/upscalers").json()]
    assert names == ["None", "Lanczos", "Nearest", "4x-tiny"]
    modes = [m["name"] for m in live.get("/sdapi/v1/latent-upscale-modes").json()]
    assert modes[0] == "Latent" and "Latent (nearest-exact)" in modes


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({"upscaler_1": "Lanczos", "upscaling_resize": 2}, (96, 64)),
        ({"upscaler_1": "4x-tiny", "upscaling_resize": 4}, (192, 128)),
        (
            {"upscaler_1": "Nearest", "resize_mode": 1, "upscaling_resize_w": 100, "upscaling_resize_h": 100},
            (100, 100),
        ),
        ({"upscaler_1": "None", "upscaling_resize": 3}, (48, 32)),
        ({"upscaler_1": "Lanczos", "upscaler_2": "4x-tiny", "extras_upscaler_2_visibility": 0.5}, (96, 64)),
    ],
)
def test_extra_single_image(live: LiveServer, fields: dict[str, Any], size: tuple[int, int]) -> None:
    src = Image.new("RGB", (48, 32), (10, 120, 200))
    response = live.post("/sdapi/v1/extra-single-image", {"image": to_b64_png(src), **fields})
    assert response.status_code == 200, response.text
    assert _img(response.json()["image"]).size == size


def test_extra_batch_images(live: LiveServer) -> None:
    images = [
        {"data": to_b64_png(Image.new("RGB", (16 * (i + 1), 16))), "name": f"{i}.png"} for i in range(2)
    ]
    response = live.post("/sdapi/v1/extra-batch-images", {"imageList": images, "upscaler_1": "Nearest"})
    assert response.status_code == 200, response.text
    assert [_img(b).size for b in response.json()["images"]] == [(32, 32), (64, 32)]


# ---- output formats ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "pil"), [("png", "PNG"), ("jpg", "JPEG"), ("jpeg", "JPEG"), ("webp", "WEBP")]
)
def test_every_format_decodes_and_carries_the_infotext(live: LiveServer, fmt: str, pil: str) -> None:
    body = gen(live, override_settings={"samples_format": fmt, "jpeg_quality": 90})
    raw = png_bytes(body["images"][0])
    img = Image.open(io.BytesIO(raw))
    assert (img.format, img.mode, img.size) == (pil, "RGB", (64, 64))
    assert read_infotext(raw) == info(body)["infotexts"][0]
    assert read_infotext(raw).startswith("a cat\nSteps: 2")  # type: ignore[union-attr]


def test_webp_lossless_keeps_the_pixels(live: LiveServer) -> None:
    png = pixels(gen(live))
    webp = gen(live, override_settings={"samples_format": "webp", "webp_lossless": True})
    assert (np.asarray(Image.open(io.BytesIO(png_bytes(webp["images"][0]))).convert("RGB")) == png).all()


# ---- A1111 leniency ---------------------------------------------------------------------------------------
def test_unknown_fields_are_ignored_and_one_superset_body_serves_both(
    live: LiveServer, init_image: Image.Image
) -> None:
    superset = {
        **BODY,
        "init_images": [to_b64_png(init_image)],
        "mask": None,
        "denoising_strength": 0.5,
        "hr_scale": 2,
        "some_extension_field": {"x": 1},
        "sampler_index": "Euler",
    }
    t2i = live.post("/sdapi/v1/txt2img", superset)
    i2i = live.post("/sdapi/v1/img2img", superset)
    assert t2i.status_code == 200 and i2i.status_code == 200, (t2i.text, i2i.text)
    plain = live.post("/sdapi/v1/txt2img", BODY).json()
    assert t2i.json()["images"] == plain["images"]


# ---- malformed requests: 4xx naming the field, nothing generated ------------------------------------------
def _b64(img: Image.Image) -> str:
    return to_b64_png(img)


_SMALL = Image.new("L", (32, 32), 255)
_INIT = Image.new("RGB", (64, 64), (1, 2, 3))


def _i2i(**fields: Any) -> tuple[str, dict[str, Any]]:
    return "/sdapi/v1/img2img", {"init_images": [_b64(_INIT)], **fields}


def _t2i(**fields: Any) -> tuple[str, dict[str, Any]]:
    return "/sdapi/v1/txt2img", fields


_CN = "alwayson_scripts.controlnet.args.0"
MALFORMED: list[tuple[tuple[str, dict[str, Any]], str]] = [
    (_i2i(mask=_b64(_SMALL)), "mask"),
    (_i2i(mask="bm90IGFuIGltYWdl"), "mask"),
    (_i2i(mask="%%%"), "mask"),
    (_i2i(mask=_b64(Image.new("L", (64, 64), 0))), "mask"),
    (_i2i(mask=_b64(Image.new("L", (64, 64), 255)), mask_blur=100), "mask_blur"),
    (_i2i(mask=_b64(Image.new("L", (64, 64), 255)), inpainting_fill=4), "inpainting_fill"),
    (_i2i(mask=_b64(Image.new("L", (64, 64), 255)), inpainting_mask_invert=2), "inpainting_mask_invert"),
    (
        _i2i(mask=_b64(Image.new("L", (64, 64), 255)), inpaint_full_res_padding=999),
        "inpaint_full_res_padding",
    ),
    (_i2i(latent_mask=_b64(_SMALL)), "latent_mask"),
    (_t2i(enable_hr=True, hr_scale=0), "hr_scale"),
    (_t2i(enable_hr=True, hr_scale=10), "hr_scale"),
    (_t2i(enable_hr=True, hr_resize_x=9000), "hr_resize_x"),
    (_t2i(enable_hr=True, hr_upscaler="SuperRes 9000"), "hr_upscaler"),
    (_t2i(enable_hr=True, hr_sampler_name="Euler z"), "hr_sampler_name"),
    (_t2i(enable_hr=True, denoising_strength=0), "denoising_strength"),
    (_t2i(enable_hr=True, hr_second_pass_steps=-1), "hr_second_pass_steps"),
    (_t2i(enable_hr=True, hr_checkpoint_name="other"), "hr_checkpoint_name"),
    (_t2i(override_settings={"samples_format": "gif"}), "override_settings.samples_format"),
    (_t2i(override_settings={"samples_format": "jpeg", "jpeg_quality": 0}), "override_settings.jpeg_quality"),
    (
        _t2i(override_settings={"samples_format": "webp", "jpeg_quality": 101}),
        "override_settings.jpeg_quality",
    ),
    (_t2i(override_settings={"webp_lossless": "yes"}), "override_settings.webp_lossless"),
    (_t2i(refiner_checkpoint="sdxl-refiner", refiner_switch_at=1.5), "refiner_switch_at"),
    (_t2i(refiner_checkpoint="sdxl-refiner", refiner_switch_at=0.5), "refiner_checkpoint"),
    (_t2i(**_cn({"image": _b64(_INIT), "module": "zigzag", "model": "cn-sd15"})), f"{_CN}.module"),
    (_t2i(**_cn({"image": _b64(_INIT), "module": "depth_midas", "model": "cn-sd15"})), f"{_CN}.module"),
    (_t2i(**_cn({"image": _b64(_INIT), "module": "canny", "model": "cn-nope"})), f"{_CN}.model"),
    (_t2i(**_cn({"image": _b64(_INIT), "module": "canny", "model": "None"})), f"{_CN}.model"),
    (_t2i(**_cn({"image": _b64(_INIT), "module": "canny", "model": "cn-sdxl"})), f"{_CN}.model"),
    (_t2i(**_cn({"image": "bm90IGFuIGltYWdl", "module": "canny", "model": "cn-sd15"})), f"{_CN}.image"),
    (_t2i(**_cn({"module": "canny", "model": "cn-sd15"})), f"{_CN}.image"),
    (_t2i(**_cn({"image": _b64(_INIT), "model": "cn-sd15", "weight": 3})), f"{_CN}.weight"),
    (
        _t2i(**_cn({"image": _b64(_INIT), "model": "cn-sd15", "guidance_start": 0.8, "guidance_end": 0.2})),
        f"{_CN}.guidance_start",
    ),
    (
        _t2i(**_cn({"image": _b64(_INIT), "model": "cn-sd15", "control_mode": "Louder"})),
        f"{_CN}.control_mode",
    ),
    (_t2i(**_cn({"image": _b64(_INIT), "model": "cn-sd15", "control_mode": 1})), f"{_CN}.control_mode"),
    (_t2i(**_cn({"image": _b64(_INIT), "model": "cn-sd15", "resize_mode": "Stretch"})), f"{_CN}.resize_mode"),
    (_t2i(alwayson_scripts={"controlnet": {"args": "unit"}}), "alwayson_scripts.controlnet.args"),
    (_t2i(alwayson_scripts={"controlnet": {"args": [1]}}), "alwayson_scripts.controlnet.args.0"),
    (("/sdapi/v1/extra-single-image", {"image": "bm90IGFuIGltYWdl"}), "image"),
    (("/sdapi/v1/extra-single-image", {"image": _b64(_INIT), "upscaler_1": "Bicubic 9"}), "upscaler_1"),
    (
        ("/sdapi/v1/extra-single-image", {"image": _b64(_INIT), "upscaler_1": "Lanczos", "upscaler_2": "x"}),
        "upscaler_2",
    ),
    (("/sdapi/v1/extra-single-image", {"image": _b64(_INIT), "upscaling_resize": 0}), "upscaling_resize"),
    (("/sdapi/v1/extra-single-image", {"image": _b64(_INIT), "resize_mode": 2}), "resize_mode"),
    (("/sdapi/v1/extra-single-image", {"image": _b64(_INIT), "gfpgan_visibility": 0.5}), "gfpgan_visibility"),
    (("/sdapi/v1/extra-single-image", {"image": _b64(_INIT), "output_format": "tiff"}), "output_format"),
    (("/sdapi/v1/extra-batch-images", {"imageList": []}), "imageList"),
    (("/sdapi/v1/extra-batch-images", {"imageList": [{"data": "%%", "name": "a"}]}), "imageList.0.data"),
]


def test_enough_malformed_cases() -> None:
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize(("request_", "field"), MALFORMED, ids=[f for _, f in MALFORMED])
def test_malformed_requests_name_the_field_and_generate_nothing(
    live: LiveServer, request_: tuple[str, dict[str, Any]], field: str
) -> None:
    path, fields = request_
    body = {**BODY, **fields} if "sdapi/v1/extra" not in path else fields
    before = {m["name"]: m["uses"] for m in live.cache()["models"]}
    response = live.post(path, body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["field"] == field, response.text
    assert {m["name"]: m["uses"] for m in live.cache()["models"]} == before


# ---- architecture detection of single files (header only) ------------------------------------------------
@pytest.mark.parametrize(
    ("keys", "arch"),
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3)}, "sd15"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (8, 9, 3, 3)}, "sd15-inpaint"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
                "conditioner.embedders.0.transformer.x": (1,),
                "conditioner.embedders.1.model.x": (1,),
            },
            "sdxl",
        ),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (8, 9, 3, 3),
                "conditioner.embedders.0.transformer.x": (1,),
                "conditioner.embedders.1.model.x": (1,),
            },
            "sdxl-inpaint",
        ),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
                "conditioner.embedders.0.model.x": (1,),
            },
            "sdxl-refiner",
        ),
    ],
)
def test_single_file_architecture_from_the_header(
    tmp_path: Path, keys: dict[str, tuple[int, ...]], arch: str
) -> None:
    import torch
    from safetensors.torch import save_file

    from runtime_image.server.arch import detect_single_file

    path = tmp_path / "m.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))
    assert detect_single_file(path, "m") == arch
