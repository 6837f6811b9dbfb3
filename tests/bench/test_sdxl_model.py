"""The SDXL-size random checkpoint of the load bench (bench/sdxl.py), proven on a scaled-down config: the
runtime's own store and loader read it as SDXL, every tensor of the files lands in diffusers' and
transformers' SDXL classes (names, shapes, values), and the ``--sdxl`` option reaches the bench. The full
size is only checked on the meta device (shapes, no memory). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

import bench.runtime
from bench.runtime import LoadResult, RuntimeBench, bench_load_sdxl, tables
from bench.sdxl import (
    SDXL_NAME,
    SDXL_TEXT_ENCODER,
    SDXL_TEXT_ENCODER_2,
    SDXL_UNET,
    SDXL_VAE,
    build_meta_components,
    write_safetensors,
    write_sdxl_folder,
)
from easel.cli import app
from runtime_image.server.tiny import SDXL_TIME_EMBED, TEXT_HIDDEN, TINY_SDXL_UNET, TINY_VAE

_TEXT = {
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": TEXT_HIDDEN,
    "vocab_size": 1000,
}
# Scaled-down SDXL: the UNet cross-attends to both encoders' hidden states side by side, and its
# text_time embedding takes 6 time ids plus the second encoder's pooled projection.
TINY_CONFIGS: dict[str, Any] = {
    "unet": {
        **TINY_SDXL_UNET,
        "cross_attention_dim": 2 * TEXT_HIDDEN,
        "projection_class_embeddings_input_dim": 6 * SDXL_TIME_EMBED + TEXT_HIDDEN,
    },
    "vae": {**TINY_VAE, "force_upcast": True, "scaling_factor": 0.13025},
    "text_encoder": {**_TEXT, "hidden_act": "quick_gelu"},
    "text_encoder_2": {**_TEXT, "hidden_act": "gelu"},
}
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def _file_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping


def test_full_size_shapes_are_sdxl_base() -> None:
    # Parameter counts of the SDXL 1.0 base release's four components, built on the meta device only.
    meta = build_meta_components(
        unet=SDXL_UNET,
        vae=SDXL_VAE,
        text_encoder=SDXL_TEXT_ENCODER,
        text_encoder_2=SDXL_TEXT_ENCODER_2,
        bos_id=49406,
        eos_id=49407,
    )
    counts = {k: sum(t.numel() for t in m.state_dict().values()) for k, m in meta.items()}
    assert counts == {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    }
    assert all(t.is_meta for m in meta.values() for t in m.state_dict().values())


def test_write_safetensors_streams_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    shapes = {"b": (3, 5), "a": (7,), "scalar": ()}
    size = write_safetensors(path, shapes, dtype=torch.float16, generator=torch.Generator().manual_seed(0))
    assert size == path.stat().st_size
    tensors = _file_tensors(path)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == shapes
    assert all(v.dtype == torch.float16 and torch.isfinite(v).all() for v in tensors.values())
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_len % 8 == 0  # tensor data 8-byte aligned, as safetensors writes it
    again = tmp_path / "y.safetensors"
    write_safetensors(again, shapes, dtype=torch.float16, generator=torch.Generator().manual_seed(0))
    assert again.read_bytes() == path.read_bytes()  # seeded


def test_tiny_folder_loads_through_the_runtime_as_fp16_converted_to_fp32(tmp_path: Path) -> None:
    from runtime_image.server.arch import Arch
    from runtime_image.server.device import DeviceCapabilities, plan_for
    from runtime_image.server.loader import load_pipeline
    from runtime_image.server.store import ModelStore

    write_sdxl_folder(tmp_path / "m", **TINY_CONFIGS, seed=3)
    store = ModelStore(tmp_path)
    entry = store.model("m")
    assert entry.arch() is Arch.SDXL
    pipe = load_pipeline(entry, plan_for(DeviceCapabilities(kind="cpu")), store)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    for part in COMPONENTS:
        (weights,) = (tmp_path / "m" / part).glob("*.safetensors")
        on_disk = _file_tensors(weights)
        assert {t.dtype for t in on_disk.values()} == {torch.float16}
        loaded = getattr(pipe, part).state_dict()
        # The release's key names (text_model.* for both encoders); transformers 5 maps them onto its own.
        names = {k.removeprefix("text_model.") for k in on_disk} if part == "text_encoder" else set(on_disk)
        assert names == set(loaded), part
        for key, value in on_disk.items():
            mine = loaded[key.removeprefix("text_model.") if part == "text_encoder" else key]
            assert mine.dtype == torch.float32 and mine.shape == value.shape, key
            assert torch.equal(mine, value.float()), key
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    # The random weights give a finite image: the model is usable, not only loadable.
    with torch.inference_mode():
        image = pipe(
            "a cat", num_inference_steps=1, height=64, width=64, output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images  # fmt: skip
    assert image.shape == (1, 64, 64, 3)
    assert bool(torch.isfinite(torch.from_numpy(image)).all())


@pytest.mark.slow
def test_bench_load_sdxl_on_a_tiny_config(tmp_path: Path) -> None:
    """The bench's own SDXL path (generate once, alternate loads and raw reads, cold pass) end to end."""
    result = bench_load_sdxl(tmp_path, 1, cpu_plan=True, configs=TINY_CONFIGS)
    folder = tmp_path / SDXL_NAME
    assert (folder / ".complete").is_file()
    first = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert result.model == SDXL_NAME
    # The main loads use a GPU node's fp16 plan: the files' own dtype, every weight held as it is on disk.
    assert (result.disk_dtype, result.plan_dtype, result.loaded_dtype) == ("float16", "float16", "float16")
    tensor_bytes = sum(
        t.numel() * t.element_size()
        for part in COMPONENTS
        for t in _file_tensors(next((folder / part).glob("*.safetensors"))).values()
    )
    assert result.loaded_bytes >= tensor_bytes
    assert len(result.raw_read_s) == len(result.load_touch_s) == len(result.mmap_touch_s) == 1
    # cpu_plan, and the tiny model fits in memory: this CPU's fp32 plan (a converting load) and its floor too.
    assert result.skipped is None and result.convert_dtype == "float32"
    assert len(result.convert_floor_s) == len(result.convert_load_touch_s) == 1
    assert result.cold_raw_read_s is not None and result.cold_load_touch_s is not None
    doc = RuntimeBench(load_sdxl=result).to_json()["load_sdxl"]
    assert doc["ratio"] > 0 and doc["target_max"] == 1.3
    again = bench_load_sdxl(tmp_path, 1, cold=False, configs=TINY_CONFIGS)
    assert again.cold_ratio is None
    assert again.convert_dtype is None and not again.convert_load_touch_s  # opt-in only
    # Generated once, then reused.
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == first


