"""The runner: owns the models, runs one job at a time on one worker thread, and knows its own state.

The http layer calls the async methods; each admitted job goes to a single-thread executor (all torch work on
one thread: CUDA contexts, compiled graphs and LoRA injection are not shared across threads). Admission is
bounded: one running job plus ``max_waiting`` waiting ones, anything more is refused with
:class:`BusyError` at once. Health, progress and cache statistics are read without waiting for the worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace
from pydantic import ValidationError

from runtime_image.server.a1111 import StoreView, Translated, translate
from runtime_image.server.arch import Arch
from runtime_image.server.batch import MAX_IMAGES, ItemError, check_same_shape, refuse_unbatchable
from runtime_image.server.cache import LruCache
from runtime_image.server.device import DevicePlan, plan_for, probe_device
from runtime_image.server.errors import (
    BusyError,
    InternalError,
    ModelLoadError,
    NotFoundError,
    NotReadyError,
    RequestError,
    RuntimeServerError,
)
from runtime_image.server.loader import load_controlnet, load_pipeline, module_nbytes, pipeline_nbytes
from runtime_image.server.lora import AdapterSet, LoraStats
from runtime_image.server.pipelines import GenerationResult, LoadedModel
from runtime_image.server.private import PrivateLoras
from runtime_image.server.schemas import ExtrasBase, GenerationRequest, TrainLoraRequest, Txt2ImgRequest
from runtime_image.server.settings import RuntimeSettings
from runtime_image.server.store import FileEntry, ModelEntry, ModelStore
from runtime_image.server.training import TrainJob, describe, train_lora, training_job
from runtime_image.server.upscalers import BUILTIN, LATENT_MODES, Upscaler, builtin, extras_upscale

log = logging.getLogger("easel.runtime")
_tracer = trace.get_tracer("easel.runtime")
T = TypeVar("T")
Loader = Callable[[ModelEntry, DevicePlan, ModelStore], Any]


class Health(StrEnum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    FAILED = "failed"


@dataclass
class _Progress:
    job: str = ""
    job_timestamp: str = ""
    job_no: int = 0
    job_count: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    started: float | None = None
    interrupted: bool = False


class Runner:
    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        plan: DevicePlan | None = None,
        loader: Loader = load_pipeline,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # Without a configured directory, tenants' adapters go to a scratch directory of this process,
        # removed by close() (shutdown): they must not stay on disk after the runtime is gone.
        self._scratch = (
            None if settings.private_loras_dir else Path(tempfile.mkdtemp(prefix="easel-private-loras-"))
        )
        private_dir = settings.private_loras_dir or self._scratch
        assert private_dir is not None
        self.private = PrivateLoras(private_dir, max_bytes=settings.max_lora_upload_bytes)
        self.store = ModelStore(settings.models_dir, self.private)
        self.plan = plan or plan_for(
            probe_device(), dtype=settings.dtype, compile_unet=settings.torch_compile
        )
        if self.plan.device == "cpu" and settings.cpu_threads:
            import torch

            torch.set_num_threads(settings.cpu_threads)
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self.lora_stats = LoraStats()
        self._lora_lock = threading.Lock()
        # Checkpoints, ControlNets ("controlnet:<name>") and upscalers ("upscaler:<name>") share one budget.
        self.cache: LruCache[Any] = LruCache(
            settings.cache_max_bytes, size_of=lambda m: m.nbytes, on_evict=self._evicted
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-runtime")
        self._status = Health.STARTING
        self._error: str | None = None
        self._pending = 0
        self._running = 0
        # The selected model (sd_model_checkpoint) and the one whose weights sit on the accelerator.
        self._current: str | None = None
        self._placed: str | None = None
        self._clip_stop = 1
        self._interrupt = threading.Event()
        self._progress = _Progress()
        self._started_at = clock()

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Future[None]:
        """Boot on the worker (preload the model); /health says ``starting`` until it is done."""
        return self._executor.submit(self._boot)

    def close(self) -> None:
        self._interrupt.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _boot(self) -> None:
        try:
            if self.settings.preload_model:
                self._activate(self.settings.preload_model)
        except Exception as exc:
            log.exception("start failed")
            with self._lock:
                self._status, self._error = Health.FAILED, f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._status = Health.READY

    # ---- state (never waits for the worker) -------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with self._lock:
            status = self._status
            if status is Health.READY and self._running:
                status = Health.BUSY
            return {
                "status": str(status),
                "model": self._current,
                "error": self._error,
                "queue": {
                    "running": self._running,
                    "waiting": self._pending - self._running,
                    "max_waiting": self.settings.max_waiting,
                },
                "device": self.plan.describe(),
                "uptime_seconds": round(self._clock() - self._started_at, 3),
            }

    def progress(self) -> dict[str, Any]:
        with self._lock:
            p = self._progress
            per_iter = p.sampling_step / p.sampling_steps if p.sampling_steps else 0.0
            done = (p.job_no + per_iter) / p.job_count if p.job_count else 0.0
            elapsed = self._clock() - p.started if p.started is not None else 0.0
            eta = elapsed / done - elapsed if done > 0 else 0.0
            return {
                "progress": round(min(done, 1.0), 4),
                "eta_relative": round(eta, 3),
                "state": {
                    "skipped": False,
                    "interrupted": p.interrupted,
                    "job": p.job,
                    "job_count": p.job_count,
                    "job_timestamp": p.job_timestamp,
                    "job_no": p.job_no,
                    "sampling_step": p.sampling_step,
                    "sampling_steps": p.sampling_steps,
                },
                "current_image": None,
                "textinfo": None,
            }

    def cache_stats(self) -> dict[str, Any]:
        stats = self.cache.snapshot()
        with self._lock:
            stats["active"] = self._current
            stats["loras"] = {
                "hits": self.lora_stats.hits,
                "misses": self.lora_stats.misses,
                "evictions": self.lora_stats.evictions,
                "active": list(self.lora_stats.active),
                "resident": {m["name"]: self._resident_loras(m["name"]) for m in stats["models"]},
            }
        return stats

    def options(self) -> dict[str, Any]:
        with self._lock:
            return {"sd_model_checkpoint": self._current, "CLIP_stop_at_last_layers": self._clip_stop}

    def _resident_loras(self, name: str) -> list[str]:
        model = self.cache.peek(name)
        return model.adapters.resident if isinstance(model, LoadedModel) else []

    # ---- work ------------------------------------------------------------------------------------------
    async def select_model(self, name: str) -> dict[str, Any]:
        self.store.model(name)  # 404 now, not after waiting in the queue
        await self._submit(self._activate, name)
        return self.options()

    def set_clip_stop(self, value: int) -> None:
        with self._lock:
            self._clip_stop = value

    def store_view(self) -> StoreView:
        return StoreView(
            controlnet=lambda name, field: self.store.controlnet(name, field),
            upscalers=[e.name for e in self.store.upscalers()],
        )

    async def generate(self, req: GenerationRequest) -> tuple[Translated, GenerationResult, str]:
        with self._lock:
            clip_stop = self._clip_stop
            current = self._current
        # Validation and image decoding happen before admission: a bad request never takes a queue slot.
        tr = await asyncio.to_thread(translate, req, clip_stop=clip_stop, store=self.store_view())
        name = tr.model or current
        if tr.model is not None:
            self.store.model(tr.model)
        for use in tr.job.loras:
            self.store.lora(use.name, allow_private=use.allow_private)
        if name is not None or len(self.store.models()) == 1:
            await asyncio.to_thread(self._check_arch, name or self.store.models()[0].name, tr)
        result, model = await self._submit(self._generate, tr)
        return tr, result, model

    async def generate_batch(
        self, reqs: list[dict[str, Any]]
    ) -> list[tuple[Txt2ImgRequest, Translated, GenerationResult, str] | ItemError]:
        """A mixed batch (:mod:`runtime_image.server.batch`): each item validated on its own; the valid ones
        of the first item's shape run as one generation; the others answer with their own error."""
        with self._lock:
            clip_stop = self._clip_stop
            current = self._current
        view = self.store_view()

        def check(raw: dict[str, Any]) -> tuple[Txt2ImgRequest, Translated] | ItemError:
            try:
                req = Txt2ImgRequest.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "body"
                return ItemError(422, RequestError(field, first.get("input"), first["msg"]))
            try:
                tr = translate(req, clip_stop=clip_stop, store=view)
                refuse_unbatchable(tr)
                if tr.model is not None:
                    self.store.model(tr.model)
                for use in tr.job.loras:
                    self.store.lora(use.name, allow_private=use.allow_private)
                name = tr.model or current
                if name is not None or len(self.store.models()) == 1:
                    self._check_arch(name or self.store.models()[0].name, tr)
            except RequestError as exc:
                return ItemError(422, exc)
            except NotFoundError as exc:
                return ItemError(404, exc)
            return req, tr

        # Validation and image decoding happen before admission: bad items never take a queue slot.
        checked = await asyncio.to_thread(lambda: [check(r) for r in reqs])
        runnable: list[int] = []
        images = 0
        for i, item in enumerate(checked):
            if isinstance(item, ItemError):
                continue
            if runnable:
                lead = checked[runnable[0]]
                assert not isinstance(lead, ItemError)
                try:
                    check_same_shape(lead[1], item[1])
                except RequestError as exc:
                    checked[i] = ItemError(422, exc)
                    continue
            if images + item[1].job.batch_size > MAX_IMAGES:
                checked[i] = ItemError(
                    422,
                    RequestError(
                        "batch_size", item[1].job.batch_size, f"the batch exceeds {MAX_IMAGES} images"
                    ),
                )
                continue
            images += item[1].job.batch_size
            runnable.append(i)
        out: list[tuple[Txt2ImgRequest, Translated, GenerationResult, str] | ItemError] = []
        if not runnable:
            return [c for c in checked if isinstance(c, ItemError)]
        trs = []
        for i in runnable:
            item = checked[i]
            assert not isinstance(item, ItemError)
            trs.append(item[1])
        results, model = await self._submit(self._generate_batch, trs)
        by_index = dict(zip(runnable, results, strict=True))
        for i, item in enumerate(checked):
            if isinstance(item, ItemError):
                out.append(item)
            else:
                out.append((item[0], item[1], by_index[i], model))
        return out

    def _check_arch(self, name: str, tr: Translated) -> None:
        """Refuse combinations the model's architecture cannot run, before the request is queued."""
        arch = self.store.model(name).arch()
        job = tr.job
        if arch is Arch.SDXL_REFINER and job.init_image is None:
            raise RequestError("sd_model_checkpoint", name, "an SDXL refiner only runs image-to-image")
        if arch.inpainting and job.hires is not None and job.hires.upscaler in LATENT_MODES:
            raise RequestError(
                "hr_upscaler",
                job.hires.upscaler,
                f"latent upscaling needs a non-inpainting model ({name} is {arch}); use an image upscaler",
            )
        for i, c in enumerate(job.controls):
            family = _controlnet_family(
                self.store.controlnet(c.model, f"alwayson_scripts.controlnet.args.{i}.model")
            )
            if family != arch.family:
                raise RequestError(
                    f"alwayson_scripts.controlnet.args.{i}.model",
                    c.model,
                    f"a {family} ControlNet cannot drive a {arch} model",
                )
        if job.refiner is not None:
            if arch.family != "sdxl":
                raise RequestError(
                    "refiner_checkpoint", job.refiner.model, f"a refiner needs an SDXL base, not {arch}"
                )
            refiner = self.store.model(job.refiner.model).arch()
            if refiner.family != "sdxl":
                raise RequestError(
                    "refiner_checkpoint", job.refiner.model, f"is {refiner}, not an SDXL model"
                )

    async def extras(self, req: ExtrasBase, images: list[Any]) -> list[Any]:
        """A1111 extras: upscale each image (upscaler_1, blended with upscaler_2 at its visibility)."""
        names = [e.name for e in self.store.upscalers()]
        for field in ("upscaler_1", "upscaler_2"):
            value = getattr(req, field)
            if value not in BUILTIN and value not in names:
                raise RequestError(
                    field, value, f"unknown upscaler; use one of: {', '.join([*BUILTIN, *names])}"
                )
        for field in ("gfpgan_visibility", "codeformer_visibility"):
            if getattr(req, field):
                raise RequestError(field, getattr(req, field), "face restoration is not supported")
        for img in images:
            by = (
                req.upscaling_resize
                if req.resize_mode == 0
                else max(req.upscaling_resize_w / img.width, req.upscaling_resize_h / img.height)
            )
            if max(img.width, img.height) * by > 8192:
                raise RequestError(
                    "upscaling_resize", req.upscaling_resize, "the result would exceed 8192 pixels a side"
                )
        return await self._submit(self._extras, req, images)

    def _upscaler(self, name: str) -> Upscaler:
        if name in BUILTIN:
            return builtin(name)
        entry = next((e for e in self.store.upscalers() if e.name == name), None)
        if entry is None:
            raise RequestError("upscaler", name, "unknown upscaler")
        value, _ = self.cache.get_or_load(
            f"upscaler:{name}", entry.fingerprint(), lambda: self._load_upscaler(entry)
        )
        upscaler: Upscaler = value
        return upscaler

    def _load_upscaler(self, entry: FileEntry) -> Upscaler:
        from runtime_image.server.esrgan import UnsupportedUpscaler, load_file

        try:
            net = load_file(entry.path)
        except (UnsupportedUpscaler, OSError, RuntimeError) as exc:
            raise ModelLoadError(entry.name, str(exc)) from exc
        net.to(self.plan.device)
        return Upscaler(entry.name, net=net, nbytes=module_nbytes(net))

    def _extras(self, req: ExtrasBase, images: list[Any]) -> list[Any]:
        from PIL import Image

        self._set_progress(job="extras", job_count=len(images), started=self._clock())
        try:
            first = self._upscaler(req.upscaler_1)
            second = self._upscaler(req.upscaler_2) if req.upscaler_2 != "None" else None
            out = []
            for i, img in enumerate(images):
                self._on_step(i, 0, 1)
                result = _extras_step(first, img, req)
                if second is not None and req.extras_upscaler_2_visibility > 0 and first.name != "None":
                    other = _extras_step(second, img, req).convert(result.mode)
                    result = Image.blend(result, other, req.extras_upscaler_2_visibility)
                out.append(result)
            return out
        finally:
            self._clear_progress()

    async def train_lora(self, req: TrainLoraRequest) -> dict[str, Any]:
        job = await asyncio.to_thread(training_job, req)
        if req.model is not None:
            self.store.model(req.model)
        return await self._submit(self._train, req.model, job)

    def interrupt(self) -> bool:
        """Stop the running generation or training after its current step; False when nothing runs."""
        with self._lock:
            if not self._running or self._progress.job not in ("txt2img", "img2img", "train", "extras"):
                return False
            self._progress.interrupted = True
        self._interrupt.set()
        return True

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._status in (Health.STARTING, Health.FAILED):
                raise NotReadyError(str(self._status), self._error)
            if self._pending >= 1 + self.settings.max_waiting:
                raise BusyError(self._running, self._pending - self._running, self.settings.max_waiting)
            self._pending += 1
        try:
            # The worker thread runs in this request's context: its spans nest under the request's span and
            # its log lines carry the request's task id.
            future = self._executor.submit(contextvars.copy_context().run, self._guarded, fn, *args)
        except RuntimeError:
            self._release(None)
            raise NotReadyError("stopping") from None
        # Released when the job ends or is cancelled unstarted (client gone), whatever the awaiting side does.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._pending -= 1

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self._running += 1
        try:
            return fn(*args)
        except RuntimeServerError:
            raise
        except Exception as exc:
            log.exception("job failed")
            raise InternalError(exc) from exc
        finally:
            with self._lock:
                self._running -= 1

    # ---- on the worker thread --------------------------------------------------------------------------
    def _activate(self, name: str, *, select: bool = True) -> LoadedModel:
        entry = self.store.model(name)
        if self._placed not in (None, entry.name) and self.plan.device != "cpu":
            # Free the accelerator for the next model: the old one waits in host memory (the cache).
            old = self.cache.peek(self._placed)
            if old is not None:
                old.release()
            self._placed = None
        self._set_progress(job="load", job_count=1)
        with _tracer.start_as_current_span("model load", attributes={"easel.model": entry.name}) as span:
            try:
                model, hit = self.cache.get_or_load(
                    entry.name, entry.fingerprint(), lambda: self._load(entry)
                )
            finally:
                self._clear_progress()
            span.set_attribute("easel.cache_hit", hit)
            model.place(self.plan.device)
        self._placed = entry.name
        if select:
            with self._lock:
                self._current = entry.name
        log.log(
            logging.DEBUG if hit else logging.INFO,
            "model %s active (%s)",
            entry.name,
            "hit" if hit else "loaded",
        )
        return model

    def _load(self, entry: ModelEntry) -> LoadedModel:
        pipe = self._loader(entry, self.plan, self.store)
        adapters = AdapterSet(self.settings.max_resident_loras, self.lora_stats, self._lora_lock)
        return LoadedModel(entry.name, pipe, self.plan, adapters, pipeline_nbytes(pipe), arch=entry.arch())

    def _evicted(self, name: str, model: LoadedModel) -> None:
        log.info("model %s evicted from the cache", name)
        # No copy back to the host: the weights are dropped either way.
        if self._placed == name:
            self._placed = None
        # The selection (self._current) stays: the next request for it loads it again.
        del model
        gc.collect()
        if self.plan.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _generate(self, tr: Translated) -> tuple[GenerationResult, str]:
        name = tr.model or self._current or self._only_model()
        # A1111: a per-request override_settings model is not kept selected unless restore is off.
        model = self._activate(name, select=tr.model is None or not tr.restore)
        job = tr.job
        controlnets = [self._controlnet(c.model) for c in job.controls]
        refiner = None
        if job.refiner is not None:
            entry = self.store.model(job.refiner.model)
            refiner, _ = self.cache.get_or_load(entry.name, entry.fingerprint(), lambda: self._load(entry))
            # Base and refiner both sit on the accelerator for the job (A1111 swaps; memory allowing, this
            # saves the move).
            refiner.place(self.plan.device)
        upscaler = None
        if job.hires is not None and job.hires.upscaler not in LATENT_MODES:
            upscaler = self._upscaler(job.hires.upscaler)
        self._interrupt.clear()
        self._set_progress(job=job.mode, job_count=job.n_iter, started=self._clock())
        clock = StepClock(self._on_step)
        attributes: dict[str, str | int] = {
            "easel.model": model.name,
            "easel.mode": job.mode,
            "easel.steps": job.steps,
            "easel.width": job.width,
            "easel.height": job.height,
            "easel.batch_size": job.batch_size,
            "easel.n_iter": job.n_iter,
        }
        started = time.monotonic()
        with _tracer.start_as_current_span("generate", attributes=attributes) as span:
            begin = time.time_ns()
            try:
                result = model.generate(
                    job, self.store, clock, controlnets=controlnets, refiner=refiner, upscaler=upscaler
                )
            finally:
                self._clear_progress()
            clock.record(begin, time.time_ns())
            span.set_attribute("easel.steps_completed", result.steps_completed)
            if result.interrupted:
                span.add_event("interrupted", {"easel.steps_completed": result.steps_completed})
        seconds = time.monotonic() - started
        log.info(
            "generated",
            extra={
                "model": model.name,
                "mode": job.mode,
                "steps": job.steps,
                "steps_completed": result.steps_completed,
                "width": job.width,
                "height": job.height,
                "images": len(result.images),
                "interrupted": result.interrupted,
                "seconds": round(seconds, 3),
            },
        )
        return result, model.name

    def _generate_batch(self, trs: list[Translated]) -> tuple[list[GenerationResult], str]:
        lead = trs[0]
        name = lead.model or self._current or self._only_model()
        model = self._activate(name, select=lead.model is None or not lead.restore)
        jobs = [tr.job for tr in trs]
        self._interrupt.clear()
        self._set_progress(job="txt2img", job_count=1, started=self._clock())
        try:
            results = model.generate_batch(jobs, self.store, self._on_step)
        finally:
            self._clear_progress()
        return results, model.name

    def _controlnet(self, name: str) -> Any:
        entry = self.store.controlnet(name, "controlnet.model")
        holder, _ = self.cache.get_or_load(
            f"controlnet:{entry.name}", entry.fingerprint(), lambda: _Held(load_controlnet(entry, self.plan))
        )
        return holder.module

    def _train(self, name: str | None, job: TrainJob) -> dict[str, Any]:
        model = self._activate(name or self._current or self._only_model())
        self._interrupt.clear()
        self._set_progress(job="train", job_count=1, started=self._clock())
        try:
            result = train_lora(model, job, self.store, lambda done, total: self._on_step(0, done, total))
        finally:
            self._clear_progress()
        return {"model": model.name, **describe(result, job.output_name, with_weights=job.return_weights)}

    def _only_model(self) -> str:
        models = self.store.models()
        if len(models) == 1:
            return models[0].name
        raise RequestError(
            "sd_model_checkpoint",
            None,
            "no model is loaded: set it with POST /sdapi/v1/options or override_settings "
            f"(store has {len(models)} models)",
        )

    def _on_step(self, iteration: int, step: int, total: int) -> bool:
        with self._lock:
            self._progress.job_no = iteration
            self._progress.sampling_step = step
            self._progress.sampling_steps = total
        return self._interrupt.is_set()

    def _clear_progress(self) -> None:
        with self._lock:
            self._progress = _Progress()

    def _set_progress(self, **fields: Any) -> None:
        """A new job starts: fresh progress, so nothing of the previous job is reported for it."""
        with self._lock:
            self._progress = _Progress(job_timestamp=datetime.now(UTC).strftime("%Y%m%d%H%M%S"), **fields)


