"""Client commands: ``easel submit``, ``easel status``, ``easel cancel``, ``easel tasks``.

All sign with SigV4 (standard AWS credential chain) against ``--endpoint``/``EASEL_ENDPOINT``; ``--json``
prints the API's JSON instead of tables. Exit codes: 0 ok, 1 the API refused or a task did not succeed,
2 usage/config problems (no endpoint, no credentials, unreadable --file).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from easel.client import ApiError, ClientConfigError, ClientError, EaselClient, WaitTimeout

ENDPOINT = typer.Option(None, "--endpoint", envvar="EASEL_ENDPOINT", help="API base URL (EASEL_ENDPOINT)")
REGION = typer.Option(None, "--region", help="signing region (default: AWS_REGION, or from the endpoint)")
JSON = typer.Option(False, "--json", help="print JSON")

console = Console()
err_console = Console(stderr=True)


def make_client(endpoint: str | None, region: str | None) -> EaselClient:
    return EaselClient(endpoint, region=region)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn client errors into a one-line message and an exit code."""
    try:
        yield
    except ClientConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except ApiError as exc:
        # The API's messages already start with the field they name.
        where = f" [bold]{exc.field}[/bold]:" if exc.field and not exc.message.startswith(exc.field) else ""
        err_console.print(f"[red]error {exc.status} {exc.code}:[/red]{where} {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    except ClientError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


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


def wait_with_progress(
    client: EaselClient,
    task_ids: list[str],
    *,
    timeout: float,
    poll_seconds: float = 1.0,
    quiet: bool = False,
) -> dict[str, dict[str, Any]]:
    """Poll until all tasks are terminal, with one live spinner line per task (on stderr)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
        disable=quiet,
    ) as progress:
        rows = {tid: progress.add_task(f"{tid}  queued", total=1) for tid in task_ids}

        def update(task: dict[str, Any]) -> None:
            status = task.get("status", "?")
            done = status in ("succeeded", "failed", "canceled")
            colour = {"succeeded": "green", "failed": "red", "canceled": "yellow"}.get(status, "cyan")
            progress.update(
                rows[task["id"]],
                description=f"{task['id']}  [{colour}]{status}[/{colour}]",
                completed=1 if done else 0,
            )

        result = client.wait(task_ids, timeout=timeout, poll_seconds=poll_seconds, on_update=update)
    return result if isinstance(result, dict) and all(isinstance(v, dict) for v in result.values()) else {}


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


def register(app: typer.Typer) -> None:
    """Add the client commands (submit, status, cancel, tasks) to the root app."""

    @app.command()
    def submit(
        model: str = typer.Option(None, "--model", "-m", help="model name (see `easel models`)"),
        prompt: str = typer.Option(None, "--prompt", "-p"),
        negative_prompt: str = typer.Option(None, "--negative-prompt"),
        task_type: str = typer.Option(
            None, "--task-type", help="text-to-image | image-to-image | train-lora"
        ),
        steps: int = typer.Option(None, "--steps"),
        width: int = typer.Option(None, "--width"),
        height: int = typer.Option(None, "--height"),
        seed: int = typer.Option(None, "--seed"),
        cfg_scale: float = typer.Option(None, "--cfg-scale"),
        sampler: str = typer.Option(None, "--sampler"),
        batch_size: int = typer.Option(None, "--batch-size"),
        init_image: str = typer.Option(None, "--init-image", help="s3:// URI of the init image"),
        strength: float = typer.Option(None, "--strength", help="denoising_strength (image-to-image)"),
        priority: str = typer.Option(None, "--priority", help="high | normal | low"),
        task_id: str = typer.Option(None, "--id", help="client id (makes the submit idempotent)"),
        file: Path = typer.Option(None, "--file", "-f", help="request JSON; flags override its fields"),
        wait: bool = typer.Option(False, "--wait", "-w", help="show progress until the task is terminal"),
        out: Path = typer.Option(None, "--out", "-o", help="save output images here (implies --wait)"),
        timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait"),
        endpoint: str = ENDPOINT,
        region: str = REGION,
        as_json: bool = JSON,
    ) -> None:
        """Submit a task (from flags or --file JSON)."""
        base = None
        if file is not None:
            try:
                base = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                err_console.print(f"[red]error:[/red] --file {file}: {exc}")
                raise typer.Exit(2) from None
            if not isinstance(base, dict):
                err_console.print(f"[red]error:[/red] --file {file}: must hold a JSON object")
                raise typer.Exit(2)
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
            "init_images": [init_image] if init_image else None,
            "denoising_strength": strength,
        }
        request = build_request(
            base, model=model, task_type=task_type, priority=priority, task_id=task_id, inputs=inputs
        )
        with api_errors():
            client = make_client(endpoint, region)
            task = client.submit(request)
            if wait or out is not None:
                started = time.monotonic()
                task = wait_with_progress(client, [task["id"]], timeout=timeout, quiet=as_json)[task["id"]]
                if not as_json:
                    err_console.print(f"finished in {time.monotonic() - started:.1f}s")
                if out is not None and task.get("status") == "succeeded":
                    for path in download_outputs(client, task, out):
                        err_console.print(f"saved {path}")
            print_task(task, as_json)
            if (wait or out is not None) and task.get("status") != "succeeded":
                raise typer.Exit(1)

    @app.command()
    def status(task_id: str, endpoint: str = ENDPOINT, region: str = REGION, as_json: bool = JSON) -> None:
        """Show a task."""
        with api_errors():
            print_task(make_client(endpoint, region).get(task_id), as_json)

    @app.command()
    def cancel(task_id: str, endpoint: str = ENDPOINT, region: str = REGION, as_json: bool = JSON) -> None:
        """Cancel a queued or processing task."""
        with api_errors():
            print_task(make_client(endpoint, region).cancel(task_id), as_json)

    @app.command()
    def tasks(
        status: str = typer.Option(None, "--status", help="only tasks in this status"),
        limit: int = typer.Option(None, "--limit", help="page size"),
        next_page: str = typer.Option(None, "--next", help="cursor printed by the previous page"),
        endpoint: str = ENDPOINT,
        region: str = REGION,
        as_json: bool = JSON,
    ) -> None:
        """List your tasks, newest first."""
        with api_errors():
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


__all__ = ["WaitTimeout", "build_request", "download_outputs", "register", "wait_with_progress"]
