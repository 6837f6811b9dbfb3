"""``easel trace <task-id>``: the task's waterfall from the spans the local stack recorded."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from easel.cli.errors import CliError

TRACES_DIR = Path(".easel/traces")


def register(app: typer.Typer) -> None:
    @app.command()
    def trace(
        task_id: str = typer.Argument(..., help="the task's id"),
        traces_dir: Path = typer.Option(
            TRACES_DIR, "--dir", help="where the local stack's processes write their spans"
        ),
        as_json: bool = typer.Option(False, "--json", help="the stages as JSON, for tools"),
    ) -> None:
        """The task's stages (API, queue wait, agent, runtime) with start offset, duration and attributes;
        errors in red. Reads the spans `easel local up` records under .easel/traces."""
        from easel.cli.errors import reported
        from easel.traceview import read_spans, render, task_trace

        with reported():
            if not traces_dir.is_dir():
                raise CliError(
                    f"no traces under {traces_dir}",
                    hint="`easel local up` records them there (or pass --dir)",
                    code="not_found",
                    exit_code=1,
                )
            stages = task_trace(read_spans(traces_dir), task_id)
            if not stages:
                raise CliError(
                    f"no spans of task {task_id} under {traces_dir}",
                    hint="`easel tasks` lists your tasks; spans appear once the agent received the task",
                    code="not_found",
                    exit_code=1,
                )
            if as_json:
                typer.echo(json.dumps({"task_id": task_id, "stages": [s.as_json() for s in stages]}))
                return
            from rich.console import Console

            Console(width=160).print(render(stages, task_id))
