"""``easel runtime serve``: the diffusion runtime server (the container entrypoint runs this command)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(value: str) -> int:
    """``8589934592``, ``8G``, ``8GiB`` or ``512MiB`` -> bytes."""
    match = _SIZE.match(value)
    if not match:
        raise typer.BadParameter(f"size {value!r}: not a size like 8GiB, 512MiB or a byte count")
    unit = (match.group(2) or "").upper()[:1]
    return int(float(match.group(1)) * _UNITS[unit])


@app.command()
def serve(
    models_dir: Annotated[
        Path, typer.Option(envvar="EASEL_MODELS_DIR", help="model store: <name>/, <name>.safetensors, loras/")
    ],
    host: Annotated[str, typer.Option(envvar="EASEL_RUNTIME_HOST", help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="EASEL_RUNTIME_PORT", help="listen port")] = 8080,
    model: Annotated[
        str | None,
        typer.Option(envvar="EASEL_RUNTIME_MODEL", help="preload this model before reporting ready"),
    ] = None,
    cache_max_bytes: Annotated[
        str | None,
        typer.Option(
            envvar="EASEL_CACHE_MAX_BYTES", help="model cache budget (default: half the host memory)"
        ),
    ] = None,
    torch_compile: Annotated[
        bool, typer.Option(envvar="EASEL_TORCH_COMPILE", help="torch.compile the UNet")
    ] = False,
    dtype: Annotated[
        str, typer.Option(envvar="EASEL_RUNTIME_DTYPE", help="auto | fp16 | bf16 | fp32 (CPU always fp32)")
    ] = "auto",
    max_waiting: Annotated[
        int, typer.Option(envvar="EASEL_RUNTIME_MAX_WAITING", help="requests queued behind the running one")
    ] = 4,
    cpu_threads: Annotated[
        int | None,
        typer.Option(envvar="EASEL_RUNTIME_CPU_THREADS", help="torch threads on CPU (default: all)"),
    ] = None,
    private_loras_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="EASEL_PRIVATE_LORAS_DIR",
            help="writable dir for tenant-scoped LoRAs uploaded by the agent (default: a temp dir)",
        ),
    ] = None,
    max_lora_upload_bytes: Annotated[
        str,
        typer.Option(envvar="EASEL_MAX_LORA_UPLOAD_BYTES", help="largest private LoRA upload (413 beyond)"),
    ] = "512MiB",
    log_level: Annotated[
        str, typer.Option(envvar="EASEL_LOG_LEVEL", help="debug | info | warning | error")
    ] = "info",
) -> None:
    """Serve the SD WebUI API subset (and /health) from the models in MODELS_DIR."""
    from runtime_image.server.device import DtypePreference
    from runtime_image.server.main import serve as run
    from runtime_image.server.settings import RuntimeSettings, default_cache_bytes

    if not models_dir.is_dir():
        raise typer.BadParameter(f"--models-dir/EASEL_MODELS_DIR={str(models_dir)!r}: not a directory")
    if private_loras_dir is not None:
        try:
            private_loras_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise typer.BadParameter(
                f"--private-loras-dir/EASEL_PRIVATE_LORAS_DIR={str(private_loras_dir)!r}: {exc}"
            ) from None
    try:
        preference = DtypePreference(dtype.lower())
    except ValueError:
        raise typer.BadParameter(
            f"--dtype/EASEL_RUNTIME_DTYPE={dtype!r}: use auto, fp16, bf16 or fp32"
        ) from None
    try:
        settings = RuntimeSettings(
            models_dir=models_dir,
            host=host,
            port=port,
            preload_model=model,
            cache_max_bytes=parse_bytes(cache_max_bytes) if cache_max_bytes else default_cache_bytes(),
            torch_compile=torch_compile,
            dtype=preference,
            max_waiting=max_waiting,
            cpu_threads=cpu_threads,
            private_loras_dir=private_loras_dir,
            max_lora_upload_bytes=parse_bytes(max_lora_upload_bytes),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    run(settings, log_level=log_level.lower())


@app.command()
def health(
    host: Annotated[
        str, typer.Option(envvar="EASEL_RUNTIME_HOST", help="the runtime's address")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="EASEL_RUNTIME_PORT", help="the runtime's port")] = 8080,
    timeout: Annotated[float, typer.Option(help="seconds to wait for /health")] = 3.0,
) -> None:
    """Exit 0 when the runtime reports ready or busy, 1 otherwise (container HEALTHCHECK, exec probes)."""
    import httpx

    # A server bound to every interface is reached on loopback from inside its container.
    target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        response = httpx.get(f"http://{target}:{port}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        typer.echo(f"runtime unreachable at {target}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(response.text)
    raise typer.Exit(0 if response.status_code == 200 else 1)
