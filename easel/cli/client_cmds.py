"""Client commands: ``easel submit``, ``easel status``, ``easel cancel``, ``easel tasks``.

All sign with SigV4 (standard AWS credential chain) against ``--endpoint``/``EASEL_ENDPOINT``, or send
``EASEL_API_KEY`` as ``x-api-key`` when it is set (the key API, docs/api.md "API keys"); ``--json``
prints the API's JSON instead of tables. Exit codes: 0 ok, 1 the API refused or a task did not succeed,
2 usage/config problems (no endpoint, no credentials, unreadable --file), 130 interrupted (Ctrl-C).
``--wait`` renders each task's progress (:mod:`easel.cli.progress`); an interrupted or timed-out wait
prints the commands that follow or cancel the task, which keeps running.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from easel.cli.errors import CliError, reported, usage
from easel.cli.progress import TERMINAL

if TYPE_CHECKING:  # the SDK (botocore, httpx) is imported by the commands that call the API
    from easel.client import EaselClient

ENDPOINT = typer.Option(
    None, "--endpoint", envvar="EASEL_ENDPOINT", help="API base URL  [default: $EASEL_ENDPOINT]"
)
REGION = typer.Option(
    None, "--region", help="signing region  [default: $AWS_REGION, else the endpoint's region]"
)
JSON = typer.Option(False, "--json", help='print JSON (errors too, as {"error": ...})')

console = Console()
err_console = Console(stderr=True)
# Kept under its old name for the commands that import it.
api_errors = reported


def make_client(endpoint: str | None, region: str | None) -> EaselClient:
    from easel.client import EaselClient

    return EaselClient(endpoint, region=region)


def build_request(
    base: dict[str, Any] | None,
    *,
    model: str | None = None,
    task_type: str | None = None,
    priority: str | None = None,
    task_id: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A request from a --file JSON (optional) with the flags given on the command line laid over it."""
    request: dict[str, Any] = dict(base or {})
    merged_input = dict(request.get("input") or {})
    merged_input.update({k: v for k, v in (inputs or {}).items() if v is not None})
    if merged_input:
        request["input"] = merged_input
    for key, value in (("model", model), ("priority", priority), ("id", task_id), ("task_type", task_type)):
        if value is not None:
            request[key] = value
    if "task_type" not in request:
        request["task_type"] = "image-to-image" if merged_input.get("init_images") else "text-to-image"
    return request


def follow_hint(task_ids: list[str], out: Path | None = None) -> str:
    """The commands that pick up (or stop) tasks left running."""
    more = f" --out {out}" if out is not None else ""
    follow = "; ".join(f"easel status {tid} --wait{more}" for tid in task_ids)
    cancel = "; ".join(f"easel cancel {tid}" for tid in task_ids)
    return f"it keeps running: follow it with `{follow}`, or stop it with `{cancel}`"


_UNIT_NUMBERS = {"weight", "guidance_start", "guidance_end", "threshold_a", "threshold_b"}
_UNIT_INTS = {"processor_res"}
_UNIT_BOOLS = {"pixel_perfect", "enabled"}


def parse_unit(spec: str) -> dict[str, Any]:
    """``model=cn,image=s3://b/k.png,weight=0.8`` -> a ControlNet unit (numbers and booleans typed)."""
    unit: dict[str, Any] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{part!r} is not key=value")
        if key in _UNIT_NUMBERS:
            unit[key] = float(value)
        elif key in _UNIT_INTS:
            unit[key] = int(value)
        elif key in _UNIT_BOOLS:
            unit[key] = value.strip().lower() in ("1", "true", "yes")
        else:
            unit[key] = value.strip()
    if "model" not in unit or "image" not in unit:
        raise ValueError(f"{spec!r}: needs model= and image=")
    return unit


