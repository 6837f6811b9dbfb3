"""LoRA adapters per request: they change the image, and leave no trace on the next request."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime_image.server.errors import RequestError
from runtime_image.server.lora import LoraUse, merge_uses, parse_prompt_loras
from runtime_image.server.tiny import make_tiny_lora
from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import info, png_bytes

BODY = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64, "seed": 11}


def image(server: LiveServer, **fields: object) -> bytes:
    response = server.post("/sdapi/v1/txt2img", {**BODY, **fields})
    assert response.status_code == 200, response.text
    return png_bytes(response.json()["images"][0])


def test_lora_changes_output_and_is_removed_afterwards(tmp_path: Path, make_server, store_copy: Path) -> None:
    make_tiny_lora(store_copy / "loras" / "ink.safetensors", seed=5)
    server = make_server(store_copy, preload_model="a")
    server.wait_status("ready")
    original = image(server)

    styled = image(server, loras=[{"name": "style", "weight": 1.0}])
    assert styled != original
    stats = server.cache()["loras"]
    assert (stats["misses"], stats["hits"]) == (1, 0)
    assert stats["active"] == []
    assert stats["resident"] == {"a": ["style"]}

    # Off again: exactly the original bytes.
    assert image(server) == original

    # The weight matters, the prompt syntax is the same adapter, and the second use is a cache hit.
    half = image(server, loras=[{"name": "style", "weight": 0.5}])
    assert half not in (original, styled)
    assert image(server, prompt="a photo of a cat <lora:style:1>") == styled
    assert server.cache()["loras"]["hits"] == 2

    # Two adapters at once differ from either alone; afterwards the base model is back again.
    both = image(server, loras=[{"name": "style", "weight": 1.0}, {"name": "ink", "weight": 1.0}])
    assert both not in (original, styled)
    assert image(server) == original
    assert server.cache()["loras"]["resident"] == {"a": ["style", "ink"]}


def test_lora_in_info_and_infotext(server: LiveServer) -> None:
    response = server.post("/sdapi/v1/txt2img", {**BODY, "loras": [{"name": "style", "weight": 0.7}]})
    body = response.json()
    assert info(body)["extra_generation_params"]["Lora"] == [{"name": "style", "weight": 0.7}]
    assert "Lora: style:0.7" in info(body)["infotexts"][0]


def test_disable_extra_networks_ignores_prompt_tags(server: LiveServer) -> None:
    plain = image(server)
    assert image(server, prompt="a photo of a cat <lora:style:1>", disable_extra_networks=True) == plain
    assert image(server, prompt="a photo of a cat <lora:style:1>") != plain


def test_missing_lora_is_404_naming_it(server: LiveServer) -> None:
    for body in ({"loras": [{"name": "nope"}]}, {"prompt": "a cat <lora:nope:0.5>"}):
        response = server.post("/sdapi/v1/txt2img", {**BODY, **body})
        assert response.status_code == 404
        assert response.json()["error"] == "lora_not_found"
        assert response.json()["lora"] == "nope"
        assert "style" in response.json()["available"]


def test_replaced_lora_file_is_reloaded(make_server, store_copy: Path) -> None:
    server = make_server(store_copy, preload_model="a")
    server.wait_status("ready")
    first = image(server, loras=[{"name": "style"}])
    make_tiny_lora(store_copy / "loras" / "style.safetensors", seed=99)
    second = image(server, loras=[{"name": "style"}])
    assert second != first
    assert server.cache()["loras"]["misses"] == 2


@pytest.mark.parametrize(
    ("prompt", "cleaned", "uses"),
    [
        ("a cat <lora:style:0.8>", "a cat", [LoraUse("style", 0.8)]),
        ("<lora:style>, a cat", "a cat", [LoraUse("style", 1.0)]),
        ("a <lora:x:0.5:0.2> cat <lora:y:-1>", "a cat", [LoraUse("x", 0.5), LoraUse("y", -1.0)]),
        ("no tags here", "no tags here", []),
    ],
)
def test_parse_prompt_loras(prompt: str, cleaned: str, uses: list[LoraUse]) -> None:
    assert parse_prompt_loras(prompt) == (cleaned, uses)


def test_bad_prompt_weight_and_duplicates_are_refused() -> None:
    with pytest.raises(RequestError) as bad:
        parse_prompt_loras("a cat <lora:style:heavy>")
    assert bad.value.field == "prompt"
    with pytest.raises(RequestError) as twice:
        merge_uses([LoraUse("style")], [LoraUse("style", 0.5)])
    assert (twice.value.field, twice.value.value) == ("loras", "style")
