"""``easel bench agent --batching``: cross-task batching on the real runtime with the tiny model.

One moto stack (child process) and one real Easel runtime (``python -m runtime_image.server``, child
process, the tiny random model of :mod:`runtime_image.server.tiny`). Each round runs Easel's queue agent
(child process under :mod:`bench.probe`) twice, batching off (``EASEL_AGENT_BATCH_MAX_IMAGES=1``) and on
(``=max_images``), in alternating order from round to round so drift hits both:

    backlog    moto reset, ``tasks`` compatible text-to-image tasks (same size/steps/sampler, own prompt and
               seed) written and published like the API does, *then* the agent starts; tasks/s over the
               window first receive that returned a message -> delete that completed the last task.
    lone       with the same agent then idle, ``lone`` single tasks one after the other: latency from the
               publish to the delete of its message (the task is succeeded, notified and acknowledged).

Reported: tasks/s of each mode (median over rounds) and their ratio (target >= 1.8x at max batch 4), and
the median lone-task latency of each mode and their ratio (target: within 5 %). The probe's times and the
bench's are both ``time.monotonic()`` (one clock for every process of the machine).
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.agent import DELETES, EventTail, _stop, agent_command, agent_env, free_port, read_events
from bench.localstack import MODEL_PATH, LocalStack, local_stack, new_batch_id
from bench.stats import median

THROUGHPUT_TARGET = 1.8
LONE_TOLERANCE = 0.05


@dataclass
class ModeRun:
    mode: str  # "off" | "on"
    max_images: int
    tasks: int
    completed: int = 0
    window_s: float = math.nan
    tasks_per_s: float = math.nan
    lone_latencies_ms: list[float] = field(default_factory=list)
    # The part of each lone latency spent in the runtime's generation call (from the probe's HTTP records):
    # machine noise on a shared CPU, identical code in both modes; the rest is the agent's and AWS's.
    lone_runtime_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchingBench:
    tasks: int
    max_images: int
    steps: int
    size: int
    rounds: int
    runs: list[ModeRun] = field(default_factory=list)

    def median_tps(self, mode: str) -> float:
        return median([r.tasks_per_s for r in self.runs if r.mode == mode and not math.isnan(r.tasks_per_s)])

    def median_lone_ms(self, mode: str) -> float:
        return median([x for r in self.runs if r.mode == mode for x in r.lone_latencies_ms])

    def median_lone_agent_ms(self, mode: str) -> float:
        """Lone latency without the runtime's generation call: what batching could change."""
        out = []
        for r in self.runs:
            if r.mode == mode:
                # A run that stopped early has no runtime calls recorded: zip pairs only what both have.
                out += [t - c for t, c in zip(r.lone_latencies_ms, r.lone_runtime_ms, strict=False)]
        return median(out)

    def median_lone_runtime_ms(self, mode: str) -> float:
        return median([x for r in self.runs if r.mode == mode for x in r.lone_runtime_ms])

    @property
    def throughput_ratio(self) -> float:
        off = self.median_tps("off")
        return self.median_tps("on") / off if off else math.nan

    @property
    def lone_ratio(self) -> float:
        off = self.median_lone_ms("off")
        return self.median_lone_ms("on") / off if off else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": "agent-batching",
            "tasks": self.tasks,
            "max_images": self.max_images,
            "steps": self.steps,
            "size": self.size,
            "rounds": self.rounds,
            "tasks_per_s": {"off": self.median_tps("off"), "on": self.median_tps("on")},
            "throughput_ratio": self.throughput_ratio,
            "throughput_target": THROUGHPUT_TARGET,
            "throughput_target_met": bool(self.throughput_ratio >= THROUGHPUT_TARGET),
            "lone_latency_ms": {"off": self.median_lone_ms("off"), "on": self.median_lone_ms("on")},
            "lone_runtime_call_ms": {
                "off": self.median_lone_runtime_ms("off"),
                "on": self.median_lone_runtime_ms("on"),
            },
            "lone_without_runtime_call_ms": {
                "off": self.median_lone_agent_ms("off"),
                "on": self.median_lone_agent_ms("on"),
            },
            "lone_ratio": self.lone_ratio,
            "lone_target_met": bool(abs(self.lone_ratio - 1) <= LONE_TOLERANCE),
            "runs": [asdict(r) for r in self.runs],
        }


class RealRuntime:
    """``python -m runtime_image.server`` with the tiny model preloaded, in a child process on 127.0.0.1."""

    def __init__(self, models_dir: Path, *, cpu_threads: int, log: Path) -> None:
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "runtime_image.server", "--models-dir", str(models_dir),
                "--host", "127.0.0.1", "--port", str(self.port), "--model", MODEL_PATH,
                "--cpu-threads", str(cpu_threads)]  # fmt: skip
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def __enter__(self) -> RealRuntime:
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=5) as http:
            while True:
                try:
                    if http.get(f"{self.url}/health").json().get("status") == "ready":
                        return self
                except (httpx.HTTPError, ValueError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"runtime did not become ready (log: {self._log.name})")
                time.sleep(0.1)

    def __exit__(self, *_exc: object) -> None:
        _stop(self.proc, grace=10.0)
        self._log.close()


def ensure_tiny(models_dir: Path) -> None:
    from runtime_image.server.tiny import make_tiny_model

    if not (models_dir / MODEL_PATH / "model_index.json").exists():
        make_tiny_model(models_dir / MODEL_PATH, seed=0)


