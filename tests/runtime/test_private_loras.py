"""Private, tenant-scoped LoRAs: PUT/HEAD/GET /easel/v1/loras/{tenant}/{name}, their use by scoped name in
the ``loras`` field only, and train-lora returning the adapter instead of writing into the (read-only) store."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from safetensors.torch import load, save

from easel.contract import parse_task_request
from easel.errors import FieldError
from runtime_image.server.private import check_lora_safetensors
from runtime_image.server.tiny import make_tiny_lora
from tests.runtime.helpers import png_bytes
from tests.runtime.test_training import subject

BODY = {"prompt": "a photo of a cat", "steps": 2, "width": 64, "height": 64, "seed": 7}


def lora_file(tmp_path: Path, seed: int, scale: float = 2.0) -> bytes:
    dest = tmp_path / f"l{seed}.safetensors"
    make_tiny_lora(dest, seed=seed, scale=scale)
    return dest.read_bytes()


def image(response) -> bytes:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return png_bytes(response.json()["images"][0])


def test_put_then_head_get_and_generate_with_the_scoped_name(make_server, tiny_store, tmp_path) -> None:
    private = tmp_path / "private"
    server = make_server(tiny_store, preload_model="a", private_loras_dir=private)
    server.wait_status("ready")
    url = server.url + "/easel/v1/loras/acme/mine"

    assert server.client.head(url).status_code == 404
    missing = server.client.get(url)
    assert (missing.status_code, missing.json()["error"]) == (404, "lora_not_found")

    data = lora_file(tmp_path, seed=3)
    put = server.client.put(url, content=data, headers={"X-Easel-Source-ETag": '"abc"'})
    assert put.status_code == 200, put.text
    info = put.json()
    assert info == {
        "tenant": "acme",
        "name": "mine",
        "scoped_name": "acme/mine",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source_etag": '"abc"',
    }
    assert (private / "acme" / "mine.safetensors").read_bytes() == data
    head = server.client.head(url)
    assert head.status_code == 200
    assert head.headers["x-easel-size"] == str(len(data))
    assert head.headers["x-easel-source-etag"] == '"abc"'
    assert server.client.get(url).json() == info
    # Private adapters are not listed with the public ones.
    assert "acme/mine" not in [lo["name"] for lo in server.get("/sdapi/v1/loras").json()]

    base = image(server.post("/sdapi/v1/txt2img", BODY))
    tuned = image(server.post("/sdapi/v1/txt2img", {**BODY, "loras": [{"name": "acme/mine"}]}))
    assert tuned != base
    # Another tenant's scope has no such adapter.
    other = server.post("/sdapi/v1/txt2img", {**BODY, "loras": [{"name": "globex/mine"}]})
    assert (other.status_code, other.json()["error"]) == (404, "lora_not_found")

    # Replacing the file replaces the adapter in use (the cache notices the new file).
    assert server.client.put(url, content=lora_file(tmp_path, seed=9)).status_code == 200
    assert server.client.head(url).headers.get("x-easel-source-etag") is None
    replaced = image(server.post("/sdapi/v1/txt2img", {**BODY, "loras": [{"name": "acme/mine"}]}))
    assert replaced not in (tuned, base)
    assert image(server.post("/sdapi/v1/txt2img", BODY)) == base


def test_scoped_names_are_not_reachable_from_prompt_tags_or_the_task_contract(
    make_server, tiny_store, tmp_path
) -> None:
    server = make_server(tiny_store, preload_model="a", private_loras_dir=tmp_path / "p")
    server.wait_status("ready")
    url = server.url + "/easel/v1/loras/acme/mine"
    assert server.client.put(url, content=lora_file(tmp_path, seed=3)).status_code == 200
    # The prompt is client text: a tag naming a scoped adapter resolves in the public store only.
    tagged = server.post("/sdapi/v1/txt2img", {**BODY, "prompt": "a cat <lora:acme/mine:1>"})
    assert (tagged.status_code, tagged.json()["error"]) == (404, "lora_not_found")
    # And the contract's LoRA name pattern cannot spell a scope at all.
    with pytest.raises(FieldError) as err:
        parse_task_request(
            {
                "task_type": "text-to-image",
                "model": "sd15",
                "input": {"prompt": "x", "loras": [{"name": "acme/mine"}]},
            }
        )
    assert "input.loras.0.name" in str(err.value)


def test_put_refuses_bad_names_non_loras_and_oversized_bodies(make_server, tiny_store, tmp_path) -> None:
    server = make_server(
        tiny_store, preload_model="a", private_loras_dir=tmp_path / "p", max_lora_upload_bytes=256 * 1024
    )
    server.wait_status("ready")
    good = lora_file(tmp_path, seed=1)
    put = server.client.put
    for path, field in (("/easel/v1/loras/Acme/x", "tenant"), ("/easel/v1/loras/acme/.x", "name")):
        r = put(server.url + path, content=good)
        assert (r.status_code, r.json()["field"]) == (422, field), r.text
    not_lora = save({"weight": __import__("torch").zeros(2)})
    for body in (b"", b"\x00" * 16, b"not a safetensors file at all", not_lora, good[:-10]):
        r = put(server.url + "/easel/v1/loras/acme/x", content=body)
        assert r.status_code == 422, (body[:20], r.text)
        assert r.json()["field"] == "body"
    big = put(server.url + "/easel/v1/loras/acme/x", content=b"\x00" * (256 * 1024 + 1))
    assert (big.status_code, big.json()["error"]) == (413, "too_large")
    assert not (tmp_path / "p" / "acme" / "x.safetensors").exists()


def test_check_lora_safetensors_accepts_kohya_and_peft_keys(tmp_path: Path) -> None:
    import torch

    assert check_lora_safetensors(lora_file(tmp_path, seed=0)) > 0
    kohya = save({"lora_unet_down_blocks_0_attn.lora_up.weight": torch.zeros(2, 2)})
    assert check_lora_safetensors(kohya) == 1


def test_train_returns_weights_without_writing_the_store(make_server, store_copy: Path, tmp_path) -> None:
    server = make_server(store_copy, preload_model="a", private_loras_dir=tmp_path / "p")
    server.wait_status("ready")
    before = sorted(p.name for p in (store_copy / "loras").iterdir())
    request = {
        "images": [subject((200, 30, 30)), subject((30, 200, 30))],
        "instance_prompt": "a photo of sks cat",
        "output_name": "sks",
        "steps": 4,
        "learning_rate": 5e-2,
        "resolution": 64,
        "seed": 1,
        "save": False,
        "return_weights": True,
    }
    r = server.post("/easel/v1/train-lora", request)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["path"], result["steps_completed"], result["interrupted"]) == (None, 4, False)
    assert sorted(p.name for p in (store_copy / "loras").iterdir()) == before
    data = base64.b64decode(result["weights_b64"])
    assert (result["weights_bytes"], result["weights_sha256"]) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    keys = list(load(data))
    assert keys and all(k.startswith("unet.") and "lora" in k for k in keys)

    # The returned bytes are a valid private adapter that changes the output.
    url = server.url + "/easel/v1/loras/acme/sks"
    assert server.client.put(url, content=data).status_code == 200
    prompt = {**BODY, "prompt": "a photo of sks cat"}
    plain = image(server.post("/sdapi/v1/txt2img", prompt))
    tuned = image(server.post("/sdapi/v1/txt2img", {**prompt, "loras": [{"name": "acme/sks"}]}))
    assert tuned != plain