def wait_with_progress(
    client: EaselClient,
    task_ids: list[str],
    *,
    timeout: float,
    poll_seconds: float = 1.0,
    quiet: bool = False,
    as_json: bool = False,
    out: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Poll until all tasks are terminal, showing their progress (on stderr; JSON lines with ``as_json``).

    Ctrl-C (exit 130) and ``timeout`` (exit 1) end the wait, not the tasks: the error names the commands
    that follow or cancel them.
    """
    from easel.cli.progress import render
    from easel.client import WaitTimeout

    def watch(on_update: Any) -> dict[str, Any]:
        return dict(client.wait(task_ids, timeout=timeout, poll_seconds=poll_seconds, on_update=on_update))

    try:
        return render(task_ids, watch, as_json=as_json, quiet=quiet)
    except KeyboardInterrupt:
        raise CliError(
            "stopped waiting", hint=follow_hint(task_ids, out), code="interrupted", exit_code=130
        ) from None
    except WaitTimeout as exc:
        pending = [tid for tid in task_ids if exc.tasks.get(tid, {}).get("status") not in TERMINAL]
        raise CliError(
            f"still running after --timeout {timeout:g}s",
            hint=follow_hint(pending or task_ids, out),
            code="timeout",
            exit_code=1,
        ) from None


def download_outputs(client: EaselClient, task: dict[str, Any], out_dir: Path) -> list[Path]:
    """Save a succeeded task's images (via its presigned URLs) as ``<out>/<task id>-<n>.png``."""
    output = task.get("output") or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, url in enumerate(output.get("urls") or []):
        images = output.get("images") or []
        suffix = Path(images[index]).suffix if index < len(images) else ".png"
        path = out_dir / f"{task['id']}-{index}{suffix or '.png'}"
        path.write_bytes(client.download(url))
        paths.append(path)
    return paths


def print_task(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(task, indent=2) + "\n")
        return
    table = Table(show_header=False, box=None)
    for key in ("id", "status", "task_type", "model", "runtime", "priority", "created_at", "completed_at"):
        if task.get(key) is not None:
            table.add_row(f"[bold]{key}[/bold]", str(task[key]))
    if task.get("error"):
        table.add_row("[bold]error[/bold]", f"{task['error'].get('code')}: {task['error'].get('message')}")
    for url in (task.get("output") or {}).get("urls") or []:
        table.add_row("[bold]output[/bold]", url)
    console.print(table)


TASK_TYPES = ("text-to-image", "image-to-image", "train-lora", "upscale")
PRIORITIES = ("high", "normal", "low")
WAIT = typer.Option(False, "--wait", "-w", help="show progress until the task is terminal")
OUT = typer.Option(None, "--out", "-o", help="save the images in this folder (implies --wait)")
TIMEOUT = typer.Option(900.0, "--timeout", help="seconds to wait (the task itself keeps running)")
POLL = typer.Option(1.0, "--poll", help="seconds between progress polls", hidden=True)


def _read_file(file: Path) -> dict[str, Any]:
    try:
        base = json.loads(file.read_text())
    except FileNotFoundError:
        usage(f"--file {file}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        usage(f"--file {file}: cannot read it ({exc})")
    except ValueError as exc:
        usage(f"--file {file}: not JSON ({exc})", hint="the file holds a task request, see docs/api.md")
    if not isinstance(base, dict):
        usage(f"--file {file}: must hold a JSON object (a task request)", hint="see docs/api.md")
    return base


def _image_ref(flag: str, value: str) -> str:
    """An image the API can fetch (s3:// or https://); a local file is refused before anything is sent."""
    if value.startswith(("s3://", "https://")):
        return value
    where = "a local file" if Path(value).exists() else "not an s3:// or https:// URL"
    return usage(
        f"{flag} {value}: {where}",
        hint="upload it first (e.g. `aws s3 cp FILE s3://<outputs bucket>/tenants/<tenant>/inputs/`) "
        "and pass its s3:// URI",
    )


def _check_request(request: dict[str, Any]) -> None:
    """Name missing or malformed inputs by their flag, before anything is sent."""
    task_type = request.get("task_type")
    if task_type not in TASK_TYPES:
        usage(f"--task-type '{task_type}' is not one of {', '.join(TASK_TYPES)}")
    if request.get("priority") is not None and request["priority"] not in PRIORITIES:
        usage(f"--priority '{request['priority']}' is not one of {', '.join(PRIORITIES)}")
    if not request.get("model"):
        usage("--model is required", hint="`easel models` lists the models")
    data = request.get("input") or {}
    if task_type == "train-lora":
        if not data.get("images"):
            usage("train-lora needs --file with input.images", hint="see docs/api.md (train-lora)")
        return
    if task_type == "upscale":
        if not data.get("image"):
            usage(
                "--upscale is required for upscale", hint="e.g. --upscale s3://<bucket>/tenants/<you>/in.png"
            )
        return
    if not str(data.get("prompt") or "").strip():
        usage("--prompt is required", hint='e.g. --prompt "a lighthouse at dawn"')
    if task_type == "image-to-image" and not data.get("init_images"):
        usage("--init-image is required for image-to-image")


def register(app: typer.Typer) -> None:
    """Add the client commands (submit, status, cancel, tasks) to the root app."""

    @app.command()
    def submit(
        model: str = typer.Option(None, "--model", "-m", help="model name (required; `easel models`)"),
        prompt: str = typer.Option(None, "--prompt", "-p", help="what to draw (required)"),
        negative_prompt: str = typer.Option(None, "--negative-prompt", help="what to avoid  [default: none]"),
        task_type: str = typer.Option(
            None,
            "--task-type",
            help="text-to-image | image-to-image | train-lora | upscale  "
            "[default: upscale with --upscale, image-to-image with --init-image, else text-to-image]",
        ),
        steps: int = typer.Option(None, "--steps", help="sampling steps  [default: 20]"),
        width: int = typer.Option(None, "--width", help="pixels, a multiple of 8  [default: 512]"),
        height: int = typer.Option(None, "--height", help="pixels, a multiple of 8  [default: 512]"),
        seed: int = typer.Option(None, "--seed", help="-1 picks one at random  [default: -1]"),
        cfg_scale: float = typer.Option(None, "--cfg-scale", help="prompt guidance  [default: 7.0]"),
        sampler: str = typer.Option(None, "--sampler", help="sampler name  [default: Euler a]"),
        batch_size: int = typer.Option(None, "--batch-size", help="images per task  [default: 1]"),
        init_image: str = typer.Option(
            None, "--init-image", help="image-to-image source: s3:// URI or https:// URL  [default: none]"
        ),
        strength: float = typer.Option(
            None, "--strength", help="denoising_strength for image-to-image, 0..1  [default: 0.75]"
        ),
        mask: str = typer.Option(
            None, "--mask", help="inpainting mask, s3:// or https:// (white = repaint)  [default: none]"
        ),
        mask_blur: int = typer.Option(None, "--mask-blur", help="mask blur in pixels  [default: 4]"),
        inpainting_fill: int = typer.Option(
            None, "--inpainting-fill", help="0 fill, 1 original, 2 latent noise, 3 nothing  [default: 1]"
        ),
        hires: bool = typer.Option(False, "--hires", help="enable the hires fix (text-to-image)"),
        hr_scale: float = typer.Option(None, "--hr-scale", help="hires upscale factor 1..4  [default: 2]"),
        hr_upscaler: str = typer.Option(
            None, "--hr-upscaler", help="Latent, Lanczos, ... or an ESRGAN name  [default: Latent]"
        ),
        hr_steps: int = typer.Option(
            None, "--hr-steps", help="hires second pass steps (0: same as --steps)  [default: 0]"
        ),
        controlnet: list[str] = typer.Option(
            None,
            "--controlnet",
            help="a ControlNet unit as key=value pairs: model=NAME,image=s3://...[,module=canny,weight=0.8,"
            "guidance_start=0,guidance_end=1,control_mode=...] (repeat for several units)",
        ),
        upscale: str = typer.Option(
            None, "--upscale", help="image to upscale (task upscale): s3:// URI or https:// URL"
        ),
        upscaler: str = typer.Option(
            None, "--upscaler", help="upscale: None, Lanczos, Nearest or a model  [default: Lanczos]"
        ),
        scale: float = typer.Option(None, "--scale", help="upscale factor (upscaling_resize)  [default: 2]"),
        output_format: str = typer.Option(None, "--format", help="png | jpeg | webp  [default: png]"),
        quality: int = typer.Option(None, "--quality", help="jpeg/webp quality 1..100  [default: 80]"),
        priority: str = typer.Option(None, "--priority", help="high | normal | low  [default: normal]"),
        task_id: str = typer.Option(
            None, "--id", help="your id for the task (repeating the submit returns the same task)"
        ),
        file: Path = typer.Option(
            None, "--file", "-f", help="a task request as JSON (docs/api.md); flags override its fields"
        ),
        wait: bool = WAIT,
        out: Path = OUT,
        timeout: float = TIMEOUT,
        poll: float = POLL,
        endpoint: str = ENDPOINT,
        region: str = REGION,
        as_json: bool = JSON,
    ) -> None:
        """Submit a task, e.g. `easel submit -m sd15 -p "a dog" --wait --out outputs`."""
        with reported():
            base = _read_file(file) if file is not None else None
            formats = {"output_format": output_format, "jpeg_quality": quality}
            inputs: dict[str, Any]
            if upscale is not None:
                task_type = task_type or "upscale"
                inputs = {
                    "image": _image_ref("--upscale", upscale),
                    "upscaler": upscaler,
                    "upscaling_resize": scale,
                    **formats,
                }
            else:
                try:
                    units = [parse_unit(spec) for spec in controlnet or []]
                except ValueError as exc:
                    usage(f"--controlnet: {exc}")
                for unit in units:
                    unit["image"] = _image_ref("--controlnet image=", unit["image"])
                inputs = {
                    "prompt": prompt,
                    "negative_prompt": negative_prompt,
                    "steps": steps,
                    "width": width,
                    "height": height,
                    "seed": seed,
                    "cfg_scale": cfg_scale,
                    "sampler_name": sampler,
                    "batch_size": batch_size,
                    "init_images": [_image_ref("--init-image", init_image)] if init_image else None,
                    "denoising_strength": strength,
                    "mask": _image_ref("--mask", mask) if mask else None,
                    "mask_blur": mask_blur,
                    "inpainting_fill": inpainting_fill,
                    "enable_hr": True if hires else None,
                    "hr_scale": hr_scale,
                    "hr_upscaler": hr_upscaler,
                    "hr_second_pass_steps": hr_steps,
                    "controlnet": units or None,
                    **formats,
                }
            request = build_request(
                base, model=model, task_type=task_type, priority=priority, task_id=task_id, inputs=inputs
            )
            _check_request(request)
            client = make_client(endpoint, region)
            task = client.submit(request)
            if wait or out is not None:
                if not as_json:
                    err_console.print(f"submitted {task['id']}", highlight=False)
                task = _wait_one(client, task["id"], timeout=timeout, poll=poll, out=out, as_json=as_json)
            print_task(task, as_json)
            if (wait or out is not None) and task.get("status") != "succeeded":
                raise typer.Exit(1)

    @app.command()
    def status(
        task_id: str = typer.Argument(..., help="the task id (from `easel submit` or `easel tasks`)"),
        wait: bool = WAIT,
        out: Path = OUT,
        timeout: float = TIMEOUT,
        poll: float = POLL,
        endpoint: str = ENDPOINT,
        region: str = REGION,
        as_json: bool = JSON,
    ) -> None:
        """Show a task; --wait follows it (again) until it ends, --out saves its images."""
        with reported():
            client = make_client(endpoint, region)
            if wait or out is not None:
                task = _wait_one(client, task_id, timeout=timeout, poll=poll, out=out, as_json=as_json)
            else:
                task = client.get(task_id)
            print_task(task, as_json)
            if (wait or out is not None) and task.get("status") != "succeeded":
                raise typer.Exit(1)

    @app.command()
    def cancel(
        task_id: str = typer.Argument(..., help="the task id"),
        endpoint: str = ENDPOINT,
        region: str = REGION,
        as_json: bool = JSON,
    ) -> None:
        """Cancel a queued or processing task."""
        with reported():
            print_task(make_client(endpoint, region).cancel(task_id), as_json)

    @app.command()
    def tasks(
        status: str = typer.Option(None, "--status", help="only tasks in this status  [default: all]"),
        limit: int = typer.Option(None, "--limit", help="page size  [default: the API's, 20]"),
        next_page: str = typer.Option(None, "--next", help="cursor printed by the previous page"),
        endpoint: str = ENDPOINT,
        region: str = REGION,
        as_json: bool = JSON,
    ) -> None:
        """List your tasks, newest first."""
        with reported():
            page = make_client(endpoint, region).list(status=status, limit=limit, next=next_page)
        if as_json:
            sys.stdout.write(json.dumps(page, indent=2) + "\n")
            return
        table = Table("id", "status", "task_type", "model", "created_at")
        table.columns[0].no_wrap = True
        for task in page.get("tasks", []):
            table.add_row(task["id"], task["status"], task["task_type"], task["model"], task["created_at"])
        console.print(table)
        if page.get("next"):
            console.print(f"more: easel tasks --next {page['next']}")


def _wait_one(
    client: EaselClient, task_id: str, *, timeout: float, poll: float, out: Path | None, as_json: bool
) -> dict[str, Any]:
    started = time.monotonic()
    task = wait_with_progress(
        client, [task_id], timeout=timeout, poll_seconds=poll, as_json=as_json, out=out
    )[task_id]
    if not as_json:
        err_console.print(f"finished in {time.monotonic() - started:.1f}s", highlight=False)
    if out is not None and task.get("status") == "succeeded":
        for path in download_outputs(client, task, out):
            if not as_json:
                err_console.print(f"saved {path}", highlight=False)
    return task


__all__ = ["build_request", "download_outputs", "register", "wait_with_progress"]
