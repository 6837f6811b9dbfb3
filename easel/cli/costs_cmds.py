"""``easel costs``: GPU time and cost per tenant and runtime, read from the tasks table."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from easel.cli.errors import CliError

_SPAN = re.compile(r"^(\d+)([hdw])$")
_UNIT = {"h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``2w`` or an ISO timestamp."""
    match = _SPAN.match(value)
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNIT[match[2]]: int(match[1])})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since '{value}' is neither a span like 7d, 24h, 2w nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    @app.command()
    def costs(
        since: str = typer.Option("30d", "--since", help="window start: 7d, 24h, 2w or an ISO time"),
        config_path: Path = typer.Option(Path("config.yaml"), "--config", help="the Easel config"),
        local: bool = typer.Option(
            False, "--local", help="read the local stack (its --state file) instead of AWS"
        ),
        state: Path = typer.Option(
            Path(".easel/local.json"), "--state", help="local state file (with --local)"
        ),
        region: str = typer.Option(
            None, "--region", help="AWS region  [default: $AWS_REGION, else env.region in config.yaml]"
        ),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """GPU-seconds and cost per tenant and runtime (needs read access to the tasks table)."""
        import boto3
        from rich.console import Console
        from rich.table import Table

        from easel.cli.errors import reported
        from easel.config import load_config
        from easel.costs import tenant_costs
        from easel.naming import Names
        from easel.store import TaskStore

        with reported():
            start = parse_since(since)
            if local:
                from infra.local.state import load
                from infra.local.workers import DUMMY_AWS

                st = load(state)
                # The running stack's own config (with its local principals) unless --config is there.
                config = load_config(config_path if config_path.exists() else Path(st.config_file))
                session = boto3.Session(
                    aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
                    region_name=st.region,
                )
                ddb = session.client("dynamodb", endpoint_url=st.moto_endpoint)
                table = st.resources.table
            else:
                config = load_config(config_path)
                # The environment's region first (as every AWS tool), then the deployment's own.
                chosen = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                ddb = boto3.client("dynamodb", region_name=chosen or config.env.region)
                table = Names.of(config).tasks_table
            lines = tenant_costs(TaskStore(ddb, table), config, since=start)
        if as_json:
            doc = {"since": start.isoformat(), "lines": [asdict(x) for x in lines]}
            typer.echo(json.dumps(doc, indent=2))
            return
        out = Table(title=f"GPU cost since {start:%Y-%m-%d %H:%M} UTC")
        for col in ("tenant", "runtime", "tasks", "succeeded", "failed", "canceled", "GPU seconds", "USD"):
            out.add_column(col, justify="right" if col not in ("tenant", "runtime") else "left")
        for x in lines:
            s = x.by_status
            out.add_row(
                x.tenant,
                x.runtime,
                str(x.tasks),
                str(s.get("succeeded", 0)),
                str(s.get("failed", 0)),
                str(s.get("canceled", 0)),
                f"{x.gpu_seconds:.1f}",
                f"{x.usd:.4f}",
            )
        Console().print(out)