def run_mode(
    mode: str,
    max_images: int,
    stack: LocalStack,
    runtime: RealRuntime,
    *,
    tasks: int,
    lone: int,
    steps: int,
    size: int,
    workdir: Path,
    tag: str,
) -> ModeRun:
    images = max_images if mode == "on" else 1
    result = ModeRun(mode=mode, max_images=images, tasks=tasks)
    published_at: list[float] = []
    stack.reset()
    backlog = stack.enqueue(tasks, batch_id=f"{tag}-{new_batch_id()}", width=size, height=size, steps=steps)
    events_path = workdir / f"{tag}.events"
    events_path.unlink(missing_ok=True)
    env = agent_env("easel", stack, runtime.url)
    env["EASEL_AGENT_BATCH_MAX_IMAGES"] = str(images)
    log_path = workdir / f"{tag}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            agent_command("easel", events_path), env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            tail = EventTail(events_path)
            if not _wait_deleted(tail, proc, tasks, timeout=120 + tasks * 5.0):
                result.error = f"backlog did not finish (log: {log_path})"
                return result
            for i in range(lone):
                # Let the agent settle into its idle long polls before each lone task.
                time.sleep(0.5)
                published = time.monotonic()
                published_at.append(published)
                backlog += stack.enqueue(
                    1, batch_id=f"{tag}-lone{i}-{new_batch_id()}", width=size, height=size, steps=steps
                )
                if not _wait_deleted(tail, proc, tasks + i + 1, timeout=60):
                    result.error = f"lone task {i} did not finish (log: {log_path})"
                    return result
                last = max(e.end for e in tail.events if e.op in DELETES and e.count)
                result.lone_latencies_ms.append((last - published) * 1000.0)
        finally:
            _stop(proc, grace=30.0)
    events = read_events(events_path)
    receives = sorted((e for e in events if e.op == "ReceiveMessage" and e.count), key=lambda e: e.start)
    done, last_end = 0, None
    for e in sorted((e for e in events if e.op in DELETES), key=lambda e: e.end):
        done += e.count
        if done >= tasks:
            last_end = e.end
            break
    result.completed = min(done, tasks)
    if receives and last_end is not None:
        result.window_s = last_end - receives[0].start
        result.tasks_per_s = tasks / result.window_s
    calls = sorted(
        (e for e in events if e.op == "http" and e.queue == "POST /sdapi/v1/txt2img"), key=lambda e: e.start
    )
    for published in published_at:
        call = next((e for e in calls if e.start >= published), None)
        result.lone_runtime_ms.append((call.end - call.start) * 1000.0 if call else math.nan)
    result.statuses = stack.statuses(backlog)
    return result


def _wait_deleted(tail: EventTail, proc: subprocess.Popen[bytes], count: int, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        tail.poll()
        if tail.deleted >= count:
            return True
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def bench_batching(
    *,
    tasks: int = 24,
    max_images: int = 4,
    steps: int = 10,
    size: int = 64,
    rounds: int = 2,
    lone: int = 5,
    cpu_threads: int = 1,
    models_dir: Path,
    workdir: Path | None = None,
) -> BatchingBench:
    bench = BatchingBench(tasks=tasks, max_images=max_images, steps=steps, size=size, rounds=rounds)
    ensure_tiny(models_dir)
    with tempfile.TemporaryDirectory(prefix="easel-bench-batching-") as tmp:
        wd = workdir or Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        runtime = RealRuntime(models_dir, cpu_threads=cpu_threads, log=wd / "runtime.log")
        with local_stack() as stack, runtime as rt:
            for r in range(rounds):
                # Alternate which mode goes first, so drift over the run hits both.
                order = ("off", "on") if r % 2 == 0 else ("on", "off")
                for mode in order:
                    run = run_mode(
                        mode, max_images, stack, rt, tasks=tasks, lone=lone, steps=steps, size=size,
                        workdir=wd, tag=f"r{r}-{mode}",
                    )  # fmt: skip
                    bench.runs.append(run)
    return bench


def tables(bench: BatchingBench) -> list[Any]:
    from bench.report import fmt, make_table, verdict

    table = make_table(
        f"easel bench agent --batching: real runtime, tiny model {bench.size}x{bench.size}, "
        f"{bench.steps} steps, backlog of {bench.tasks} compatible tasks, {bench.rounds} rounds",
        [
            "batching",
            "max images",
            "tasks/s (median)",
            "lone task latency p50 (ms)",
            "of which runtime call",
            "lone without runtime call",
            "tasks/s per run",
            "errors",
        ],
    )
    for mode in ("off", "on"):
        runs = [r for r in bench.runs if r.mode == mode]
        table.add_row(
            mode,
            str(runs[0].max_images if runs else "-"),
            fmt(bench.median_tps(mode), 2),
            fmt(bench.median_lone_ms(mode), 1),
            fmt(bench.median_lone_runtime_ms(mode), 1),
            fmt(bench.median_lone_agent_ms(mode), 1),
            ", ".join(fmt(r.tasks_per_s, 2) for r in runs),
            "; ".join(r.error for r in runs if r.error) or "-",
        )
    tp, lone = bench.throughput_ratio, bench.lone_ratio
    table.add_row(
        "on / off", "",
        fmt(tp, 2) + "x " + verdict(tp >= THROUGHPUT_TARGET) + f" (target >= {THROUGHPUT_TARGET}x)",
        fmt(lone, 3) + "x " + verdict(abs(lone - 1) <= LONE_TOLERANCE) + " (target within 5 %)",
        fmt(_div(bench.median_lone_runtime_ms("on"), bench.median_lone_runtime_ms("off")), 3) + "x",
        fmt(_div(bench.median_lone_agent_ms("on"), bench.median_lone_agent_ms("off")), 3) + "x",
        "", "",
    )  # fmt: skip
    return [table]


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan
