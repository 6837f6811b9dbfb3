"""Placeholder: filled in by its issue."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the client commands (submit, status, cancel, tasks, models) to the root app."""
