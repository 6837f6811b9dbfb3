"""``easel schema``: export the contract's JSON Schemas (checked against the models in a test)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def schema(
        out: Path = typer.Option(Path("docs/schemas"), help="directory for the *.schema.json"),
    ) -> None:
        """Write the JSON Schemas of the task contract."""
        from easel.contract.schema import write_schemas  # pydantic models: only for this command

        for path in write_schemas(out):
            typer.echo(str(path))
