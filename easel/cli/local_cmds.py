"""``easel local up|down|demo``: the whole pipeline on this machine (moto, signed gateway, workers)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from easel.cli.client_cmds import console, download_outputs, err_console, print_task, wait_with_progress

if TYPE_CHECKING:
    from infra.local.stack import LocalStack, StackOptions


def _quiet_libraries() -> None:
    """Local mode runs on CPU without torchvision: transformers' advisories about it are noise here."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


app = typer.Typer(no_args_is_help=True, callback=_quiet_libraries)

CONFIG = typer.Option(Path("config.yaml"), "--config", help="the Easel config")
STATE = typer.Option(Path(".easel/local.json"), "--state", help="state file (endpoint, credentials, pids)")
MODELS_DIR = typer.Option(Path(".easel/models"), "--models-dir", help="model store of the local runtimes")


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
    )


def _print_banner(stack: LocalStack) -> None:
    state = stack.state()
    console.print(f"[bold green]Easel local stack[/bold green] at [bold]{stack.endpoint}[/bold]")
    console.print(
        f"  moto: {stack.moto_endpoint}   region: {stack.region}   state: {stack.options.state_path}"
    )
    for tenant, cred in state.tenants.items():
        console.print(
            f"  tenant [bold]{tenant}[/bold]: {cred.principal_arn}\n"
            f"    AWS_ACCESS_KEY_ID={cred.access_key_id} AWS_SECRET_ACCESS_KEY={cred.secret_access_key}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"\nTo call it as tenant '{next(iter(state.tenants))}', in another terminal:")
    for key, value in state.env_for().items():
        console.print(f"  export {key}={value}", highlight=False, soft_wrap=True)
    console.print('  easel submit --model <model> --prompt "a dog"')
    for name, child in state.children.items():
        console.print(f"  worker {name}: pid {child.pid}, log {child.log}")
    if state.children:
        allowed = ", ".join(stack.webhook_allow_origins) or "none (https to public hosts only)"
        console.print(f"  webhooks: loopback origins allowed: {allowed}")
        console.print("  webhook signing secret of a tenant: easel webhooks secret TENANT --local")
    console.print("\nCtrl-C to stop.")


@app.command()
def up(
    port: int = typer.Option(8787, "--port", help="gateway port on 127.0.0.1 (0 = any free port)"),
    config: Path = CONFIG,
    workers: bool = typer.Option(True, "--workers/--no-workers", help="start runtime + agent per runtime"),
    models_dir: Path = MODELS_DIR,
    state: Path = STATE,
    webhook_allow_origin: list[str] = typer.Option(
        [],
        "--webhook-allow-origin",
        help="let webhooks reach this loopback origin (http://127.0.0.1:PORT) despite the SSRF guard; "
        "repeatable; local mode only",
    ),
) -> None:
    """Start moto, provision every resource, serve the signed gateway, supervise the workers."""
    from easel.errors import EaselError
    from infra.local.errors import LocalError
    from infra.local.stack import LocalStack

    stop = _stop_event()
    try:
        stack = LocalStack(_options(config, port, state, models_dir, workers, tuple(webhook_allow_origin)))
        stack.start()
    except (EaselError, LocalError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        _print_banner(stack)
        while not stop.wait(0.5):
            pass
        console.print("stopping...")
    finally:
        stack.stop()
    console.print("stopped; state file removed")


@app.command()
def down(state: Path = STATE, timeout: float = typer.Option(30.0, "--timeout")) -> None:
    """Stop the stack started by `easel local up` (SIGTERM to it; its children if it is already gone)."""
    from infra.local import state as state_file
    from infra.local.errors import StateError

    try:
        current = state_file.load(state)
    except StateError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    try:
        os.kill(current.pid, signal.SIGTERM)
    except ProcessLookupError:
        # `up` died without cleaning up: stop what it left behind and drop the stale state.
        for child in current.children.values():
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        state_file.remove(state)
        console.print("the stack was not running; removed its stale state")
        return
    deadline = time.monotonic() + timeout
    while state.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if state.exists():
        err_console.print(f"[red]error:[/red] pid {current.pid} did not stop within {timeout:.0f}s")
        raise typer.Exit(1)
    console.print("stopped")


@app.command()
def demo(
    out: Path = typer.Option(Path("outputs"), "--out", help="where the images go"),
    config: Path = CONFIG,
    port: int = typer.Option(0, "--port", help="gateway port (0 = any free port)"),
    models_dir: Path = MODELS_DIR,
    state: Path = STATE,
    timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait for the tasks"),
    as_json: bool = typer.Option(False, "--json", help="print the final tasks as JSON"),
) -> None:
    """Start the stack with workers, run one text-to-image and one image-to-image task, save the images."""
    from easel.client import ClientError, EaselClient
    from easel.errors import EaselError
    from infra.local.demo import run_demo
    from infra.local.errors import LocalError
    from infra.local.stack import LocalStack

    stop = _stop_event()
    started = time.monotonic()
    try:
        with LocalStack(_options(config, port, state, models_dir, True)) as stack:
            console.print(f"local stack up at {stack.endpoint} in {time.monotonic() - started:.1f}s")
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
                wait=lambda c, ids: wait_with_progress(c, ids, timeout=timeout),
                download=download_outputs,
            )
            if stop.is_set():
                raise typer.Exit(130)
    except (EaselError, LocalError, ClientError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(json.dumps({"tasks": result.tasks, "timings": result.timings}))
    else:
        for task in result.tasks:
            print_task(task, False)
            console.print(f"  metrics: {task.get('metrics')}")
        for path in result.files:
            console.print(f"saved {path}")
        console.print(f"timings: {result.timings}")
    if not result.ok:
        err_console.print("[red]not every demo task succeeded[/red]")
        raise typer.Exit(1)
