"""``easel plan``: predict latency and cost of a traffic profile on a pool as deployed (docs/capacity.md)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        profile: Path = typer.Option(
            ..., "--profile", help="traffic profile (YAML), e.g. docs/profiles/steady.yaml"
        ),
        config_path: Path = typer.Option(
            Path("config.yaml"), "--config", help="the Easel config (a profile's own `config:` key wins)"
        ),
        out: Path = typer.Option(Path(".easel/plan"), "--out", help="directory for the PNG plots"),
        plots: bool = typer.Option(True, "--plots/--no-plots", help="write the PNG plots"),
        sweep: list[str] = typer.Option(
            [],
            "--sweep",
            help="key=v1,v2,... over a setting (repeat for a grid), e.g. scaling.queue_length=1,2,4",
        ),
        as_json: bool = typer.Option(False, "--json", help="print the results as JSON instead of tables"),
    ) -> None:
        """Simulate the profile (KEDA, HPA, Karpenter, agents): latency percentiles, GPU-hours, cost."""
        from rich.console import Console

        from easel.plan.errors import PlanError
        from easel.plan.profile import load_plan, parse_sweep

        err = Console(stderr=True)
        try:
            base = load_plan(profile, config_path)
            axes = parse_sweep(sweep, base)
            grid = [
                dict(zip([k for k, _ in axes], combo, strict=True))
                for combo in itertools.product(*[v for _, v in axes])
            ]
            plans = [base.with_overrides(g) for g in grid] if axes else [base]
        except PlanError as exc:
            err.print(f"[red]error[/red]: {exc.key}: {exc.reason}", highlight=False)
            raise typer.Exit(2) from None
        if axes:
            _sweep(plans, grid, as_json=as_json)
        else:
            _single(base, out=out, plots=plots, as_json=as_json)


def _single(plan: Any, *, out: Path, plots: bool, as_json: bool) -> None:
    from rich.console import Console

    from easel.plan.plots import write_plots
    from easel.plan.report import summarize
    from easel.plan.sim import simulate

    result = simulate(plan)
    summary = summarize(result)
    paths = write_plots(result, out, plan.name) if plots else []
    if as_json:
        print(json.dumps({**summary.to_json(), "plots": [str(p) for p in paths]}, indent=2))
        return
    console = Console(width=max(Console().width, 100))
    console.print(_summary_table(summary))
    for p in paths:
        console.print(f"plot: {p}")


def _fmt(x: float, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _summary_table(s: Any) -> Any:
    from rich.table import Table

    t = Table(title=f"easel plan: {s.name} ({s.settings['instance_type']}, prices {s.pricing['as_of']})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("tasks submitted / completed", f"{s.tasks} / {s.completed}"),
        ("images", str(s.images)),
        ("throughput (tasks/s)", _fmt(s.throughput_per_s, 3)),
        ("latency p50 / p95 / p99 (s)", f"{_fmt(s.p50_s)} / {_fmt(s.p95_s)} / {_fmt(s.p99_s)}"),
        ("oldest message age, max (s)", _fmt(s.oldest_message_age_s, 1)),
        (
            "node-hours busy / idle / starting",
            f"{_fmt(s.node_hours['busy'])} / {_fmt(s.node_hours['idle'])} / {_fmt(s.node_hours['starting'])}",
        ),
        (
            "node-hours spot / on-demand",
            f"{_fmt(s.node_hours_by_capacity['spot'])} / {_fmt(s.node_hours_by_capacity['on-demand'])}",
        ),
        (
            "cost USD spot / on-demand / total",
            f"{_fmt(s.cost_usd['spot'])} / {_fmt(s.cost_usd['on-demand'])} / {_fmt(s.cost_usd['total'])}",
        ),
        (
            "USD per 1,000 images spot / on-demand / total",
            f"{_fmt(s.cost_per_1000_images['spot'], 3)} / {_fmt(s.cost_per_1000_images['on-demand'], 3)} / "
            f"{_fmt(s.cost_per_1000_images['total'], 3)}",
        ),
        ("USD per 1,000 images, busy time only", _fmt(s.cost_per_1000_images["busy_only"], 3)),
        ("max replicas / nodes", f"{s.max_replicas_seen} / {s.max_nodes_seen}"),
        ("spot interruptions / messages returned", f"{s.interruptions} / {s.returned_messages}"),
    ]
    for tenant, v in s.tenants.items():
        rows.append(
            (
                f"tenant {tenant}: images, USD busy / loaded (per 1,000)",
                f"{int(v['images'])}, {_fmt(v['busy_usd'], 3)} / {_fmt(v['loaded_usd'], 3)} "
                f"({_fmt(v['loaded_per_1000_images'], 3)})",
            )
        )
    for r in rows:
        t.add_row(*r)
    return t


def _sweep(plans: list[Any], grid: list[dict[str, Any]], *, as_json: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from easel.plan.report import pareto, summarize
    from easel.plan.sim import simulate

    # Wide enough for the table when stdout is not a terminal (rich would assume 80 columns).
    console = Console(stderr=as_json, width=max(Console().width, 120))
    summaries = []
    with Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=as_json,
    ) as progress:
        job = progress.add_task("sweep", total=len(plans))
        for p in plans:
            summaries.append(summarize(simulate(p)))
            progress.advance(job)
    front = pareto([(s.cost_per_1000_images["total"], s.p95_s) for s in summaries])
    rows = sorted(
        zip(grid, summaries, front, strict=True),
        key=lambda r: (r[1].cost_per_1000_images["total"], r[1].p95_s),
    )
    if as_json:
        print(json.dumps([{"settings": g, "pareto": f, **s.to_json()} for g, s, f in rows], indent=2))
        return
    keys = list(grid[0])
    t = Table(title=f"easel plan --sweep: {plans[0].name}, cost vs p95 (* = Pareto front)")
    for k in keys:
        t.add_column(k.rpartition(".")[2], justify="right", no_wrap=True)
    for col in ("$/1k img", "spot", "on-dem", "p95 s", "p99 s", "idle h", "done", "*"):
        t.add_column(col, justify="right", no_wrap=True)
    for g, s, f in rows:
        c = s.cost_per_1000_images
        t.add_row(
            *[str(g[k]) for k in keys],
            _fmt(c["total"], 3),
            _fmt(c["spot"], 3),
            _fmt(c["on-demand"], 3),
            _fmt(s.p95_s, 1),
            _fmt(s.p99_s, 1),
            _fmt(s.node_hours["idle"], 2),
            f"{s.completed}/{s.tasks}",
            "*" if f else "",
            style="bold" if f else None,
        )
    console.print(t)
