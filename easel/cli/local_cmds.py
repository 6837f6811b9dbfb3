"""``easel local up|down|env|demo``: the whole pipeline on this machine (moto, signed gateway, workers).

``up`` refuses to start beside a running stack (it names where that one runs) and leaves other state files
alone; the tenants' keys stay the same across restarts (``.easel/credentials.json``, 0600) unless
``--rotate-credentials``; ``env`` prints the ``export`` lines to ``eval``. The local model has random
weights, so its images are noise by design (:data:`NOISE_NOTE`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from easel.cli.client_cmds import console, download_outputs, err_console, print_task, wait_with_progress
from easel.cli.errors import CliError, reported

if TYPE_CHECKING:
    from infra.local.stack import LocalStack, StackOptions


def _quiet_libraries() -> None:
    """Local mode runs on CPU without torchvision: transformers' advisories about it are noise here."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


app = typer.Typer(no_args_is_help=True, callback=_quiet_libraries)

CONFIG = typer.Option(Path("config.yaml"), "--config", help="the Easel config")
STATE = typer.Option(Path(".easel/local.json"), "--state", help="state file (endpoint, credentials, pids)")
MODELS_DIR = typer.Option(Path(".easel/models"), "--models-dir", help="model store of the local runtimes")
ROTATE = typer.Option(
    False, "--rotate-credentials", help="mint new local keys for every tenant (default: keep the last ones)"
)
NOISE_NOTE = (
    "The local models are tiny and random (no weights are downloaded), so their images are noise by "
    "design. For real images put a diffusers model folder (model_index.json, unet/, vae/, text_encoder/, "
    "tokenizer/, scheduler/) under --models-dir/<models[].path> (see docs/deploy.md, Models and weights)."
)


