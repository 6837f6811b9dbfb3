"""``python -m runtime_image.server``: the runtime's own entry point (the image's ENTRYPOINT).

Flags, or their ``EASEL_*`` environment defaults (the chart and the local supervisor set those):

    --models-dir EASEL_MODELS_DIR (required)    --host EASEL_RUNTIME_HOST (127.0.0.1)
    --port EASEL_RUNTIME_PORT (8080)            --model EASEL_RUNTIME_MODEL (preload before ready)
    --cache-max-bytes EASEL_CACHE_MAX_BYTES     --torch-compile EASEL_TORCH_COMPILE
    --dtype EASEL_RUNTIME_DTYPE (auto)          --max-waiting EASEL_RUNTIME_MAX_WAITING (4)
    --cpu-threads EASEL_RUNTIME_CPU_THREADS     --private-loras-dir EASEL_PRIVATE_LORAS_DIR
    --max-lora-upload-bytes EASEL_MAX_LORA_UPLOAD_BYTES (512MiB)   --log-level EASEL_LOG_LEVEL (info)

``--health`` probes a running server instead (exit 0 when ready or busy: the image's HEALTHCHECK).
Standard library only up to the server itself: the runtime image carries nothing of the rest of the repo.
Exit codes: 0, 1 (health probe failed), 2 (invalid settings, the message names the flag and variable).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings pull in torch: not needed for --health
    from runtime_image.server.settings import RuntimeSettings

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_TRUE = {"1", "true", "yes", "on"}


class SettingsError(ValueError):
    """An invalid flag or variable; the message names both."""


def parse_bytes(value: str) -> int:
    """``8589934592``, ``8G``, ``8GiB`` or ``512MiB`` -> bytes."""
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"size {value!r}: not a size like 8GiB, 512MiB or a byte count")
    unit = (match.group(2) or "").upper()[:1]
    return int(float(match.group(1)) * _UNITS[unit])


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m runtime_image.server", description=__doc__.split("\n")[0])
    p.add_argument(
        "--models-dir",
        default=env("EASEL_MODELS_DIR"),
        help="model store: <name>/, <name>.safetensors, loras/ (EASEL_MODELS_DIR)",
    )
    p.add_argument(
        "--host", default=env("EASEL_RUNTIME_HOST", "127.0.0.1"), help="listen address (EASEL_RUNTIME_HOST)"
    )
    p.add_argument(
        "--port", default=env("EASEL_RUNTIME_PORT", "8080"), help="listen port (EASEL_RUNTIME_PORT)"
    )
    p.add_argument(
        "--model",
        default=env("EASEL_RUNTIME_MODEL"),
        help="preload this model before reporting ready (EASEL_RUNTIME_MODEL)",
    )
    p.add_argument(
        "--cache-max-bytes",
        default=env("EASEL_CACHE_MAX_BYTES"),
        help="model cache budget, e.g. 8GiB (default: half the host memory)",
    )
    p.add_argument(
        "--torch-compile",
        action="store_true",
        default=env("EASEL_TORCH_COMPILE", "").lower() in _TRUE,
        help="torch.compile the UNet (EASEL_TORCH_COMPILE)",
    )
    p.add_argument(
        "--dtype",
        default=env("EASEL_RUNTIME_DTYPE", "auto"),
        help="auto | fp16 | bf16 | fp32 (CPU always fp32)",
    )
    p.add_argument(
        "--max-waiting",
        default=env("EASEL_RUNTIME_MAX_WAITING", "4"),
        help="requests queued behind the running one",
    )
    p.add_argument(
        "--cpu-threads", default=env("EASEL_RUNTIME_CPU_THREADS"), help="torch threads on CPU (default: all)"
    )
    p.add_argument(
        "--private-loras-dir",
        default=env("EASEL_PRIVATE_LORAS_DIR"),
        help="writable dir for tenant-scoped LoRAs uploaded by the agent (default: a temp dir)",
    )
    p.add_argument(
        "--max-lora-upload-bytes",
        default=env("EASEL_MAX_LORA_UPLOAD_BYTES", "512MiB"),
        help="largest private LoRA upload (413 beyond)",
    )
    p.add_argument(
        "--log-level", default=env("EASEL_LOG_LEVEL", "info"), help="debug | info | warning | error"
    )
    p.add_argument("--health", action="store_true", help="probe a running server; exit 0 if ready or busy")
    p.add_argument("--timeout", type=float, default=3.0, help="--health: seconds to wait for the answer")
    return p


def _int(args: argparse.Namespace, flag: str, var: str) -> int | None:
    raw = getattr(args, flag.replace("-", "_"))
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"--{flag}/{var}={raw!r}: not an integer") from None


def _bytes(args: argparse.Namespace, flag: str, var: str) -> int | None:
    raw = getattr(args, flag.replace("-", "_"))
    if raw is None or raw == "":
        return None
    try:
        return parse_bytes(raw)
    except ValueError as exc:
        raise SettingsError(f"--{flag}/{var}: {exc}") from None


def build_settings(args: argparse.Namespace) -> RuntimeSettings:
    """The server's settings from parsed flags; raises :class:`SettingsError` naming the flag."""
    from runtime_image.server.device import DtypePreference
    from runtime_image.server.settings import RuntimeSettings, default_cache_bytes

    if not args.models_dir:
        raise SettingsError("--models-dir/EASEL_MODELS_DIR: required")
    models_dir = Path(args.models_dir)
    if not models_dir.is_dir():
        raise SettingsError(f"--models-dir/EASEL_MODELS_DIR={str(models_dir)!r}: not a directory")
    private = Path(args.private_loras_dir) if args.private_loras_dir else None
    if private is not None:
        try:
            private.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            where = f"--private-loras-dir/EASEL_PRIVATE_LORAS_DIR={str(private)!r}"
            raise SettingsError(f"{where}: {exc}") from None
    try:
        dtype = DtypePreference(str(args.dtype).lower())
    except ValueError:
        where = f"--dtype/EASEL_RUNTIME_DTYPE={args.dtype!r}"
        raise SettingsError(f"{where}: use auto, fp16, bf16 or fp32") from None
    port = _int(args, "port", "EASEL_RUNTIME_PORT")
    max_waiting = _int(args, "max-waiting", "EASEL_RUNTIME_MAX_WAITING")
    cache = _bytes(args, "cache-max-bytes", "EASEL_CACHE_MAX_BYTES")
    upload = _bytes(args, "max-lora-upload-bytes", "EASEL_MAX_LORA_UPLOAD_BYTES")
    try:
        return RuntimeSettings(
            models_dir=models_dir,
            host=args.host,
            port=8080 if port is None else port,
            preload_model=args.model or None,
            cache_max_bytes=cache if cache is not None else default_cache_bytes(),
            torch_compile=bool(args.torch_compile),
            dtype=dtype,
            max_waiting=4 if max_waiting is None else max_waiting,
            cpu_threads=_int(args, "cpu-threads", "EASEL_RUNTIME_CPU_THREADS"),
            private_loras_dir=private,
            max_lora_upload_bytes=upload if upload is not None else 512 * 1024**2,
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def probe(host: str, port: str, timeout: float) -> int:
    """Exit code of the health probe: 0 when /health says ready or busy (HTTP 200), 1 otherwise."""
    # A server bound to every interface is reached on loopback from inside its container.
    target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{target}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            print(response.read().decode())
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"))
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(json.dumps({"error": f"runtime unreachable at {target}:{port}: {exc}"}), file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.health:
        return probe(args.host, args.port, args.timeout)
    try:
        settings = build_settings(args)
    except SettingsError as exc:
        print(f"invalid runtime settings: {exc}", file=sys.stderr)
        return 2
    from runtime_image.server.main import serve

    serve(settings, log_level=str(args.log_level).lower())
    return 0


if __name__ == "__main__":
    sys.exit(main())
