"""Single-file checkpoints (original SD layout) load through the store, offline, with local configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runtime_image.server.original_layout import to_original_layout, write_single_file
from tests.runtime.helpers import open_png

BODY = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64, "seed": 21}


def config_only_copy(model_dir: Path, dest: Path) -> Path:
    """What an operator ships for single files: the diffusers configs and tokenizer, no weights."""
    shutil.copytree(model_dir, dest)
    for weights in dest.rglob("*.safetensors"):
        weights.unlink()
    return dest


def test_original_layout_uses_the_sd_checkpoint_key_names(tiny_store: Path) -> None:
    keys = set(to_original_layout(tiny_store / "a"))
    for expected in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
        "model.diffusion_model.input_blocks.2.0.op.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        # the first up block has cross-attention, so its upsampler is the third module of its last layer
        "model.diffusion_model.output_blocks.1.2.conv.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.encoder.down.0.block.0.conv1.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.decoder.mid.attn_1.proj_out.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    ):
        assert expected in keys, expected


def test_single_file_model_generates_the_same_image_as_its_folder(make_server, store_copy: Path) -> None:
    write_single_file(store_copy / "a", store_copy / "a-single.safetensors")
    config_only_copy(store_copy / "a", store_copy / "configs" / "default")
    server = make_server(store_copy, preload_model="a")
    server.wait_status("ready")

    models = {m["title"]: m["format"] for m in server.get("/sdapi/v1/sd-models").json()}
    assert models == {"a": "diffusers", "a-single": "single-file", "b": "diffusers"}

    folder = server.post("/sdapi/v1/txt2img", BODY).json()
    single = server.post(
        "/sdapi/v1/txt2img", {**BODY, "override_settings": {"sd_model_checkpoint": "a-single.safetensors"}}
    )
    assert single.status_code == 200, single.text
    # Same pixels (the PNG text chunks differ: they name the model).
    assert open_png(single.json()["images"][0]).tobytes() == open_png(folder["images"][0]).tobytes()
    assert [m["name"] for m in server.cache()["models"]] == ["a", "a-single"]


def test_single_file_without_local_configs_fails_clearly(make_server, store_copy: Path) -> None:
    write_single_file(store_copy / "a", store_copy / "lonely.safetensors")
    server = make_server(store_copy, preload_model="a")
    server.wait_status("ready")
    response = server.post("/sdapi/v1/options", {"sd_model_checkpoint": "lonely"})
    assert response.status_code == 500
    body = response.json()
    assert (body["error"], body["model"]) == ("model_load_failed", "lonely")
    assert "configs/lonely/" in body["detail"]
    # The failed load leaves the server serving the previous model.
    assert server.wait_status("ready")["model"] == "a"


def test_unknown_unet_key_is_refused() -> None:
    from runtime_image.server.original_layout import unet_key

    with pytest.raises(ValueError, match="controlnet_cond"):
        unet_key("controlnet_cond_embedding.conv_in.weight", 1, set())