class StepClock:
    """The step hook of one generation that also notes when denoising steps end, so the ``generate`` span
    gets its ``denoise`` part (start to the last step) and its ``vae decode`` part (the last step to the
    end: VAE decode and image post-processing) as child spans, without touching the pipeline call."""

    def __init__(self, on_step: Callable[[int, int, int], bool]) -> None:
        self._on_step = on_step
        self.steps = 0
        self.last_step_ns: int | None = None

    def __call__(self, iteration: int, step: int, total: int) -> bool:
        if step > 0:
            self.steps += 1
            self.last_step_ns = time.time_ns()
        return self._on_step(iteration, step, total)

    def record(self, begin_ns: int, end_ns: int) -> None:
        """Child spans of the current span (call inside it, after the generation)."""
        if self.last_step_ns is None:
            return
        _tracer.start_span("denoise", start_time=begin_ns, attributes={"easel.steps": self.steps}).end(
            end_time=self.last_step_ns
        )
        _tracer.start_span("vae decode", start_time=self.last_step_ns).end(end_time=end_ns)


class _Held:
    """A module in the model cache (a ControlNet): its size in bytes is what the budget counts."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.nbytes = module_nbytes(module)

    def release(self) -> None:
        self.module.to("cpu")


def _controlnet_family(entry: FileEntry) -> str:
    import json

    config = json.loads((entry.path / "config.json").read_text(encoding="utf-8"))
    return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"


def _extras_step(up: Upscaler, image: Any, req: ExtrasBase) -> Any:
    return extras_upscale(
        up,
        image,
        mode=req.resize_mode,
        by=req.upscaling_resize,
        to_w=req.upscaling_resize_w,
        to_h=req.upscaling_resize_h,
        crop=req.upscaling_crop,
    )
