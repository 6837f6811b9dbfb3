"""``easel deploy verify``: is the deployed service healthy, step by step (logic in easel.deploy.verify)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def verify(
    config_path: Path = typer.Option(
        Path("config.yaml"), "--config", help="the Easel config that was deployed"
    ),
    region: str = typer.Option("", help="AWS region (default: config env.region, then the AWS environment)"),
    profile: str = typer.Option("", help="AWS profile (default: the standard credential chain)"),
    task_timeout: float = typer.Option(1800.0, help="seconds the end-to-end task may take (GPU cold start)"),
    skip_task: bool = typer.Option(False, help="stop after the pools step (no GPU time spent)"),
) -> None:
    """Check stacks, cluster, add-ons, controllers, pools and one task through the signed API."""
    import boto3
    from rich.console import Console

    from easel.config import load_config
    from easel.deploy.verify import Verifier

    console = Console()
    config = load_config(config_path)
    session = boto3.Session(profile_name=profile or None)
    chosen = region or config.env.region or session.region_name
    if not chosen:
        raise typer.BadParameter(
            "no region: pass --region or set env.region in the config", param_hint="--region"
        )
    verifier = Verifier(config, session=session, region=chosen, task_timeout_seconds=task_timeout)
    if skip_task:
        verifier.steps = lambda: [s for s in Verifier.steps(verifier) if s[0] != "task"]  # type: ignore[method-assign]
    failed = False
    for step in verifier.run():
        mark = "[green]ok[/green]" if step.ok else "[red]FAILED[/red]"
        console.print(f"{mark} {step.name}: {step.saw}", highlight=False)
        if not step.ok:
            console.print(f"   what to do: {step.fix}", highlight=False)
            failed = True
    raise typer.Exit(1 if failed else 0)
