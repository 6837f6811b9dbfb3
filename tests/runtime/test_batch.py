"""Mixed batches (POST /easel/v1/txt2img-batch) through the real HTTP server with the tiny model.

The stated tolerance: an image generated in a batch differs from the same request run alone by at most
``TOLERANCE`` (out of 255) in any pixel channel. Measured on this CPU with the tiny model: see
docs/benchmarks.md ("Cross-task batching"); the same composition rerun is byte-identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.runtime.conftest import LiveServer
from tests.runtime.helpers import info, open_png, png_bytes

TOLERANCE = 2  # largest per-pixel difference (0..255) between batched and solo
BASE = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64, "cfg_scale": 7.0}
ITEMS: list[dict[str, Any]] = [
    {**BASE, "prompt": "a red house", "seed": 11},
    {**BASE, "prompt": "a blue car", "negative_prompt": "blurry", "seed": 12},
    {**BASE, "prompt": "a green tree", "seed": 13, "batch_size": 2},
    {**BASE, "prompt": "a yellow sun", "negative_prompt": "dark, night", "seed": 14},
]


def batch(server: LiveServer, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = server.post("/easel/v1/txt2img-batch", {"items": items})
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["items"]
    assert len(answers) == len(items)
    return answers


def solo(server: LiveServer, item: dict[str, Any]) -> list[str]:
    response = server.post("/sdapi/v1/txt2img", item)
    assert response.status_code == 200, response.text
    images: list[str] = response.json()["images"]
    return images


def pixels(b64: str) -> np.ndarray:
    return np.asarray(open_png(b64).convert("RGB"), dtype=np.int16)


def largest_difference(a: list[str], b: list[str]) -> int:
    assert len(a) == len(b)
    return max(int(np.abs(pixels(x) - pixels(y)).max()) for x, y in zip(a, b, strict=True))


def test_a_batch_of_four_matches_each_task_alone_and_reruns_byte_identical(server: LiveServer) -> None:
    answers = batch(server, ITEMS)
    assert [a["status"] for a in answers] == [200, 200, 200, 200]
    assert [len(a["images"]) for a in answers] == [1, 1, 2, 1]
    assert [info(a)["all_seeds"] for a in answers] == [[11], [12], [13, 14], [14]]
    assert [info(a)["prompt"] for a in answers] == [i["prompt"] for i in ITEMS]
    worst = 0
    for item, answer in zip(ITEMS, answers, strict=True):
        alone = solo(server, item)
        worst = max(worst, largest_difference(answer["images"], alone))
    assert worst <= TOLERANCE, f"largest per-pixel difference {worst} > {TOLERANCE}"
    # Every item got its own prompt and noise: no two images of the batch are the same.
    flat = [png_bytes(b) for a in answers for b in a["images"]]
    assert len(set(flat)) == len(flat)
    again = batch(server, ITEMS)
    assert [[png_bytes(b) for b in a["images"]] for a in again] == [
        [png_bytes(b) for b in a["images"]] for a in answers
    ]


def test_an_invalid_item_fails_alone_and_the_others_still_run(server: LiveServer) -> None:
    items = [
        ITEMS[0],
        {**BASE, "prompt": "x", "seed": 5, "sampler_name": "No Such Sampler"},
        {**BASE, "prompt": "y", "seed": 6, "loras": [{"name": "missing", "weight": 0.5}]},
        {**BASE, "prompt": "z", "seed": 7, "width": 96},  # other shape than item 0
        {**BASE, "prompt": "w", "seed": 8, "enable_hr": True, "hr_upscaler": "Latent"},
        {**BASE, "prompt": "v", "seed": 9, "steps": 0},
        ITEMS[1],
    ]
    answers = batch(server, items)
    assert [a["status"] for a in answers] == [200, 422, 404, 422, 422, 422, 200]
    assert answers[1]["field"] == "sampler_name"
    assert answers[2]["error"] == "lora_not_found" and answers[2]["lora"] == "missing"
    assert answers[3]["field"] == "width"
    assert answers[4]["field"] == "enable_hr"
    assert answers[5]["field"] == "steps"
    assert "images" not in answers[1]
    # The survivors equal the clean batch of those two (same composition: byte-identical).
    clean = batch(server, [ITEMS[0], ITEMS[1]])
    assert [png_bytes(answers[i]["images"][0]) for i in (0, 6)] == [png_bytes(a["images"][0]) for a in clean]


def test_items_with_other_loras_or_cfg_never_share_the_generation(server: LiveServer) -> None:
    base = {**BASE, "prompt": "p", "seed": 1}
    answers = batch(
        server,
        [
            {**base, "loras": [{"name": "style", "weight": 0.5}]},
            {**base, "loras": [{"name": "style", "weight": 0.8}]},
            base,
            {**base, "cfg_scale": 5.0},
            {**base, "sampler_name": "DDIM"},
        ],
    )
    assert [a["status"] for a in answers] == [200, 422, 422, 422, 422]
    assert {answers[i]["field"] for i in (1, 2)} == {"loras"}
    assert answers[3]["field"] == "cfg_scale"
    assert answers[4]["field"] == "sampler"


@pytest.mark.parametrize("body", [{"items": []}, {"items": "no"}, {}])
def test_a_malformed_batch_is_refused_as_a_whole(server: LiveServer, body: dict[str, Any]) -> None:
    response = server.post("/easel/v1/txt2img-batch", body)
    assert response.status_code == 422
    assert response.json()["field"].startswith("items")
