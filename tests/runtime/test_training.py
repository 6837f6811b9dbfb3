"""POST /easel/v1/train-lora: a real (tiny) LoRA fine-tune that lands in the store and is usable at once."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from safetensors.torch import load_file

from tests.runtime.helpers import png_bytes, to_b64_png

BODY = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64, "seed": 5}


def subject(color: tuple[int, int, int]) -> str:
    img = Image.new("RGB", (80, 64), (240, 240, 240))
    img.paste(Image.new("RGB", (32, 32), color), (24, 16))
    return to_b64_png(img)


def test_train_lora_writes_an_adapter_that_changes_output_and_leaves_the_model_as_it_was(
    make_server, store_copy: Path
) -> None:
    server = make_server(store_copy, preload_model="a")
    server.wait_status("ready")
    base = png_bytes(server.post("/sdapi/v1/txt2img", BODY).json()["images"][0])
    # A resident adapter from an earlier request must stay off after training, too.
    assert server.post("/sdapi/v1/txt2img", {**BODY, "loras": [{"name": "style"}]}).status_code == 200

    request = {
        "images": [subject((200, 30, 30)), subject((190, 40, 20))],
        "instance_prompt": "a photo of sks cat",
        "output_name": "sks-cat",
        "steps": 30,
        "learning_rate": 5e-3,
        "rank": 4,
        "resolution": 64,
        "seed": 1,
    }
    response = server.post("/easel/v1/train-lora", request)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["model"], result["steps_completed"], result["interrupted"]) == ("a", 30, False)
    assert result["eval_loss_after"] < result["eval_loss_before"]
    saved = store_copy / "loras" / "sks-cat.safetensors"
    assert result["path"] == str(saved)
    keys = list(load_file(saved))
    assert keys
    assert all(k.startswith("unet.") and "lora" in k for k in keys)

    assert png_bytes(server.post("/sdapi/v1/txt2img", BODY).json()["images"][0]) == base
    plain = server.post("/sdapi/v1/txt2img", {**BODY, "prompt": "a photo of sks cat"})
    tuned = server.post("/sdapi/v1/txt2img", {**BODY, "prompt": "a photo of sks cat <lora:sks-cat:1>"})
    assert tuned.status_code == 200, tuned.text
    assert png_bytes(tuned.json()["images"][0]) != png_bytes(plain.json()["images"][0])
    assert "sks-cat" in [lo["name"] for lo in server.get("/sdapi/v1/loras").json()]


def test_train_lora_validates_fields(server) -> None:
    for body, field in (
        ({"images": [], "instance_prompt": "x", "output_name": "n"}, "images"),
        ({"images": ["bm90IGFuIGltYWdl"], "instance_prompt": "x", "output_name": "n"}, "images.0"),
        ({"images": [subject((1, 2, 3))], "instance_prompt": "x", "output_name": "../n"}, "output_name"),
        ({"images": [subject((1, 2, 3))], "instance_prompt": "x", "output_name": "n", "rank": 0}, "rank"),
    ):
        response = server.post("/easel/v1/train-lora", body)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field
