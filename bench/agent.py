"""``easel bench agent``: Easel's queue agent vs a serial baseline, against one local stack and one
synthetic runtime that holds each task for T ms.

Per hold time T and per agent, one run: reset moto and provision, write + publish ``tasks`` tasks (the
backlog is queued *before* the agent starts, so its start-up is not measured), start the agent as a child
process under :mod:`bench.probe`, wait until it has deleted every message, stop it. From the probe's
SQS timestamps and the runtime's records:

    window     first receive that returned a message -> the delete that completed the last task
    busy       time the runtime spent generating inside the window / window
    tasks/s    tasks / window
    overhead   per task: the runtime's idle time after its generation (until the next one starts; for the
               last task, until the final delete; the first task also carries the idle lead-in from the
               first receive): the task's wall time minus the time the runtime spent on it (T plus the
               synthetic runtime's own oversleep, reported as ``runtime_extra_ms``). Overheads and
               generation times add up to the window.
    busy_steady  busy fraction from the first generation's start to the last one's end: the pipeline
               without its two one-time edges (lead-in, tail).

Backlogs stay small on purpose: moto's SQS receive cost grows with queue depth (about 0.45 ms per
waiting message), a cost the real SQS does not have.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.localstack import (
    MODEL,
    MODEL_PATH,
    RUNTIME,
    LocalStack,
    aws_env,
    cpu_seconds,
    importable,
    local_stack,
    new_batch_id,
)
from bench.serve import free_port
from bench.stats import median, percentile, union_length
from bench.synthetic_runtime import SyntheticRuntime

AGENTS = ("easel", "baseline")
# "floor" (bench.floor_agent): no AWS work between generations, the harness's own cost per task.
# "easel-traced": Easel's agent with tracing on (EASEL_TRACES=file:, local mode's synchronous JSONL exporter,
# the costlier of the two exporters: OTLP batches off the task's thread), for the overhead of tracing.
ALL_AGENTS = (*AGENTS, "floor", "easel-traced")
# Tracing may cost at most this much runtime busy fraction (issue 15).
TRACING_BUSY_BUDGET = 0.01
DEFAULT_HOLDS_MS = (100.0, 250.0, 1500.0)
DEFAULT_TASKS = 36
WARMUP_TASKS = 4  # one unmeasured run of Easel's agent before the measured ones
# Targets of issue 7: busy fraction per hold time, and the median per-task overhead.
BUSY_TARGETS = {100.0: 0.95, 250.0: 0.98}
OVERHEAD_TARGET_MS = 5.0


@dataclass
class ProbeEvent:
    op: str
    start: float
    end: float
    count: int
    queue: str = ""
    written: float = math.nan  # http calls: the request's first bytes went to the socket
    written_last: float = math.nan  # http calls: its last bytes did (after the body write)
    cpu_to_write: float = math.nan  # http calls: CPU seconds the sending thread used until then


@dataclass
class AgentRun:
    agent: str
    hold_ms: float
    tasks: int
    completed: int = 0
    window_s: float = math.nan
    busy: float = math.nan
    tasks_per_s: float = math.nan
    overhead_median_ms: float = math.nan
    overhead_p95_ms: float = math.nan
    overhead_mean_ms: float = math.nan
    # Medians of where each cycle's overhead goes (from the probe's HTTP records, see split_overhead).
    split_prewrite_ms: float = math.nan
    split_prewrite_cpu_ms: float = math.nan
    split_request_ms: float = math.nan
    split_response_ms: float = math.nan
    split_agent_ms: float = math.nan
    # First receive -> first generation, and last generation -> last delete: paid once per run.
    lead_in_ms: float = math.nan
    tail_ms: float = math.nan
    # Busy fraction between the first generation's start and the last one's end (without the two edges).
    busy_steady: float = math.nan
    # Median time the runtime spent per request beyond T (the synthetic runtime oversleeping under load).
    runtime_extra_ms: float = math.nan
    # CPU used per task by the agent process (start-up included) and by moto (the emulated AWS) in the run.
    agent_cpu_ms_per_task: float = math.nan
    moto_cpu_ms_per_task: float = math.nan
    receives: int = 0
    empty_receives: int = 0
    generations: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def agent_command(agent: str, events: Path) -> list[str]:
    module = {
        "easel": "queue_agent",
        "easel-traced": "queue_agent",
        "baseline": "bench.baseline_agent",
        "floor": "bench.floor_agent",
    }[agent]
    return [sys.executable, "-m", "bench.probe", str(events), module]


def agent_env(
    agent: str, stack: LocalStack, runtime_url: str, tasks: int = 0, workdir: Path | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("EASEL_BENCH_") or not k.startswith(("EASEL_", "AWS_"))
    }
    env.update(aws_env(stack.endpoint))
    env["PYTHONUNBUFFERED"] = "1"
    env = importable(env)
    res = stack.resources
    if agent == "easel-traced":
        env["EASEL_TRACES"] = f"file:{(workdir or Path(tempfile.gettempdir())) / 'traces'}"
    if agent in ("easel", "easel-traced"):
        spec = stack.config.runtime(RUNTIME)
        env.update(
            {
                "EASEL_RUNTIME": RUNTIME,
                "EASEL_HIGH_QUEUE_URL": stack.high_queue_url,
                "EASEL_NORMAL_QUEUE_URL": stack.normal_queue_url,
                "EASEL_TABLE_NAME": res.table,
                "EASEL_OUTPUTS_BUCKET": res.outputs_bucket,
                "EASEL_RESULTS_TOPIC_ARN": res.results_topic_arn,
                "EASEL_MODELS": json.dumps({MODEL: MODEL_PATH}),
                "EASEL_RUNTIME_URL": runtime_url,
                "EASEL_TASK_TIMEOUT_SECONDS": str(spec.task_timeout_seconds),
                "EASEL_VISIBILITY_TIMEOUT_SECONDS": str(spec.visibility_timeout_seconds),
                "EASEL_MAX_RECEIVE_COUNT": str(spec.max_receive_count),
                "EASEL_AGENT_PORT": str(free_port()),
                "EASEL_AGENT_HOST": "127.0.0.1",
            }
        )
    elif agent == "floor":
        env.update(
            {
                "SQS_QUEUE_URL": stack.normal_queue_url,
                "API_BASE_URL": f"{runtime_url}/sdapi/v1/",
                "FLOOR_TASKS": str(tasks),
            }
        )
    else:
        env.update(
            {
                "RUNTIME_TYPE": "sdwebui",
                "SQS_QUEUE_URL": stack.normal_queue_url,
                "SNS_TOPIC_ARN": res.results_topic_arn,
                "S3_BUCKET": res.outputs_bucket,
                "API_BASE_URL": f"{runtime_url}/sdapi/v1/",
                "DYNAMIC_SD_MODEL": "false",
            }
        )
    return env


class EventTail:
    """Reads the probe's events file incrementally (the bench polls it while the runtime thread serves)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[ProbeEvent] = []
        self._offset = 0
        self._deleted = 0
        self.received = False

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line being written stays for the next poll
        self._offset += end
        for line in chunk[:end].splitlines():
            try:
                event = ProbeEvent(**json.loads(line))
            except (ValueError, TypeError):
                continue
            self.events.append(event)
            if event.op in DELETES:
                self._deleted += event.count
            elif event.op == "ReceiveMessage" and event.count:
                self.received = True

    @property
    def deleted(self) -> int:
        return self._deleted


