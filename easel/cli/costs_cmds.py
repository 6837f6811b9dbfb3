"""``easel costs``: GPU time and cost per tenant and runtime, read from the tasks table."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

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
        raise typer.BadParameter(f"'{value}' is neither a span like 7d/24h/2w nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    @app.command()
    def costs(
        since: str = typer.Option("30d", help="window start: 7d, 24h, 2w or an ISO time"),
        config_path: Path = typer.Option(Path("config.yaml"), "--config", help="the Easel config"),
        local: bool = typer.Option(False, help="read the local stack (.easel/local.json) instead of AWS"),
        state: Path = typer.Option(Path(".easel/local.json"), help="local state file (with --local)"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """GPU-seconds and cost per tenant and runtime (needs read access to the tasks table)."""
        import boto3
        from rich.console import Console
        from rich.table import Table

        from easel.config import load_config
        from easel.costs import tenant_costs
        from easel.naming import Names
        from easel.store import TaskStore

        config = load_config(config_path)
        start = parse_since(since)
        if local:
            from infra.local.state import load

            st = load(state)
            from infra.local.stack import DUMMY_AWS

            session = boto3.Session(
                aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
                region_name=st.region,
            )
            ddb = session.client("dynamodb", endpoint_url=st.moto_endpoint)
            table = st.resources.table
        else:
            ddb = boto3.client("dynamodb")
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
