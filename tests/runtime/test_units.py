"""Unit tests of the small pieces: samplers, the LRU cache, the model store, the tiny model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from runtime_image.server.cache import LruCache
from runtime_image.server.errors import LoraNotFound, ModelNotFound, RequestError
from runtime_image.server.samplers import find_sampler, make_scheduler, sampler_names
from runtime_image.server.store import ModelFormat, ModelStore
from runtime_image.server.tiny import build_vocab, make_tiny_lora, make_tiny_model

# ---- samplers ----------------------------------------------------------------------------------------------


def test_contract_sampler_names_are_all_supported() -> None:
    from easel.contract import SAMPLERS as CONTRACT

    assert set(CONTRACT) <= set(sampler_names())


def test_find_sampler_accepts_aliases_case_insensitively() -> None:
    assert find_sampler("euler A").name == "Euler a"
    assert find_sampler("k_dpmpp_2m").name == "DPM++ 2M"
    with pytest.raises(RequestError) as err:
        find_sampler("Euler c")
    assert err.value.field == "sampler_name"


def test_schedulers_built_from_model_config() -> None:
    from diffusers import DPMSolverMultistepScheduler, PNDMScheduler

    base = PNDMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    ).config
    karras = make_scheduler(find_sampler("DPM++ 2M Karras"), base)
    assert isinstance(karras, DPMSolverMultistepScheduler)
    assert karras.config.use_karras_sigmas
    assert karras.config.beta_end == 0.012
    plain = make_scheduler(find_sampler("DPM++ 2M"), base, "Karras")
    assert plain.config.use_karras_sigmas
    with pytest.raises(RequestError) as err:
        make_scheduler(find_sampler("DDIM"), base, "Karras")
    assert err.value.field == "scheduler"


# ---- cache -------------------------------------------------------------------------------------------------


def test_lru_cache_counts_evicts_by_bytes_and_reloads_changed_files() -> None:
    evicted: list[str] = []
    cache: LruCache[str] = LruCache(10, size_of=len, on_evict=lambda k, _v: evicted.append(k))
    loads: list[str] = []

    def get(key: str, value: str, fingerprint: int = 0) -> tuple[str, bool]:
        return cache.get_or_load(key, fingerprint, lambda: loads.append(key) or value)

    assert get("a", "aaaa") == ("aaaa", False)
    assert get("b", "bbbb") == ("bbbb", False)
    assert get("a", "xxxx") == ("aaaa", True)  # cached value, loader not called
    assert get("c", "cccc") == ("cccc", False)  # 12 bytes > 10: evict the least recently used (b)
    assert evicted == ["b"]
    assert get("a", "AAAA", fingerprint=1) == ("AAAA", False)  # files changed: reload
    snap = cache.snapshot()
    assert (snap["hits"], snap["misses"], snap["evictions"], snap["reloads"]) == (1, 4, 1, 1)
    assert loads == ["a", "b", "c", "a"]
    assert [m["name"] for m in snap["models"]] == ["c", "a"]
    # A value larger than the whole budget still loads, alone.
    assert get("big", "x" * 50) == ("x" * 50, False)
    assert [m["name"] for m in cache.snapshot()["models"]] == ["big"]


# ---- store -------------------------------------------------------------------------------------------------


def test_store_lists_folders_single_files_and_nested_models(tiny_store: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "team" / "sd15").mkdir(parents=True)
    (root / "team" / "sd15" / "model_index.json").write_text("{}")
    (root / "dreamshaper.safetensors").write_bytes(b"x")
    (root / "loras").mkdir()
    (root / "loras" / "style.safetensors").write_bytes(b"x")
    (root / "configs" / "default").mkdir(parents=True)
    (root / "configs" / "default" / "model_index.json").write_text("{}")
    store = ModelStore(root)
    assert [(e.name, e.format) for e in store.models()] == [
        ("dreamshaper", ModelFormat.SINGLE_FILE),
        ("team/sd15", ModelFormat.DIFFUSERS),
    ]
    assert store.model("dreamshaper.safetensors [0123abcd]").name == "dreamshaper"
    assert store.model("team/sd15").format is ModelFormat.DIFFUSERS
    assert [e.name for e in store.loras()] == ["style"]
    assert store.single_file_config("dreamshaper") == root / "configs" / "default"
    with pytest.raises(ModelNotFound) as missing:
        store.model("sdxl")
    assert missing.value.available == ["dreamshaper", "team/sd15"]
    with pytest.raises(ModelNotFound):
        store.model("loras/style")
    with pytest.raises(LoraNotFound):
        store.lora("other")
    for bad in ("../secrets", "/etc/passwd", "a/../../b"):
        with pytest.raises(RequestError):
            store.model(bad)


# ---- tiny model ----------------------------------------------------------------------------------------------


def test_tiny_model_files_are_complete_and_seeded(tiny_store: Path, tmp_path: Path) -> None:
    a = tiny_store / "a"
    index = json.loads((a / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder"):
        assert (a / part / "config.json").is_file()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (a / "tokenizer" / name).is_file()
    vocab, merges = build_vocab()
    assert json.loads((a / "tokenizer" / "vocab.json").read_text(encoding="utf-8")) == vocab
    assert (a / "tokenizer" / "merges.txt").read_text(encoding="utf-8").splitlines()[1:] == merges
    weights = "unet/diffusion_pytorch_model.safetensors"
    again = make_tiny_model(tmp_path / "again", seed=0)
    same = load_file(a / weights)
    assert all((same[k] == v).all() for k, v in load_file(again / weights).items())
    other = load_file(tiny_store / "b" / weights)
    assert any((same[k] != v).any() for k, v in other.items())


def test_tiny_tokenizer_uses_the_generated_merges(tiny_store: Path) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_store / "a" / "tokenizer"))
    vocab, _ = build_vocab()
    ids = tok("a cat").input_ids
    assert ids == [vocab["<|startoftext|>"], vocab["a</w>"], vocab["cat</w>"], vocab["<|endoftext|>"]]
    # Every word with learned merges is one token; other words fall back to byte symbols.
    words = ["a", "photo", "of", "the", "cozy", "cabin", "in", "the", "snow", "high", "quality", "detailed"]
    assert tok.convert_ids_to_tokens(tok(" ".join(words)).input_ids[1:-1]) == [w + "</w>" for w in words]
    assert len(tok("zebra").input_ids) == 2 + len("zebra")


def test_tiny_lora_has_peft_keys_for_unet_and_text_encoder(tmp_path: Path) -> None:
    path = make_tiny_lora(tmp_path / "l.safetensors", text_encoder=True)
    keys = list(load_file(path))
    assert all("lora" in k for k in keys)
    assert any(k.startswith("unet.") for k in keys)
    assert any(k.startswith("text_encoder.") for k in keys)
    with pytest.raises(ValueError, match="safetensors"):
        make_tiny_lora(tmp_path / "l.bin")
