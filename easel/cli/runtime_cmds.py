"""``easel runtime serve|health``: thin launchers of the runtime's own entry point,
``python -m runtime_image.server`` (same flags, same ``EASEL_*`` variables; see its module docstring).

The runtime image runs ``python -m runtime_image.server`` itself and carries no Easel CLI; these commands
exist for a developer's checkout.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASS_THROUGH)
def serve(ctx: typer.Context) -> None:
    """Serve the SD WebUI API subset (and /health) from a model store: ``python -m runtime_image.server``
    with these arguments (``--help`` lists them)."""
    from runtime_image.server.__main__ import main

    raise typer.Exit(main(ctx.args))


@app.command(context_settings=_PASS_THROUGH)
def health(ctx: typer.Context) -> None:
    """Exit 0 when the runtime reports ready or busy, 1 otherwise (``--host``, ``--port``, ``--timeout``)."""
    from runtime_image.server.__main__ import main

    raise typer.Exit(main(["--health", *ctx.args]))
