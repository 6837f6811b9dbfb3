"""``easel bench agent|runtime|api|plan``: each prints rich tables; ``--json FILE`` writes the numbers.

Every result is a ratio against a baseline (or a physical limit) measured in the same run: the machines
these run on are shared and noisy. What each number means: docs/benchmarks.md.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
# Tables are wide: do not squeeze them into 80 columns when the output is a pipe or a file.
console = Console(width=None if Console().is_terminal else 160)

JSON_OPT = typer.Option(None, "--json", help="also write the results as JSON to this file")


@app.command()
def agent(
    hold_ms: list[float] = typer.Option(
        [100.0, 250.0, 1500.0], "--hold-ms", help="simulated GPU time per task (repeatable)"
    ),
    tasks: int = typer.Option(
        36, "--tasks", min=1, max=200, help="tasks per run (keep moto's backlog small)"
    ),
    only: str | None = typer.Option(None, "--only", help="run just one agent: easel, baseline or floor"),
    floor: bool = typer.Option(False, "--floor", help="also run the harness floor (no AWS work per task)"),
    traced: bool = typer.Option(
        False, "--traced", help="also run Easel's agent with tracing on (the overhead of tracing)"
    ),
    workdir: Path | None = typer.Option(None, "--workdir", help="keep agent logs and probe events here"),
    runtime_nice: int = typer.Option(
        0,
        "--runtime-nice",
        help="scheduling priority of the synthetic runtime's thread (diagnostic; <0 needs root)",
    ),
    batching: bool = typer.Option(
        False,
        "--batching",
        help="instead: cross-task batching off vs on, on the real runtime with the tiny model "
        "(backlog tasks/s and lone-task latency; --tasks sets the backlog)",
    ),
    max_images: int = typer.Option(4, "--max-images", min=2, max=16, help="--batching: images per batch"),
    steps: int = typer.Option(10, "--steps", min=1, max=100, help="--batching: steps per task"),
    rounds: int = typer.Option(2, "--rounds", min=1, max=10, help="--batching: off/on rounds (alternating)"),
    lone: int = typer.Option(5, "--lone", min=1, max=50, help="--batching: lone tasks timed per run"),
    models_dir: Path = typer.Option(
        Path(".easel/bench-models"), "--models-dir", help="--batching: where the tiny model is generated"
    ),
    json_path: Path | None = JSON_OPT,
) -> None:
    """Easel's queue agent vs a serial stable-diffusion-on-eks-style agent, on a synthetic runtime; with
    --batching, cross-task batching off vs on with the real runtime."""
    from bench.report import emit

    if batching:
        from bench import agent_batching

        result = agent_batching.bench_batching(
            tasks=tasks, max_images=max_images, steps=steps, rounds=rounds, lone=lone,
            models_dir=models_dir, workdir=workdir,
        )  # fmt: skip
        emit(agent_batching.tables(result), result.to_json(), json_path, console)
        if any(r.error for r in result.runs):
            raise typer.Exit(1)
        return
    from bench import agent as bench

    agents = bench.AGENTS if only is None else (only,)
    if only is not None and only not in bench.ALL_AGENTS:
        raise typer.BadParameter(f"--only {only!r}: use one of {', '.join(bench.ALL_AGENTS)}")
    if floor and "floor" not in agents:
        agents = (*agents, "floor")
    if traced and "easel-traced" not in agents:
        agents = (*agents, "easel-traced")
    runs = bench.bench_agent(hold_ms, tasks, agents, workdir, runtime_nice)
    emit(bench.tables(runs), bench.document(runs, tasks), json_path, console)
    if any(r.error for r in runs):
        raise typer.Exit(1)


@app.command()
def api(
    runs: int = typer.Option(7, "--runs", min=1, max=50, help="fresh interpreters per module"),
    requests: int = typer.Option(200, "--requests", min=1, max=2000, help="signed submits to time"),
    skip_submit: bool = typer.Option(False, "--skip-submit", help="cold import only"),
    json_path: Path | None = JSON_OPT,
) -> None:
    """Cold import of the API handler vs a minimal Powertools handler; signed local submit latency."""
    from bench import api as bench
    from bench.report import emit

    imports = bench.bench_imports(runs)
    latencies = [] if skip_submit else bench.bench_submit(requests)
    emit(bench.tables(imports, latencies), bench.summary(imports, latencies), json_path, console)


@app.command()
def runtime(
    models_dir: Path = typer.Option(
        Path(".easel/bench-models"), "--models-dir", help="where the bench models are generated and cached"
    ),
    images: int = typer.Option(16, "--images", min=4, max=256, help="images per batch-size run"),
    steps: int = typer.Option(10, "--steps", min=1, max=100, help="denoising steps per image (batching)"),
    load_runs: int = typer.Option(3, "--load-runs", min=1, max=10, help="loads / raw reads to time"),
    skip_sd15: bool = typer.Option(False, "--skip-sd15", help="tiny model only (no 4.3 GB checkpoint)"),
    sdxl: bool = typer.Option(
        False,
        "--sdxl",
        help="also load an SDXL-size checkpoint (6.9 GB fp16, written once) vs a raw read, with an fp16 plan",
    ),
    sdxl_cpu_plan: bool = typer.Option(
        False,
        "--sdxl-cpu-plan",
        help="with --sdxl: also this CPU's fp32 plan (converts on load: needs ~16 GiB free, else skipped)",
    ),
    json_path: Path | None = JSON_OPT,
) -> None:
    """The diffusers runtime on CPU: batching, SD 1.5-size load vs raw read, model switch, a UNet step."""
    from bench.report import emit
    from bench.runtime import bench_runtime, tables

    result = bench_runtime(
        models_dir,
        images=images,
        steps=steps,
        load_runs=load_runs,
        sd15=not skip_sd15,
        sdxl=sdxl or sdxl_cpu_plan,
        sdxl_cpu_plan=sdxl_cpu_plan,
    )
    emit(tables(result), result.to_json(), json_path, console)


@app.command("plan")
def plan_validation(
    hold_ms: float = typer.Option(3000.0, "--hold-ms", help="the synthetic runtime's time per task"),
    duration: float = typer.Option(90.0, "--duration", help="seconds of arrivals"),
    rate: float = typer.Option(0.4, "--rate", help="Poisson arrivals per second"),
    burst: int = typer.Option(8, "--burst", help="tasks submitted at once at the start and at mid-run"),
    max_replicas: int = typer.Option(3, "--max-replicas", min=1, max=6, help="most agents the scaler starts"),
    workdir: Path | None = typer.Option(None, "--workdir", help="keep agent logs here"),
    json_path: Path | None = JSON_OPT,
) -> None:
    """`easel plan`'s prediction vs the real local pipeline (moto, agents, a KEDA-rule scaler)."""
    from bench.plan_validation import tables, validate
    from bench.report import emit

    v = validate(
        hold_s=hold_ms / 1000,
        duration_s=duration,
        rate=rate,
        burst=burst,
        max_replicas=max_replicas,
        workdir=workdir,
    )
    emit(tables(v), v.to_json(), json_path, console)
    if v.error:
        console.print(f"[red]{v.error}[/red]")
        raise typer.Exit(1)
