"""The ``easel`` command line. Subcommands live in small modules; heavy imports happen inside commands.

:func:`main` runs the app so that no traceback reaches a user: click's usage errors and every known failure
become one line (or one JSON document under ``--json``) and an exit code; see :mod:`easel.cli.errors`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from typer._click import exceptions as cx

from easel.cli import (
    bench_cmds,
    client_cmds,
    costs_cmds,
    deploy_cmds,
    keys_cmds,
    local_cmds,
    models_cmds,
    plan_cmds,
    runtime_cmds,
    schema_cmds,
    trace_cmds,
    webhooks_cmds,
)

# Plain (click) help: flags show no type, every option its default; -h works everywhere.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Easel: Stable Diffusion on AWS.",
)


def _version(value: bool) -> None:
    if value:
        from easel import __version__

        typer.echo(f"easel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="print the version and exit"
    ),
) -> None:
    """Easel: Stable Diffusion on AWS. Start with `easel local up`, then `easel submit -h`."""


client_cmds.register(app)  # submit, status, cancel, tasks
schema_cmds.register(app)  # schema
costs_cmds.register(app)  # costs
trace_cmds.register(app)  # trace (the local stack's spans of one task)
plan_cmds.register(app)  # plan (simpy/matplotlib imported inside, from the `plan` extra)
app.add_typer(models_cmds.app, name="models", help="List the models (API) or make a tiny local model.")
app.add_typer(local_cmds.app, name="local", help="Run the whole pipeline on this machine.")
app.add_typer(runtime_cmds.app, name="runtime", help="The diffusion runtime server.")
app.add_typer(bench_cmds.app, name="bench", help="Benchmarks (results go to docs/benchmarks.md).")
app.add_typer(webhooks_cmds.app, name="webhooks", help="Webhook signing secrets for tenants.")
app.add_typer(keys_cmds.app, name="keys", help="API keys of tenants (x-api-key): create, list, revoke.")
app.add_typer(deploy_cmds.app, name="deploy", help="Check a deployed service (after cdk deploy).")


def run(args: Sequence[str]) -> int:
    """Run the CLI on ``args``; returns the exit code. Nothing escapes as a traceback (unless EASEL_DEBUG)."""
    from easel.cli.errors import CliError, debug, describe, emit, json_wanted, unexpected, usage_error

    command = typer.main.get_command(app)
    try:
        code = command.main(args=list(args), prog_name="easel", standalone_mode=False)
    except cx.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 0
    except cx.UsageError as exc:
        emit(usage_error(exc), as_json=json_wanted(args))
        return 2
    except cx.ClickException as exc:  # e.g. a FileError from a click type
        emit(CliError(exc.format_message(), exit_code=exc.exit_code), as_json=json_wanted(args))
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:
        if debug():
            raise
        error = describe(exc) or unexpected(exc)
        emit(error, as_json=json_wanted(args))
        return error.exit_code
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