def test_sdxl_option_reaches_the_bench_and_its_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_bench_runtime(models_dir: Path, **kwargs: Any) -> RuntimeBench:
        calls.append({"models_dir": models_dir, **kwargs})
        load = LoadResult(
            model_bytes=6_937_675_734,
            model=SDXL_NAME,
            label="SDXL-size checkpoint",
            disk_dtype="float16",
            loaded_bytes=6_937_675_734,
            loaded_dtype="float16",
            plan_dtype="float16",
            anon_bytes=300_000_000,
            convert_dtype="float32",
            raw_read_s=[2.0],
            mmap_touch_s=[0.5],
            load_s=[2.4],
            load_touch_s=[2.5],
            convert_floor_s=[2.3],
            convert_load_touch_s=[4.0],
        )
        return RuntimeBench(load_sdxl=load if kwargs["sdxl"] else None)

    monkeypatch.setattr(bench.runtime, "bench_runtime", fake_bench_runtime)
    out = tmp_path / "r.json"
    cli = CliRunner()
    for args, expected in ((["--sdxl"], True), ([], False)):
        result = cli.invoke(
            app, ["bench", "runtime", *args, "--models-dir", str(tmp_path), "--json", str(out)],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert calls[-1]["sdxl"] is expected
        assert calls[-1]["sdxl_cpu_plan"] is False
        assert calls[-1]["sd15"] is True  # the default run is unchanged
        doc = json.loads(out.read_text())
        assert ("load_sdxl" in doc) is expected
    assert doc.get("load") is None
    cli.invoke(
        app, ["bench", "runtime", "--sdxl-cpu-plan", "--models-dir", str(tmp_path)], catch_exceptions=False
    )
    assert calls[-1]["sdxl"] is True and calls[-1]["sdxl_cpu_plan"] is True
    (table,) = tables(fake_bench_runtime(tmp_path, sdxl=True))
    assert "SDXL-size checkpoint (6.94 GB float16 on disk, 6.94 GB loaded as float16" in str(table.title)
    rows = " ".join(str(c) for c in table.columns[0]._cells)
    assert "runtime load (lazy mmap)" in rows
    assert "convert every tensor to float32 (floor of a converting load)" in rows
    assert "this CPU's plan (float16 converted to float32)" in rows


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_the_fp16_plan_maps_the_weights_without_a_copy(tmp_path: Path) -> None:
    """What keeps the full-size bench's memory small: under an fp16 plan every UNet weight points into the
    mapped file (page cache), none into the process's own memory; under the CPU's fp32 plan none does."""
    import dataclasses

    from runtime_image.server.device import DeviceCapabilities, plan_for
    from runtime_image.server.loader import load_pipeline
    from runtime_image.server.store import ModelStore

    write_sdxl_folder(tmp_path / "m", **TINY_CONFIGS)
    store = ModelStore(tmp_path)
    cpu = plan_for(DeviceCapabilities(kind="cpu"))
    weights = (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").resolve()
    for plan, mapped in ((dataclasses.replace(cpu, dtype=torch.float16), True), (cpu, False)):
        pipe = load_pipeline(store.model("m"), plan, store)
        ranges = _mapped_ranges(weights)
        params = list(pipe.unet.parameters())
        inside = [any(lo <= p.data_ptr() < hi for lo, hi in ranges) for p in params]
        assert all(inside) if mapped else not any(inside), plan.dtype
        del pipe, params
