"""The ``easel`` command line. Subcommands live in small modules; heavy imports happen inside commands."""

from __future__ import annotations

import typer

from easel.cli import (
    bench_cmds,
    client_cmds,
    costs_cmds,
    deploy_cmds,
    local_cmds,
    models_cmds,
    plan_cmds,
    runtime_cmds,
    schema_cmds,
    webhooks_cmds,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Easel: Stable Diffusion on AWS.")
client_cmds.register(app)  # submit, status, cancel, tasks
schema_cmds.register(app)  # schema
costs_cmds.register(app)  # costs
plan_cmds.register(app)  # plan (simpy/matplotlib imported inside, from the `plan` extra)
app.add_typer(models_cmds.app, name="models", help="List the models (API) or make a tiny local model.")
app.add_typer(local_cmds.app, name="local", help="Run the whole pipeline on this machine.")
app.add_typer(runtime_cmds.app, name="runtime", help="The diffusion runtime server.")
app.add_typer(bench_cmds.app, name="bench", help="Benchmarks (results go to docs/benchmarks.md).")
app.add_typer(webhooks_cmds.app, name="webhooks", help="Webhook signing secrets for tenants.")
app.add_typer(deploy_cmds.app, name="deploy", help="Check a deployed service (after cdk deploy).")


def main() -> None:
    app()
