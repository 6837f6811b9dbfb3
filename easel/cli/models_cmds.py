"""``easel models``: list the models from the API; ``easel models make-tiny DIR``: a tiny local model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from easel.cli.client_cmds import ENDPOINT, JSON, REGION, api_errors, console, make_client

app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


@app.callback()
def models(ctx: typer.Context, endpoint: str = ENDPOINT, region: str = REGION, as_json: bool = JSON) -> None:
    """List the models the API serves (GET /v1/models), with the request limits."""
    if ctx.invoked_subcommand is not None:
        return
    with api_errors():
        data = make_client(endpoint, region).models()
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table("model", "runtime", "task types")
    for m in data.get("models", []):
        table.add_row(m["name"], m["runtime"], ", ".join(m.get("task_types", [])))
    console.print(table)
    limits = data.get("limits") or {}
    if limits:
        console.print("limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()))


# Kept here (not imported from the runtime) so `--help` does not import torch; tests check both agree.
TINY_ARCHS = (
    "sd15",
    "sd15-inpaint",
    "sdxl",
    "sdxl-inpaint",
    "sdxl-refiner",
    "controlnet-sd15",
    "controlnet-sdxl",
    "esrgan",
)


@app.command("make-tiny")
def make_tiny(
    directory: Path = typer.Argument(..., help="where to write the model (a .safetensors file for esrgan)"),
    arch: str = typer.Option("sd15", "--arch", help=f"architecture: {', '.join(TINY_ARCHS)}"),
    seed: int = typer.Option(0, "--seed", help="seed of the random weights"),
) -> None:
    """Write a tiny random-weight model of one architecture (CPU-sized, for local runs and tests)."""
    if arch not in TINY_ARCHS:
        console.print(f"[red]--arch {arch!r}: use one of {', '.join(TINY_ARCHS)}[/red]")
        raise typer.Exit(2)
    from runtime_image.server.tiny import make_tiny as build  # torch/diffusers: only for this command

    build(Path(directory), arch, seed=seed)
    console.print(f"wrote {directory} ({arch})")
