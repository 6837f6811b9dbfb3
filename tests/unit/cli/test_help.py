"""Every option of every command says what it is for; -h and --version work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from easel import __version__
from easel.cli import app


def _options(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
    for name, sub in getattr(command, "commands", {}).items():
        yield from _options(sub, [*path, name])
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            yield " ".join(path), param


def test_every_option_has_help_text() -> None:
    missing = [(path, p.opts) for path, p in _options(typer.main.get_command(app), ["easel"]) if not p.help]
    assert missing == []


def test_version_and_short_help() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"easel {__version__}"
    shown = runner.invoke(app, ["submit", "-h"])
    assert shown.exit_code == 0
    assert "--prompt" in shown.stdout and "[default: 900.0]" in shown.stdout
    assert "<bool>" not in shown.stdout  # flags show no type
    assert runner.invoke(app, ["local", "up", "-h"]).exit_code == 0