def read_events(path: Path) -> list[ProbeEvent]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(ProbeEvent(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line being written right now
    return events


DELETES = frozenset({"DeleteMessage", "DeleteMessageBatch"})


def run_agent(
    agent: str, stack: LocalStack, runtime: SyntheticRuntime, hold_ms: float, tasks: int, workdir: Path
) -> AgentRun:
    """One run of ``agent`` over a fresh backlog of ``tasks`` tasks with the runtime holding ``hold_ms``."""
    result = AgentRun(agent=agent, hold_ms=hold_ms, tasks=tasks)
    stack.reset()
    runtime.reset(hold_seconds=hold_ms / 1000.0)
    batch = stack.enqueue(tasks, batch_id=f"{agent}-{int(hold_ms)}-{new_batch_id()}")
    events_path = workdir / f"{agent}-{int(hold_ms)}.events"
    events_path.unlink(missing_ok=True)
    log_path = workdir / f"{agent}-{int(hold_ms)}.log"
    timeout = 60.0 + tasks * (hold_ms / 1000.0 + 1.0) * 2
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            agent_command(agent, events_path),
            env=agent_env(agent, stack, runtime.url, tasks, workdir),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + timeout
            # CPU counters when the work starts (first message received): start-up is not charged to tasks.
            cpu_at_start: tuple[float, float] | None = None
            tail = EventTail(events_path)
            while True:
                tail.poll()
                if cpu_at_start is None and tail.received:
                    cpu_at_start = (cpu_seconds(proc.pid), cpu_seconds(stack.moto_pid))
                if tail.deleted >= tasks:
                    break
                if proc.poll() is not None:
                    result.error = f"agent exited with {proc.returncode} (log: {log_path})"
                    break
                if time.monotonic() > deadline:
                    result.error = f"timed out after {timeout:.0f} s (log: {log_path})"
                    break
                time.sleep(0.05)
            if cpu_at_start is not None:
                agent_cpu, moto_cpu = cpu_at_start
                result.agent_cpu_ms_per_task = (cpu_seconds(proc.pid) - agent_cpu) * 1000.0 / tasks
                result.moto_cpu_ms_per_task = (cpu_seconds(stack.moto_pid) - moto_cpu) * 1000.0 / tasks
        finally:
            # The baseline, like the sample, only sees SIGTERM after its 20 s long poll returns: no need to
            # wait for that. Easel's agent drains (nothing is in flight by now) and exits on its own.
            _stop(proc, grace=30.0 if agent == "easel" else 2.0)
    events = read_events(events_path)
    summarize(result, events, runtime.busy_spans())
    if agent == "easel":
        result.statuses = stack.statuses(batch)
    return result


def summarize(result: AgentRun, events: list[ProbeEvent], generations: list[tuple[float, float]]) -> None:
    """Fill the window, busy fraction, throughput and per-task overheads of ``result``."""
    receives = [e for e in events if e.op == "ReceiveMessage"]
    result.receives = len(receives)
    result.empty_receives = sum(1 for e in receives if e.count == 0)
    first = next((e for e in sorted(receives, key=lambda e: e.start) if e.count > 0), None)
    done = 0
    last_end = None
    for e in sorted((e for e in events if e.op in DELETES), key=lambda e: e.end):
        done += e.count
        if done >= result.tasks:
            last_end = e.end
            break
    result.completed = min(done, result.tasks)
    if first is None or last_end is None:
        return
    lo, hi = first.start, last_end
    window = hi - lo
    gens = sorted((s, e) for s, e in generations if s >= lo and s < hi)
    result.generations = len(gens)
    result.window_s = window
    result.busy = union_length(gens, lo, hi) / window
    result.tasks_per_s = result.tasks / window
    if gens:
        result.lead_in_ms = (gens[0][0] - lo) * 1000.0
        result.tail_ms = (hi - gens[-1][1]) * 1000.0
        result.busy_steady = union_length(gens, gens[0][0], gens[-1][1]) / (gens[-1][1] - gens[0][0])
        result.runtime_extra_ms = median([(e - s) * 1000.0 - result.hold_ms for s, e in gens])
    overheads = []
    for i, (start, end) in enumerate(gens):
        idle_before = (start - lo) if i == 0 else 0.0
        nxt = gens[i + 1][0] if i + 1 < len(gens) else hi
        overheads.append((idle_before + nxt - end) * 1000.0)
    if overheads:
        result.overhead_median_ms = median(overheads)
        result.overhead_p95_ms = percentile(overheads, 95)
        result.overhead_mean_ms = sum(overheads) / len(overheads)
    split_overhead(result, events, gens)


def split_overhead(result: AgentRun, events: list[ProbeEvent], gens: list[tuple[float, float]]) -> None:
    """Split the runtime's idle time between generations into parts, each a median over tasks:

    prewrite  the agent calls txt2img -> the request's first bytes reach the socket (``prewrite_cpu``: the
              CPU the calling thread used meanwhile; the rest it spent ready but not running: GIL or core)
    request   the request is written -> the runtime starts generating (loopback, server parse)
    response  the runtime is done -> the agent has the decoded response
    agent     the agent has a response -> it calls txt2img again (its own work on the critical path)
    """
    calls = sorted(
        (e for e in events if e.op == "http" and e.queue.endswith(("/txt2img", "/img2img"))),
        key=lambda e: e.start,
    )
    prewrite, cpu, request, response, agent = [], [], [], [], []
    for start, end in gens:
        call = next((c for c in calls if c.start <= start and c.end >= end), None)
        if call is None:
            continue
        written = call.written if not math.isnan(call.written) else call.start
        prewrite.append((written - call.start) * 1000.0)
        if not math.isnan(call.cpu_to_write):
            cpu.append(call.cpu_to_write * 1000.0)
        request.append((start - written) * 1000.0)
        response.append((call.end - end) * 1000.0)
        later = [c for c in calls if c.start >= call.end]
        if later:
            agent.append((later[0].start - call.end) * 1000.0)
    result.split_prewrite_ms = median(prewrite)
    result.split_prewrite_cpu_ms = median(cpu)
    result.split_request_ms = median(request)
    result.split_response_ms = median(response)
    result.split_agent_ms = median(agent)


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_agent(
    holds_ms: list[float],
    tasks: int,
    agents: tuple[str, ...] = AGENTS,
    workdir: Path | None = None,
    runtime_nice: int = 0,
) -> list[AgentRun]:
    """Every agent at every hold time, in one run against one stack and one synthetic runtime."""
    runs: list[AgentRun] = []
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        wd = workdir or Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        with (
            local_stack() as stack,
            # progress 0: no progress writes, so the agent's figures stay comparable across runs
            SyntheticRuntime(
                models={MODEL_PATH}, current_model=MODEL_PATH, progress=0.0, nice=runtime_nice
            ) as runtime,
        ):
            # Not measured: the emulator's and the harness's first-use costs (moto builds each operation's
            # serializer on its first call) otherwise land in the first measured run's lead-in (~110 ms
            # here, a few hundredths of busy fraction at T = 100 ms).
            run_agent("easel", stack, runtime, holds_ms[0], WARMUP_TASKS, wd)
            for hold in holds_ms:
                for agent in agents:
                    runs.append(run_agent(agent, stack, runtime, hold, tasks, wd))
    return runs


def busy_target(hold_ms: float) -> float | None:
    return BUSY_TARGETS.get(hold_ms)


def document(runs: list[AgentRun], tasks: int) -> dict[str, Any]:
    """The ``--json`` document: per T, each agent's numbers and Easel's ratios over the baseline."""
    per_hold: dict[str, Any] = {}
    for run in runs:
        entry = per_hold.setdefault(
            str(run.hold_ms), {"hold_ms": run.hold_ms, "busy_target": busy_target(run.hold_ms)}
        )
        entry[run.agent] = run.to_json()
    for entry in per_hold.values():
        easel, base = entry.get("easel"), entry.get("baseline")
        if easel and base:
            entry["tasks_per_s_ratio"] = _div(easel["tasks_per_s"], base["tasks_per_s"])
            entry["busy_ratio"] = _div(easel["busy"], base["busy"])
        traced = entry.get("easel-traced")
        if easel and traced:
            entry["tracing_busy_diff"] = easel["busy"] - traced["busy"]
            entry["tracing_within_budget"] = bool(entry["tracing_busy_diff"] <= TRACING_BUSY_BUDGET)
        if easel:
            target = entry["busy_target"]
            entry["busy_target_met"] = None if target is None else bool(easel["busy"] >= target)
            entry["overhead_target_met"] = bool(easel["overhead_median_ms"] < OVERHEAD_TARGET_MS)
    return {
        "bench": "agent",
        "tasks_per_run": tasks,
        "tracing_busy_budget": TRACING_BUSY_BUDGET,
        "overhead_target_ms": OVERHEAD_TARGET_MS,
        "results": list(per_hold.values()),
    }


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def tables(runs: list[AgentRun]) -> list[Any]:
    from bench.report import fmt, make_table, verdict

    table = make_table(
        "easel bench agent: runtime busy fraction, throughput and per-task overhead",
        [
            "T (ms)",
            "agent",
            "busy",
            "busy target",
            "busy steady",
            "tasks/s",
            "overhead p50 (ms)",
            "p95 (ms)",
            "mean (ms)",
            "done",
        ],
    )
    by_hold: dict[float, dict[str, AgentRun]] = {}
    for run in runs:
        by_hold.setdefault(run.hold_ms, {})[run.agent] = run
    for hold, agents in by_hold.items():
        target = busy_target(hold)
        for name in ALL_AGENTS:
            if name not in agents:
                continue
            run = agents[name]
            is_easel = name == "easel"
            table.add_row(
                fmt(hold, 0),
                name + (f" [red]({run.error})[/red]" if run.error else ""),
                fmt(run.busy, 3),
                (f"{target:.2f} " + verdict(run.busy >= target)) if is_easel and target else "-",
                fmt(run.busy_steady, 3),
                fmt(run.tasks_per_s, 2),
                fmt(run.overhead_median_ms, 1)
                + (" " + verdict(run.overhead_median_ms < OVERHEAD_TARGET_MS) if is_easel else ""),
                fmt(run.overhead_p95_ms, 1),
                fmt(run.overhead_mean_ms, 1),
                f"{run.completed}/{run.tasks}",
            )
        if "easel" in agents and "easel-traced" in agents:
            e, t = agents["easel"], agents["easel-traced"]
            diff = e.busy - t.busy
            table.add_row(
                "", "[bold]easel - easel-traced[/bold]",
                fmt(diff, 3) + " " + verdict(diff <= TRACING_BUSY_BUDGET), "", "", "", "", "", "", "",
            )  # fmt: skip
        if "easel" in agents and "baseline" in agents:
            e, b = agents["easel"], agents["baseline"]
            table.add_row(
                "", "[bold]easel / baseline[/bold]", fmt(_div(e.busy, b.busy), 2) + "x", "",
                "",
                fmt(_div(e.tasks_per_s, b.tasks_per_s), 2) + "x", "", "", "", "",
                end_section=True,
            )  # fmt: skip
    split = make_table(
        "where the per-task overhead goes (medians, ms; from the agents' own HTTP calls to the runtime)",
        [
            "T (ms)",
            "agent",
            "call -> written (CPU)",
            "written -> runtime starts",
            "runtime done -> response",
            "agent -> next request",
            "lead-in (once)",
            "tail (once)",
            "runtime beyond T",
            "CPU/task: agent, moto",
        ],
    )
    for run in runs:
        split.add_row(
            fmt(run.hold_ms, 0),
            run.agent,
            f"{fmt(run.split_prewrite_ms, 1)} ({fmt(run.split_prewrite_cpu_ms, 1)})",
            fmt(run.split_request_ms, 1),
            fmt(run.split_response_ms, 1),
            fmt(run.split_agent_ms, 1),
            fmt(run.lead_in_ms, 1),
            fmt(run.tail_ms, 1),
            fmt(run.runtime_extra_ms, 1),
            f"{fmt(run.agent_cpu_ms_per_task, 1)}, {fmt(run.moto_cpu_ms_per_task, 1)}",
        )
    return [table, split]