def _stop_event() -> threading.Event:
    """Set on Ctrl-C / SIGTERM, so the stack shuts down in order and removes its state file."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _options(
    config: Path,
    port: int,
    state: Path,
    models_dir: Path,
    workers: bool,
    webhook_allow_origins: tuple[str, ...] = (),
    rotate: bool = False,
) -> StackOptions:
    from infra.local.stack import StackOptions

    return StackOptions(
        config_path=config,
        port=port,
        state_path=state,
        models_dir=models_dir,
        workers=workers,
        work_dir=state.parent,
        webhook_allow_origins=webhook_allow_origins,
        rotate_credentials=rotate,
    )


def _print_banner(stack: LocalStack, started: float) -> None:
    state = stack.state()
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold green]Easel local stack[/bold green] at [bold]{stack.endpoint}[/bold]")
    out.print(f"  moto: {stack.moto_endpoint}   region: {stack.region}   state: {stack.options.state_path}")
    out.print(f"  tenants: {', '.join(state.tenants)} (keys kept in {stack.credentials_path})")
    for name, child in state.children.items():
        out.print(f"  worker {name}: pid {child.pid}, log {child.log}")
    if state.children:
        allowed = ", ".join(stack.webhook_allow_origins) or "none (https to public hosts only)"
        out.print(f"  webhooks: loopback origins allowed: {allowed}")
        out.print("  webhook signing secret of a tenant: easel webhooks secret TENANT --local")
        out.print(f"\n[yellow]note:[/yellow] {NOISE_NOTE}")
    state_flag = (
        ""
        if stack.options.state_path == Path(".easel/local.json")
        else f" --state {stack.options.state_path}"
    )
    first = next(iter(state.tenants))
    out.print(f"\nIn another terminal, as tenant '{first}' (--tenant T for another):")
    out.print(f'  eval "$(easel local env{state_flag})"')
    model = stack.config.models[0].name if stack.config.models else "<model>"
    out.print(f'  easel submit --model {model} --prompt "a dog" --steps 4 --width 64 --height 64 --wait')
    took = time.monotonic() - started
    out.print(
        f"\nready: {stack.endpoint} (started in {took:.1f}s); stop it with Ctrl-C or `easel local down`"
    )


@app.command()
def up(
    port: int = typer.Option(
        8787, "--port", min=0, max=65535, help="gateway port on 127.0.0.1 (0 = any free port)"
    ),
    config: Path = CONFIG,
    workers: bool = typer.Option(True, "--workers/--no-workers", help="start runtime + agent per runtime"),
    models_dir: Path = MODELS_DIR,
    state: Path = STATE,
    webhook_allow_origin: list[str] = typer.Option(
        [],
        "--webhook-allow-origin",
        metavar="ORIGIN",
        help="let webhooks reach this loopback origin (http://127.0.0.1:PORT) despite the SSRF guard; "
        "repeatable; local mode only  [default: none]",
    ),
    rotate: bool = ROTATE,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="when ready, print one JSON line (endpoint, region, tenants) instead of the banner",
    ),
) -> None:
    """Start moto, provision every resource, serve the signed gateway, supervise the workers.

    Takes a few seconds (the first start also writes the tiny models, ~5 MB); ends its start with a
    "ready:" line and runs until Ctrl-C or `easel local down`.
    """
    from infra.local.stack import LocalStack

    started = time.monotonic()
    stop = _stop_event()
    with reported():
        stack = LocalStack(
            _options(config, port, state, models_dir, workers, tuple(webhook_allow_origin), rotate)
        )
        stack.start()
    try:
        if as_json:
            ready = {
                "ready": True,
                "endpoint": stack.endpoint,
                "region": stack.region,
                "pid": os.getpid(),
                "state": str(state),
                "tenants": list(stack.state().tenants),
            }
            sys.stdout.write(json.dumps(ready) + "\n")
            sys.stdout.flush()
        else:
            _print_banner(stack, started)
        while not stop.wait(0.5):
            pass
        if not as_json:
            console.print("stopping...")
    finally:
        stack.stop()
    if not as_json:
        console.print("stopped; state file removed")


@app.command()
def env(
    tenant: str = typer.Option(
        None, "--tenant", help="the tenant to act as  [default: the first in config.yaml]"
    ),
    state: Path = STATE,
    as_json: bool = typer.Option(False, "--json", help="print the variables as one JSON object"),
) -> None:
    """Print the `export` lines that point easel (and any AWS SDK) at the running local stack.

    Use it as: eval "$(easel local env)"
    """
    from infra.local import state as state_file

    with reported():
        current = state_file.load(state)
        if tenant is not None and tenant not in current.tenants:
            raise CliError(
                f"--tenant {tenant}: no such local tenant", hint=f"tenants: {', '.join(current.tenants)}"
            )
        variables = current.env_for(tenant)
    if as_json:
        sys.stdout.write(json.dumps(variables) + "\n")
        return
    for key, value in variables.items():
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")


@app.command()
def down(
    state: Path = STATE,
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the stack to stop"),
    as_json: bool = typer.Option(False, "--json", help="print the outcome as JSON"),
) -> None:
    """Stop the stack started by `easel local up` (SIGTERM to it; its children if it is already gone)."""
    from infra.local import state as state_file

    with reported():
        current = state_file.load(state)
    try:
        os.kill(current.pid, signal.SIGTERM)
    except ProcessLookupError:
        # `up` died without cleaning up: stop what it left behind and drop the stale state.
        for child in current.children.values():
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        state_file.remove(state)
        _said(as_json, "the stack was not running; removed its stale state", stopped=False)
        return
    deadline = time.monotonic() + timeout
    while state.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if state.exists():
        with reported():
            raise CliError(
                f"pid {current.pid} did not stop within {timeout:g}s",
                hint=f"try again, or `kill {current.pid}`",
                code="timeout",
                exit_code=1,
            )
    _said(as_json, "stopped", stopped=True)


def _said(as_json: bool, text: str, **fields: object) -> None:
    if as_json:
        sys.stdout.write(json.dumps({**fields, "message": text}) + "\n")
    else:
        console.print(text)


@app.command()
def demo(
    out: Path = typer.Option(Path("outputs"), "--out", help="where the images go"),
    config: Path = CONFIG,
    port: int = typer.Option(0, "--port", min=0, max=65535, help="gateway port (0 = any free port)"),
    models_dir: Path = MODELS_DIR,
    state: Path = STATE,
    timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait for the tasks"),
    as_json: bool = typer.Option(
        False, "--json", help="print one JSON document (tasks, files, timings); progress goes to stderr"
    ),
) -> None:
    """Start the stack with workers, run one text-to-image and one image-to-image task, save the images.

    Takes about 10-30 s on a laptop CPU (the first run also writes the tiny models, ~5 MB) and writes
    two 64x64 PNGs to --out. They are noise by design: the local model has random weights.
    """
    from easel.client import EaselClient
    from infra.local.demo import run_demo
    from infra.local.stack import LocalStack

    stop = _stop_event()
    started = time.monotonic()
    with reported(), LocalStack(_options(config, port, state, models_dir, True)) as stack:
        if not as_json:
            err_console.print(
                f"local stack up at {stack.endpoint} in {time.monotonic() - started:.1f}s",
                highlight=False,
            )
        cred = stack.tenant_credentials()
        client = EaselClient(
            stack.endpoint,
            region=stack.region,
            access_key_id=cred.access_key_id,
            secret_access_key=cred.secret_access_key,
        )
        assert stack.resources is not None
        result = run_demo(
            client=client,
            s3=stack.session().client("s3"),
            config=stack.config,
            outputs_bucket=stack.resources.outputs_bucket,
            tenant=cred.tenant,
            out_dir=out,
            wait=lambda c, ids: wait_with_progress(c, ids, timeout=timeout, as_json=as_json),
            download=download_outputs,
        )
        if stop.is_set():
            raise typer.Exit(130)
    if as_json:
        doc = {
            "ok": result.ok,
            "tasks": result.tasks,
            "files": [str(p) for p in result.files],
            "timings": result.timings,
            "note": NOISE_NOTE,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for task in result.tasks:
            print_task(task, False)
            console.print(f"  metrics: {task.get('metrics')}")
        for path in result.files:
            console.print(f"saved {path}")
        console.print(f"timings: {result.timings}")
        console.print(f"[yellow]note:[/yellow] {NOISE_NOTE}", highlight=False, soft_wrap=True)
    if not result.ok:
        with reported():
            raise CliError("not every demo task succeeded", hint="see the task errors above", exit_code=1)
