"""``easel bench runtime``: the real diffusers runtime (``runtime_image.server``) on this machine's CPU.

(a) Batching: images/s of ``batch_size`` 1 vs 4 on the tiny model, through the runtime's HTTP server (the
    same requests the agent sends). Rounds of the two alternate so drift hits both.
(b) Model load: the SD 1.5-size random checkpoint (:mod:`bench.sd15`) activated by a fresh
    :class:`~runtime_image.server.runner.Runner` (store -> LRU cache miss -> loader -> pipeline), vs the raw
    ``read()`` of the same bytes into fresh buffers. The runtime's loader maps safetensors files lazily
    (zero-copy from the page cache), so "load" alone ends before the weights are in memory; "load + touch"
    also reads one byte of every page of every weight, the earliest moment a generation cannot stall on
    I/O, and is the number compared with the target. Warm: the files are in the OS page cache (the usual
    case on a node that already served the model). Cold: this bench's own files are dropped from the page
    cache first (``posix_fadvise(DONTNEED)``, which touches no other file), once per method.
    With ``--sdxl``, the same for an SDXL-size checkpoint (:mod:`bench.sdxl`: the real SDXL base configs,
    float16 safetensors as the release ships them), which the CPU runtime converts to float32 as it loads.
    Switch: two models already in the runtime's cache, alternated through ``POST /sdapi/v1/options``; the
    cache's own hit counters confirm every switch was a hit.
(d) Architectures: per-image seconds of the tiny SDXL model vs the tiny SD 1.5 model (same size, steps,
    sampler), alternating rounds.
(e) Hires fix: a 64x64 first pass upscaled (Latent) to 128x128 with a second pass at denoising 0.5, vs a
    plain 128x128 text-to-image of the same steps: what the hires fix costs at the same final size.
(c) One UNet step at 512x512 (latents 2x4x64x64: the conditional and unconditional halves of one CFG step)
    on the SD 1.5-size UNet, for the record.
(d) Tracing: the same batch-1 requests with every span recorded (the runtime's own spans and FastAPI's,
    written to a JSONL file by the local exporter) vs sampled out, rounds alternating; the time ratio is the
    overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.sd15 import ensure_sd15_model, model_bytes
from bench.sdxl import SDXL_NAME, ensure_sdxl_model
from bench.serve import ThreadedServer
from bench.stats import median, ratio

TINY_A, TINY_B = "tiny-a", "tiny-b"
TINY_SDXL = "tiny-sdxl"
SD15_A, SD15_B = "sd15-random", "sd15-random-b"
BATCH_RATIO_TARGET = 1.3
LOAD_RATIO_TARGET = 1.3
SWITCH_TARGET_MS = 50.0
# Tracing may slow a generation by at most this fraction (issue 15: the agent's budget is 0.01 busy).
TRACING_OVERHEAD_TARGET = 0.01


@dataclass
class BatchResult:
    width: int
    steps: int
    images: int
    batch1_s: float = 0.0
    batch4_s: float = 0.0

    @property
    def batch1_ips(self) -> float:
        return self.images / self.batch1_s if self.batch1_s else float("nan")

    @property
    def batch4_ips(self) -> float:
        return self.images / self.batch4_s if self.batch4_s else float("nan")

    @property
    def ratio(self) -> float:
        return ratio(self.batch4_ips, self.batch1_ips)


@dataclass
class LoadResult:
    model_bytes: int
    model: str = SD15_A
    label: str = "SD 1.5-size checkpoint"
    disk_dtype: str = "float32"
    # Bytes of the loaded pipeline's parameters and buffers (the dtype the runtime holds them in).
    loaded_bytes: int = 0
    loaded_dtype: str = ""
    raw_read_s: list[float] = field(default_factory=list)
    mmap_touch_s: list[float] = field(default_factory=list)
    load_s: list[float] = field(default_factory=list)
    load_touch_s: list[float] = field(default_factory=list)
    cold_raw_read_s: float | None = None
    cold_load_touch_s: float | None = None
    # The dtype of the plan the loads use (None: this machine's plan, float32 on a CPU).
    plan_dtype: str | None = None
    # Growth of the process's anonymous memory (RssAnon) while the model is loaded and touched: ~0 for a
    # lazily mapped load, the whole model for a converting one.
    anon_bytes: int = 0
    # Opt-in (set when it fits in available memory): this machine's own plan too when it converts the files
    # (fp16 files, fp32 CPU plan): the floor of any converting loader (map the files, convert every tensor
    # into fresh memory) and the runtime's load + touch under that plan.
    convert_dtype: str | None = None
    convert_floor_s: list[float] = field(default_factory=list)
    convert_load_touch_s: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ratio(self) -> float:
        return ratio(median(self.load_touch_s), median(self.raw_read_s))

    @property
    def cold_ratio(self) -> float | None:
        if self.cold_raw_read_s is None or self.cold_load_touch_s is None:
            return None
        return ratio(self.cold_load_touch_s, self.cold_raw_read_s)


@dataclass
class SwitchResult:
    models: tuple[str, str]
    switches_ms: list[float] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass
class WorkloadResult:
    """Seconds per image of each variant (medians over alternating rounds)."""

    steps: int
    sd15_s: list[float] = field(default_factory=list)
    sdxl_s: list[float] = field(default_factory=list)
    plain_128_s: list[float] = field(default_factory=list)
    hires_64_to_128_s: list[float] = field(default_factory=list)

    @property
    def sdxl_ratio(self) -> float:
        return ratio(median(self.sdxl_s), median(self.sd15_s))

    @property
    def hires_ratio(self) -> float:
        return ratio(median(self.hires_64_to_128_s), median(self.plain_128_s))


@dataclass
class TracingResult:
    width: int
    steps: int
    requests: int
    off_s: float = 0.0
    on_s: float = 0.0
    spans: int = 0

    @property
    def overhead(self) -> float:
        return self.on_s / self.off_s - 1.0 if self.off_s else float("nan")


class TracingSwitch:
    """The process's tracer provider with a sampler the bench turns on and off: off, every span is sampled
    out (the SDK still runs, so this is the cost of recording and exporting, not of the API calls)."""

    def __init__(self, path: Path) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

        from runtime_image.server.tracing import JsonlSpanExporter

        switch = self

        class _Sampler(Sampler):
            def should_sample(
                self,
                parent_context: Any,  # noqa: ARG002
                trace_id: int,  # noqa: ARG002
                name: str,  # noqa: ARG002
                kind: Any = None,  # noqa: ARG002
                attributes: Any = None,
                links: Any = None,  # noqa: ARG002
                trace_state: Any = None,  # noqa: ARG002
            ) -> SamplingResult:
                decision = Decision.RECORD_AND_SAMPLE if switch.on else Decision.DROP
                return SamplingResult(decision, attributes if switch.on else None)

            def get_description(self) -> str:
                return "bench switch"

        self.on = False
        self.path = path
        provider = TracerProvider(sampler=_Sampler())
        exporter: Any = JsonlSpanExporter(path)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        self.installed = trace.get_tracer_provider() is provider

    def spans(self) -> int:
        return len(self.path.read_text().splitlines()) if self.path.exists() else 0


def bench_tracing(
    http: httpx.Client,
    switch: TracingSwitch,
    *,
    requests: int,
    width: int = 64,
    steps: int = 10,
    rounds: int = 3,
) -> TracingResult:
    result = TracingResult(width=width, steps=steps, requests=requests * rounds)
    select(http, TINY_A)
    txt2img(http, batch=1, width=width, steps=steps, seed=1)  # warm-up
    seed = 500
    for _ in range(rounds):
        for on in (False, True):
            switch.on = on
            start = time.perf_counter()
            for _ in range(requests):
                seed += 1
                txt2img(http, batch=1, width=width, steps=steps, seed=seed)
            elapsed = time.perf_counter() - start
            if on:
                result.on_s += elapsed
            else:
                result.off_s += elapsed
    switch.on = False
    result.spans = switch.spans()
    return result


@dataclass
class RuntimeBench:
    tracing: TracingResult | None = None
    batch: BatchResult | None = None
    workloads: WorkloadResult | None = None
    load: LoadResult | None = None
    load_sdxl: LoadResult | None = None
    switches: list[SwitchResult] = field(default_factory=list)
    unet_step_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"bench": "runtime", "notes": self.notes}
        if self.batch:
            doc["batch"] = {
                **asdict(self.batch),
                "batch1_images_per_s": self.batch.batch1_ips,
                "batch4_images_per_s": self.batch.batch4_ips,
                "ratio": self.batch.ratio,
                "target_min": BATCH_RATIO_TARGET,
            }
        for key, load in (("load", self.load), ("load_sdxl", self.load_sdxl)):
            if load:
                doc[key] = {
                    **asdict(load),
                    "raw_read_median_s": median(load.raw_read_s),
                    "mmap_touch_median_s": median(load.mmap_touch_s),
                    "load_median_s": median(load.load_s),
                    "load_touch_median_s": median(load.load_touch_s),
                    "convert_floor_median_s": median(load.convert_floor_s),
                    "convert_load_touch_median_s": median(load.convert_load_touch_s),
                    "ratio": load.ratio,
                    "cold_ratio": load.cold_ratio,
                    "target_max": LOAD_RATIO_TARGET,
                }
        doc["switch"] = [
            {
                **asdict(s),
                "median_ms": median(s.switches_ms),
                "max_ms": max(s.switches_ms, default=float("nan")),
            }
            for s in self.switches
        ]
        doc["switch_target_ms"] = SWITCH_TARGET_MS
        if self.workloads:
            w = self.workloads
            doc["workloads"] = {
                **asdict(w),
                "sdxl_vs_sd15_ratio": w.sdxl_ratio,
                "hires_vs_plain_ratio": w.hires_ratio,
            }
        if self.tracing:
            doc["tracing"] = {
                **asdict(self.tracing),
                "overhead": self.tracing.overhead,
                "target_max": TRACING_OVERHEAD_TARGET,
            }
        if self.unet_step_s:
            doc["unet_step_512"] = {"runs_s": self.unet_step_s, "median_s": median(self.unet_step_s)}
        return doc


# ---- models ------------------------------------------------------------------------------------------------
def ensure_models(models_dir: Path, *, sd15: bool) -> None:
    """Two tiny models and (``sd15``) the SD 1.5-size one plus a hard-linked twin (no extra disk or cache)."""
    from runtime_image.server.tiny import make_tiny_model

    models_dir.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate((TINY_A, TINY_B)):
        if not (models_dir / name / "model_index.json").is_file():
            make_tiny_model(models_dir / name, seed=seed)
    if not (models_dir / TINY_SDXL / "model_index.json").is_file():
        from runtime_image.server.tiny import make_tiny

        make_tiny(models_dir / TINY_SDXL, "sdxl")
    if sd15:
        source = ensure_sd15_model(models_dir, SD15_A)
        twin = models_dir / SD15_B
        if not (twin / "model_index.json").is_file():
            for path in sorted(source.rglob("*")):
                target = twin / path.relative_to(source)
                if path.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, target)


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


# ---- raw reads ------------------------------------------------------------------------------------------
def raw_read(files: list[Path]) -> float:
    """Seconds to ``read()`` every file into a fresh buffer of its size (the bytes a loader must get)."""
    start = time.perf_counter()
    for path in files:
        size = path.stat().st_size
        buf = bytearray(size)
        view = memoryview(buf)
        with path.open("rb", buffering=0) as f:
            got = 0
            while got < size:  # one read() returns at most ~2 GiB on Linux
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
        del view, buf
    return time.perf_counter() - start


def mmap_touch(files: list[Path]) -> float:
    """Seconds to map every file and read one byte per page: the floor of a lazy, zero-copy loader."""
    import mmap

    start = time.perf_counter()
    page = mmap.PAGESIZE
    for path in files:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                continue
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                sum(m[i] for i in range(0, size, page))
    return time.perf_counter() - start


def convert_floor(files: list[Path], dtype: str) -> float:
    """Seconds to map every safetensors file and convert each tensor to ``dtype`` in fresh memory: the least
    any loader must do when the plan's dtype is not the files' (one read of the bytes, one conversion)."""
    import torch
    from safetensors import safe_open

    target = getattr(torch, dtype)
    start = time.perf_counter()
    kept: list[torch.Tensor] = []
    for path in files:
        if path.suffix != ".safetensors":
            continue
        with safe_open(str(path), framework="pt") as f:
            kept.extend(f.get_tensor(key).to(target) for key in f.keys())  # noqa: SIM118 - not a dict
    elapsed = time.perf_counter() - start
    del kept
    release_memory()
    return elapsed


def _proc_bytes(path: str, field: str) -> int:
    """A ``<field>: <n> kB`` line of a /proc file, in bytes (0 where /proc is missing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_anon_bytes() -> int:
    """This process's anonymous resident memory."""
    return _proc_bytes("/proc/self/status", "RssAnon")


def mem_available_bytes() -> int:
    return _proc_bytes("/proc/meminfo", "MemAvailable")


def release_memory() -> None:
    """Collect, then hand freed heap memory back to the OS. A converting load leaves about half the model's
    bytes in glibc's malloc arenas after it is freed (most SDXL tensors are under malloc's mmap threshold; 7.4
    GB of 13.9 measured): without the trim, the next load or conversion of the bench stacks on top of it."""
    import ctypes

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def drop_from_page_cache(files: list[Path]) -> None:
    """Evict these files' pages from the OS page cache (only theirs; nothing else on the machine)."""
    gc.collect()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def touch_weights(pipe: Any) -> None:
    """Read one value per 4 KiB page of every parameter and buffer (brings a lazily mapped model in)."""
    import torch

    with torch.inference_mode():
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            module = getattr(pipe, name, None)
            if module is None:
                continue
            for t in [*module.parameters(), *module.buffers()]:
                flat = t.detach().reshape(-1)
                stride = max(1, 4096 // t.element_size())
                flat[::stride].sum()


# ---- the runtime, in process -------------------------------------------------------------------------------
def new_runner(models_dir: Path, dtype: str | None = None) -> Any:
    """A fresh runner with this machine's device plan; ``dtype`` overrides the plan's dtype only."""
    import dataclasses

    import torch

    from runtime_image.server.device import plan_for, probe_device
    from runtime_image.server.main import offline_defaults
    from runtime_image.server.runner import Runner
    from runtime_image.server.settings import RuntimeSettings

    offline_defaults()
    settings = RuntimeSettings(models_dir=models_dir)
    plan = plan_for(probe_device(), dtype=settings.dtype, compile_unet=settings.torch_compile)
    if dtype is not None:
        plan = dataclasses.replace(plan, dtype=getattr(torch, dtype))
    runner = Runner(settings, plan=plan)
    runner.start().result()
    return runner


def timed_load(
    models_dir: Path, name: str, facts: LoadResult | None = None, *, dtype: str | None = None
) -> tuple[float, float]:
    """(load, load + touch) seconds of ``name`` in a fresh runner (a guaranteed cache miss); records the
    loaded pipeline's bytes and dtype in ``facts``; ``dtype`` overrides the device plan's."""
    from runtime_image.server.loader import pipeline_nbytes

    runner = new_runner(models_dir, dtype)
    try:
        anon = rss_anon_bytes()
        start = time.perf_counter()
        asyncio.run(runner.select_model(name))
        loaded = time.perf_counter() - start
        pipe = runner.cache.peek(name).text2img
        touch_weights(pipe)
        touched = time.perf_counter() - start
        if facts is not None:
            facts.loaded_bytes = pipeline_nbytes(pipe)
            facts.loaded_dtype = str(pipe.unet.dtype).removeprefix("torch.")
            facts.anon_bytes = rss_anon_bytes() - anon
        del pipe
        return loaded, touched
    finally:
        runner.close()
        del runner
        release_memory()


def bench_load(
    models_dir: Path, runs: int, *, cold: bool = True, template: LoadResult | None = None
) -> LoadResult:
    """Loads of ``template.model`` (default: the SD 1.5-size one) alternating with raw reads of its files."""
    result = template or LoadResult(model_bytes=0)
    folder = models_dir / result.model
    files = weight_files(folder)
    result.model_bytes = model_bytes(folder)
    plan = result.plan_dtype
    timed_load(models_dir, result.model, result, dtype=plan)  # imports, and the files into the page cache
    raw_read(files)
    for _ in range(runs):
        result.raw_read_s.append(raw_read(files))
        result.mmap_touch_s.append(mmap_touch(files))
        loaded, touched = timed_load(models_dir, result.model, dtype=plan)
        result.load_s.append(loaded)
        result.load_touch_s.append(touched)
        if result.convert_dtype:
            result.convert_floor_s.append(convert_floor(files, result.convert_dtype))
            result.convert_load_touch_s.append(timed_load(models_dir, result.model)[1])
    if cold:
        drop_from_page_cache(files)
        result.cold_raw_read_s = raw_read(files)
        drop_from_page_cache(files)
        result.cold_load_touch_s = timed_load(models_dir, result.model, dtype=plan)[1]
        raw_read(files)  # leave the files cached, as found
    return result


def bench_load_sdxl(
    models_dir: Path,
    runs: int,
    *,
    cold: bool = True,
    cpu_plan: bool = False,
    configs: dict[str, Any] | None = None,
) -> LoadResult:
    """The SDXL-size fp16 folder loaded by the runtime with a float16 plan, a GPU node's (lazily mapped: the
    weights stay in the page cache, a few hundred MB of process memory). ``cpu_plan`` adds this machine's own
    plan when it converts (float32 on a CPU: 13.9 GB of fresh memory per load), only if the memory is
    available. ``configs``: a scaled-down model for the tests (see :func:`bench.sdxl.ensure_sdxl_model`)."""
    from runtime_image.server.device import plan_for, probe_device

    folder = ensure_sdxl_model(models_dir, SDXL_NAME, configs=configs)
    template = LoadResult(
        model_bytes=0,
        model=SDXL_NAME,
        label="SDXL-size checkpoint",
        disk_dtype="float16",
        plan_dtype="float16",
    )
    machine = plan_for(probe_device()).dtype_name
    if cpu_plan and machine != template.disk_dtype:
        # Converted weights, plus the floor's own conversion, one at a time; 25 % for everything else.
        need = int(model_bytes(folder) * _itemsize(machine) / 2 * 1.25)
        available = mem_available_bytes()
        if available >= need:
            template.convert_dtype = machine
        else:
            gib = 2**30
            template.skipped = (
                f"{machine} plan: needs ~{need / gib:.1f} GiB, {available / gib:.1f} GiB available"
            )
    return bench_load(models_dir, runs, cold=cold, template=template)


def _itemsize(dtype: str) -> int:
    import torch

    return int(torch.empty((), dtype=getattr(torch, dtype)).element_size())


def txt2img(http: httpx.Client, *, batch: int, width: int, steps: int, seed: int) -> int:
    body = {
        "prompt": "a photo of a cat",
        "steps": steps,
        "width": width,
        "height": width,
        "batch_size": batch,
        "seed": seed,
        "sampler_name": "Euler a",
        "cfg_scale": 7.0,
    }
    resp = http.post("/sdapi/v1/txt2img", json=body, timeout=600)
    resp.raise_for_status()
    return len(resp.json()["images"])


def bench_batch(
    http: httpx.Client, *, images: int, width: int = 64, steps: int = 10, rounds: int = 2
) -> BatchResult:
    result = BatchResult(width=width, steps=steps, images=images * rounds)
    select(http, TINY_A)
    txt2img(http, batch=1, width=width, steps=steps, seed=1)  # warm-up
    txt2img(http, batch=4, width=width, steps=steps, seed=1)
    seed = 100
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(images):
            seed += 1
            txt2img(http, batch=1, width=width, steps=steps, seed=seed)
        result.batch1_s += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(images // 4):
            seed += 4
            txt2img(http, batch=4, width=width, steps=steps, seed=seed)
        result.batch4_s += time.perf_counter() - start
    return result


def _timed(http: httpx.Client, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    resp = http.post("/sdapi/v1/txt2img", json=body, timeout=600)
    resp.raise_for_status()
    return time.perf_counter() - start


def bench_workloads(http: httpx.Client, *, steps: int = 10, rounds: int = 5) -> WorkloadResult:
    """(d) tiny SDXL vs tiny SD 1.5 per image; (e) hires 64->128 vs plain 128 on SD 1.5, same steps."""
    result = WorkloadResult(steps=steps)
    base = {"prompt": "a photo of a cat", "steps": steps, "sampler_name": "Euler", "cfg_scale": 7.0}
    small = {**base, "width": 64, "height": 64}
    variants = {
        "sd15_s": {**small, "override_settings": {"sd_model_checkpoint": TINY_A}},
        "sdxl_s": {**small, "override_settings": {"sd_model_checkpoint": TINY_SDXL}},
        "plain_128_s": {
            **base,
            "width": 128,
            "height": 128,
            "override_settings": {"sd_model_checkpoint": TINY_A},
        },
        "hires_64_to_128_s": {
            **small,
            "enable_hr": True,
            "hr_scale": 2,
            "hr_upscaler": "Latent",
            "denoising_strength": 0.5,
            "override_settings": {"sd_model_checkpoint": TINY_A},
        },
    }
    for body in variants.values():  # loads and first-run allocations, not timed
        _timed(http, {**body, "seed": 1})
    for r in range(rounds):
        for key, body in variants.items():
            getattr(result, key).append(_timed(http, {**body, "seed": 10 + r}))
    return result


def select(http: httpx.Client, name: str) -> float:
    start = time.perf_counter()
    resp = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": name}, timeout=600)
    resp.raise_for_status()
    return (time.perf_counter() - start) * 1000.0


def bench_switch(http: httpx.Client, models: tuple[str, str], switches: int = 10) -> SwitchResult:
    result = SwitchResult(models=models)
    for name in models:  # both into the cache (loads, not timed)
        select(http, name)
    before = http.get("/easel/v1/cache").json()
    for i in range(switches):
        result.switches_ms.append(select(http, models[i % 2]))
    after = http.get("/easel/v1/cache").json()
    result.cache_hits = int(after["hits"]) - int(before["hits"])
    result.cache_misses = int(after["misses"]) - int(before["misses"])
    return result


def bench_unet_step(runner: Any, name: str, runs: int = 2) -> list[float]:
    import torch

    pipe = runner.cache.peek(name).text2img
    unet = pipe.unet
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 4, 64, 64), generator=gen)
    context = torch.randn((2, 77, 768), generator=gen)
    timestep = torch.tensor(500)
    out = []
    with torch.inference_mode():
        unet(latents, timestep, encoder_hidden_states=context)  # first touch of the weights
        for _ in range(runs):
            start = time.perf_counter()
            unet(latents, timestep, encoder_hidden_states=context)
            out.append(time.perf_counter() - start)
    return out


def bench_runtime(
    models_dir: Path,
    *,
    images: int = 16,
    steps: int = 10,
    load_runs: int = 3,
    sd15: bool = True,
    sdxl: bool = False,
    sdxl_cpu_plan: bool = False,
) -> RuntimeBench:
    from runtime_image.server.main import build_app
    from runtime_image.server.settings import RuntimeSettings

    models_dir = models_dir.resolve()
    result = RuntimeBench()
    ensure_models(models_dir, sd15=sd15)
    import torch

    result.notes.append(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if sd15:
        result.load = bench_load(models_dir, load_runs)
    if sdxl:
        result.load_sdxl = bench_load_sdxl(models_dir, load_runs, cpu_plan=sdxl_cpu_plan)
        if result.load_sdxl.skipped:
            result.notes.append(f"SDXL CPU-plan load not measured: {result.load_sdxl.skipped}")
    switch = TracingSwitch(models_dir / "bench-spans.jsonl")
    switch.path.unlink(missing_ok=True)
    app = build_app(RuntimeSettings(models_dir=models_dir))
    with ThreadedServer(app, lifespan="on") as server, httpx.Client(base_url=server.url) as http:
        wait_ready(http)
        if switch.installed:
            result.tracing = bench_tracing(http, switch, requests=images, steps=steps)
        else:
            result.notes.append("tracing: another tracer provider was installed first; not measured")
        result.batch = bench_batch(http, images=images, steps=steps)
        result.workloads = bench_workloads(http, steps=steps)
        result.switches.append(bench_switch(http, (TINY_A, TINY_B)))
        if sd15:
            result.switches.append(bench_switch(http, (SD15_A, SD15_B)))
            result.unet_step_s = bench_unet_step(app.state.runner, SD15_A)
    return result


def wait_ready(http: httpx.Client, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if http.get("/health").json().get("status") in ("ready", "busy"):
                return
        time.sleep(0.1)
    raise RuntimeError("the runtime did not become ready")


# ---- output ---------------------------------------------------------------------------------------------
def tables(result: RuntimeBench) -> list[Any]:
    from bench.report import fmt, make_table, verdict

    out = []
    if result.batch:
        b = result.batch
        t = make_table(
            f"easel bench runtime: batching (tiny model, {b.width}x{b.width}, {b.steps} steps, "
            f"{b.images} images each)",
            ["batch_size", "seconds", "images/s", "ratio", "target"],
        )
        t.add_row("1", fmt(b.batch1_s, 2), fmt(b.batch1_ips, 2), "1.00x", "")
        target = f">= {BATCH_RATIO_TARGET}x {verdict(b.ratio >= BATCH_RATIO_TARGET)}"
        t.add_row("4", fmt(b.batch4_s, 2), fmt(b.batch4_ips, 2), fmt(b.ratio, 2) + "x", target)
        out.append(t)
    if result.workloads:
        w = result.workloads
        t = make_table(
            f"workloads (tiny models, {w.steps} steps, medians of {len(w.sd15_s)} alternating rounds)",
            ["what", "s / image", "vs baseline"],
        )
        t.add_row("SD 1.5 tiny, 64x64 (baseline)", fmt(median(w.sd15_s), 3), "1.00x")
        t.add_row("SDXL tiny, 64x64", fmt(median(w.sdxl_s), 3), fmt(w.sdxl_ratio, 2) + "x")
        t.add_row("plain 128x128 (baseline)", fmt(median(w.plain_128_s), 3), "1.00x")
        t.add_row("hires fix 64 -> 128 (Latent, denoise 0.5)", fmt(median(w.hires_64_to_128_s), 3),
                  fmt(w.hires_ratio, 2) + "x")  # fmt: skip
        out.append(t)
    for load in (result.load, result.load_sdxl):
        if load:
            out.append(_load_table(load))
    if result.switches:
        t = make_table(
            "model switch between two cached models (POST /sdapi/v1/options)",
            ["models", "switches", "median (ms)", "max (ms)", "cache hits/misses", "target"],
        )
        for s in result.switches:
            med = median(s.switches_ms)
            t.add_row(
                " <-> ".join(s.models),
                str(len(s.switches_ms)),
                fmt(med, 1),
                fmt(max(s.switches_ms), 1),
                f"{s.cache_hits}/{s.cache_misses}",
                f"<= {SWITCH_TARGET_MS:.0f} ms {verdict(med <= SWITCH_TARGET_MS)}",
            )
        out.append(t)
    if result.tracing:
        tr = result.tracing
        t = make_table(
            f"tracing on vs off (tiny model, {tr.width}x{tr.width}, {tr.steps} steps, {tr.requests} requests "
            "each, rounds alternating)",
            ["tracing", "seconds", "spans written", "overhead", "target"],
        )
        t.add_row("off (sampled out)", fmt(tr.off_s, 2), "0", "", "")
        target = f"<= {TRACING_OVERHEAD_TARGET:.0%} {verdict(tr.overhead <= TRACING_OVERHEAD_TARGET)}"
        t.add_row("on (JSONL file)", fmt(tr.on_s, 2), str(tr.spans), f"{tr.overhead:+.1%}", target)
        out.append(t)
    if result.unet_step_s:
        t = make_table(
            "one UNet step at 512x512 (SD 1.5-size UNet, CFG batch of 2, CPU)", ["runs", "median (s)"]
        )
        t.add_row(str(len(result.unet_step_s)), fmt(median(result.unet_step_s), 2))
        out.append(t)
    return out


def _load_table(ld: LoadResult) -> Any:
    from bench.report import fmt, make_table, verdict

    t = make_table(
        f"model load: {ld.label} ({ld.model_bytes / 1e9:.2f} GB {ld.disk_dtype} on disk, "
        f"{ld.loaded_bytes / 1e9:.2f} GB loaded as {ld.loaded_dtype}, process memory "
        f"+{ld.anon_bytes / 1e9:.2f} GB), medians of {len(ld.load_s)}",
        ["what", "warm cache (s)", "vs raw read", "cold cache (s)", "vs raw read"],
    )
    raw = median(ld.raw_read_s)

    def rel(value: float) -> str:
        return fmt(ratio(value, raw), 2) + "x"

    t.add_row(
        "raw read() into fresh buffers (baseline)", fmt(raw, 3), "1.00x", fmt(ld.cold_raw_read_s, 3), "1.00x"
    )
    t.add_row(
        "raw mmap + touch every page (floor)", fmt(median(ld.mmap_touch_s), 3), rel(median(ld.mmap_touch_s))
    )
    same = ld.disk_dtype == ld.loaded_dtype
    how = "lazy mmap" if same else f"{ld.disk_dtype} converted to {ld.loaded_dtype}"
    if ld.convert_floor_s:
        t.add_row(
            f"raw mmap + convert every tensor to {ld.convert_dtype} (floor of a converting load)",
            fmt(median(ld.convert_floor_s), 3),
            rel(median(ld.convert_floor_s)),
        )
    t.add_row(f"runtime load ({how})", fmt(median(ld.load_s), 3), rel(median(ld.load_s)))
    cold = ld.cold_ratio
    t.add_row(
        "runtime load + touch every weight page",
        fmt(median(ld.load_touch_s), 3),
        fmt(ld.ratio, 2) + f"x (<= {LOAD_RATIO_TARGET}x {verdict(ld.ratio <= LOAD_RATIO_TARGET)})",
        fmt(ld.cold_load_touch_s, 3),
        "-" if cold is None else fmt(cold, 2) + "x",
    )
    if ld.convert_load_touch_s:
        converting = median(ld.convert_load_touch_s)
        t.add_row(
            f"runtime load + touch, this CPU's plan ({ld.disk_dtype} converted to {ld.convert_dtype})",
            fmt(converting, 3),
            rel(converting),
        )
    return t
