"""The HTTP layer: routes of the SD WebUI API subset plus Easel's own, over a :class:`Runner`.

Status codes the queue agent relies on: 422 invalid or unsupported input (names the field), 404 unknown model
or LoRA (names it), 503 busy / starting / failed (retry later), 500 anything else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import baggage, propagate, trace
from starlette.concurrency import run_in_threadpool

from runtime_image.server import controlnet, logjson, tracing
from runtime_image.server.a1111 import build_response
from runtime_image.server.batch import ItemError
from runtime_image.server.errors import (
    InternalError,
    LoraNotFound,
    ModelLoadError,
    NotFoundError,
    RequestError,
    RuntimeServerError,
    TooLargeError,
    UnavailableError,
)
from runtime_image.server.formats import encode_b64, output_format
from runtime_image.server.images import decode_image
from runtime_image.server.private import check_ref
from runtime_image.server.runner import Health, Runner
from runtime_image.server.samplers import SAMPLERS
from runtime_image.server.schemas import (
    BatchRequest,
    ExtrasBase,
    ExtrasBatchImagesRequest,
    ExtrasSingleImageRequest,
    Img2ImgRequest,
    OptionsUpdate,
    TrainLoraRequest,
    Txt2ImgRequest,
)
from runtime_image.server.upscalers import BUILTIN, LATENT_MODES

_tracer = trace.get_tracer("easel.runtime")


def _encoded(req: Any, tr: Any, result: Any, model: str) -> dict[str, Any]:
    """The A1111 response (images encoded to base64 PNG/JPEG/WebP) inside an ``encode`` span."""
    with _tracer.start_as_current_span("encode", attributes={"easel.images": len(result.images)}):
        return build_response(req, tr, result, model)


def create_app(runner: Runner) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        yield
        runner.close()

    app = FastAPI(title="Easel diffusion runtime", version="0.1.0", lifespan=lifespan)
    app.state.runner = runner
    _install_error_handlers(app)

    @app.middleware("http")
    async def bind_task(request: Request, call_next: Any) -> Response:
        """FastAPI opens the request's server span itself (a child of the caller's ``traceparent``, the
        agent's stage span); this binds the task id (W3C ``baggage`` from the agent) and the trace id to every
        log line of the request, and puts the task id on the span."""
        task_id = baggage.get_baggage("easel.task_id", propagate.extract(dict(request.headers)))
        if not isinstance(task_id, str):
            response: Response = await call_next(request)
            return response
        trace.get_current_span().set_attribute("easel.task_id", task_id)
        with logjson.log_context(task_id=task_id, trace_id=tracing.current_trace_id()):
            return await call_next(request)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = runner.health()
        ok = body["status"] in (Health.READY, Health.BUSY)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/sdapi/v1/sd-models")
    async def sd_models() -> list[dict[str, Any]]:
        def listing() -> list[dict[str, Any]]:
            out = []
            for e in runner.store.models():
                try:
                    arch: str | None = str(e.arch())
                except ModelLoadError:
                    arch = None  # listed anyway: loading it reports why
                out.append(
                    {
                        "title": e.name,
                        "model_name": e.name,
                        "hash": None,
                        "sha256": None,
                        "filename": str(e.path),
                        "config": None,
                        "format": str(e.format),
                        # Easel: the architecture read from the files (sd15, sdxl, sd15-inpaint, ...).
                        "arch": arch,
                    }
                )
            return out

        return await run_in_threadpool(listing)

    @app.get("/sdapi/v1/upscalers")
    async def upscalers() -> list[dict[str, Any]]:
        entries = await run_in_threadpool(runner.store.upscalers)
        builtins = [
            {"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
            for n in BUILTIN
        ]
        files = [
            {"name": e.name, "model_name": "ESRGAN", "model_path": e.path.name, "model_url": None, "scale": 4}
            for e in entries
        ]
        return builtins + files

    @app.get("/sdapi/v1/latent-upscale-modes")
    async def latent_modes() -> list[dict[str, Any]]:
        return [{"name": n} for n in LATENT_MODES]

    @app.post("/sdapi/v1/extra-single-image")
    async def extra_single(req: ExtrasSingleImageRequest) -> dict[str, Any]:
        image = await run_in_threadpool(decode_image, req.image, "image")
        out = await runner.extras(req, [image])
        encoded = await run_in_threadpool(_encode_extras, req, out)
        return {"html_info": _extras_info(req), "image": encoded[0] if req.show_extras_results else None}

    @app.post("/sdapi/v1/extra-batch-images")
    async def extra_batch(req: ExtrasBatchImagesRequest) -> dict[str, Any]:
        if not req.imageList:
            raise RequestError("imageList", [], "needs at least one image")
        images = [
            await run_in_threadpool(decode_image, f.data, f"imageList.{i}.data")
            for i, f in enumerate(req.imageList)
        ]
        out = await runner.extras(req, images)
        encoded = await run_in_threadpool(_encode_extras, req, out)
        return {"html_info": _extras_info(req), "images": encoded if req.show_extras_results else []}

    @app.get("/controlnet/version")
    async def controlnet_version() -> dict[str, Any]:
        return {"version": controlnet.API_VERSION}

    @app.get("/controlnet/model_list")
    async def controlnet_models(update: bool = True) -> dict[str, Any]:  # noqa: ARG001 - listed live
        entries = await run_in_threadpool(runner.store.controlnets)
        return {"model_list": [e.name for e in entries]}

    @app.get("/controlnet/module_list")
    async def controlnet_modules(alias_names: bool = False) -> dict[str, Any]:  # noqa: ARG001 - no aliases
        return controlnet.module_list()

    @app.get("/sdapi/v1/loras")
    async def loras() -> list[dict[str, Any]]:
        entries = await run_in_threadpool(runner.store.loras)
        return [{"name": e.name, "alias": e.name, "path": str(e.path), "metadata": {}} for e in entries]

    @app.get("/sdapi/v1/samplers")
    async def samplers() -> list[dict[str, Any]]:
        return [{"name": s.name, "aliases": list(s.aliases), "options": {}} for s in SAMPLERS]

    @app.post("/sdapi/v1/refresh-checkpoints")
    @app.post("/sdapi/v1/refresh-loras")
    async def refresh() -> None:
        """Listings read the store on every call; nothing to refresh (the calls exist for A1111 clients)."""

    @app.get("/sdapi/v1/options")
    async def get_options() -> dict[str, Any]:
        return runner.options()

    @app.post("/sdapi/v1/options")
    async def set_options(update: OptionsUpdate) -> dict[str, Any]:
        if update.CLIP_stop_at_last_layers is not None:
            runner.set_clip_stop(update.CLIP_stop_at_last_layers)
        if update.sd_model_checkpoint:
            await runner.select_model(update.sd_model_checkpoint)
        return {**runner.options(), "ignored": sorted(update.model_extra or {})}

    @app.post("/sdapi/v1/txt2img")
    async def txt2img(req: Txt2ImgRequest) -> dict[str, Any]:
        tr, result, model = await runner.generate(req)
        return await run_in_threadpool(_encoded, req, tr, result, model)

    @app.post("/sdapi/v1/img2img")
    async def img2img(req: Img2ImgRequest) -> dict[str, Any]:
        tr, result, model = await runner.generate(req)
        return await run_in_threadpool(_encoded, req, tr, result, model)

    @app.post("/easel/v1/txt2img-batch")
    async def txt2img_batch(req: BatchRequest) -> dict[str, Any]:
        """Several txt2img bodies as one generation (:mod:`runtime_image.server.batch`): ``items`` answers in
        order, each an A1111 txt2img response plus ``"status": 200`` or its own error (status, error, detail,
        field). The call itself fails only for what concerns every item (503 busy, 500)."""
        answers = await runner.generate_batch(req.items)

        def encode() -> list[dict[str, Any]]:
            out = []
            for a in answers:
                if isinstance(a, ItemError):
                    out.append(a.body())
                else:
                    out.append({"status": 200, **build_response(*a)})
            return out

        items = await run_in_threadpool(encode)
        return {"items": items}

    @app.post("/sdapi/v1/interrupt")
    async def interrupt() -> dict[str, Any]:
        return {"interrupted": runner.interrupt()}

    @app.get("/sdapi/v1/progress")
    async def progress() -> dict[str, Any]:
        return runner.progress()

    @app.post("/easel/v1/train-lora")
    async def train_lora(req: TrainLoraRequest) -> dict[str, Any]:
        return await runner.train_lora(req)

    @app.put("/easel/v1/loras/{tenant}/{name}")
    async def put_private_lora(tenant: str, name: str, request: Request) -> JSONResponse:
        """A tenant's private adapter (raw safetensors body): ``loras: [{"name": "<tenant>/<name>"}]``.

        Replaces any earlier copy (the adapter cache reloads it on next use). ``X-Easel-Source-ETag`` is kept
        and reported back, so the uploader can tell whether its copy changed since.
        """
        ref = check_ref(tenant, name)
        limit = runner.private.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLargeError("body", f"{declared} bytes", f"larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise TooLargeError("body", f"over {limit} bytes", f"larger than {limit} bytes")
        etag = request.headers.get("x-easel-source-etag")
        info = await run_in_threadpool(runner.private.put, ref, bytes(body), etag)
        return JSONResponse(info, status_code=200)

    @app.api_route("/easel/v1/loras/{tenant}/{name}", methods=["GET", "HEAD"])
    async def private_lora(tenant: str, name: str, request: Request) -> Response:
        """Existence check: 200 with size/sha256/source_etag (also as headers), else 404 lora_not_found."""
        ref = check_ref(tenant, name)
        info = await run_in_threadpool(runner.private.info, ref)
        if info is None:
            raise LoraNotFound(ref.scoped)
        headers = {
            "ETag": f'"{info["sha256"]}"' if info["sha256"] else "",
            "X-Easel-Size": str(info["size"]),
            "X-Easel-Source-ETag": info["source_etag"] or "",
        }
        headers = {k: v for k, v in headers.items() if v}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        return JSONResponse(info, headers=headers)

    @app.get("/easel/v1/cache")
    async def cache() -> dict[str, Any]:
        return runner.cache_stats()

    return app


def _extras_info(req: ExtrasBase) -> str:
    return f"<p>Postprocess upscaler: {req.upscaler_1}</p>"


def _encode_extras(req: ExtrasBase, images: list[Any]) -> list[str]:
    fmt = output_format(req.output_format, None, None, field="output_format")
    return [encode_b64(img, fmt, None) for img in images]


def _error(status: int, exc: RuntimeServerError, **extra: Any) -> JSONResponse:
    # "detail" is what SD WebUI clients print; "error" is the machine-readable code.
    return JSONResponse({"error": exc.code, "detail": str(exc), **extra}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return JSONResponse(
            {
                "error": "invalid_request",
                "field": first["field"],
                "detail": f"{first['field']}: {first['message']}",
                "errors": errors,
            },
            status_code=422,
        )

    @app.exception_handler(RequestError)
    async def refused(_req: Request, exc: RequestError) -> JSONResponse:
        value = exc.value if isinstance(exc.value, (str, int, float, bool, type(None))) else str(exc.value)
        return _error(
            413 if isinstance(exc, TooLargeError) else 422,
            exc,
            field=exc.field,
            value=value,
            errors=[{"field": exc.field, "message": exc.reason}],
        )

    @app.exception_handler(NotFoundError)
    async def not_found(_req: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, exc, **{exc.kind: exc.name, "available": exc.available})

    @app.exception_handler(UnavailableError)
    async def unavailable(_req: Request, exc: UnavailableError) -> JSONResponse:
        response = _error(503, exc, retryable=True)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(ModelLoadError)
    async def load_failed(_req: Request, exc: ModelLoadError) -> JSONResponse:
        return _error(500, exc, model=exc.model)

    @app.exception_handler(InternalError)
    async def crashed(_req: Request, exc: InternalError) -> JSONResponse:
        # Unknown failures (CUDA out of memory, a pipeline bug): the agent retries, then dead-letters.
        return _error(500, exc)
