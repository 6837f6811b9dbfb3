"""``easel bench plan``: the planner's prediction against the real local pipeline on the same small profile.

Reality here is: moto (its own process) provisioned from the bench config, tasks written and published
like the API does, real queue agents (``python -m queue_agent``, one process per pod) each with its own
synthetic runtime holding every generation for the profile's service time, and a local scaler that polls
the two lanes (visible + in flight, like ``scaleOnInFlight``) and starts or stops agents with the same rule
KEDA and the HPA apply (:mod:`easel.plan.keda`, the code the simulator uses). A stopped agent gets SIGTERM
(newest first, like a ReplicaSet scale-in) and drains.

1. Calibrate (inputs of the model, measured here, not fitted to the result): the agent's start time
   (spawn -> ``GET /ready`` 200), its per-task overhead (runtime idle between two generations of a
   backlog) and its settle time (generation end -> ``completed_at`` in the table).
2. Predict: ``easel.plan`` simulates the profile with those inputs (no nodes: launch 0, no image pull).
3. Measure: replay the same submit times (same seed, same arrival generator) through the real pipeline;
   latency = the task's ``completed_at`` - ``created_at`` (both written with the same clock).
4. Compare throughput (tasks / last completion) and p95 latency: the target is within 10 %.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.agent import agent_env
from bench.localstack import MODEL, RUNTIME, TENANT, LocalStack, bench_config, local_stack, new_batch_id
from bench.stats import median
from bench.synthetic_runtime import SyntheticRuntime
from easel.contract import (
    QueueMessage,
    Task,
    TaskStatus,
    parse_task_request,
    request_fingerprint,
)
from easel.lifecycle import publish_task, queued_task
from easel.plan.arrivals import arrival_times
from easel.plan.keda import Hpa, Keda, Policy, Rules, sqs_metric
from easel.plan.profile import Plan, parse_profile, resolve
from easel.plan.report import percentile
from easel.plan.sim import simulate
from easel.store import TaskStore

TARGET = 0.10


def validation_profile(
    *, hold_s: float, duration_s: float, rate: float, burst: int, max_replicas: int
) -> dict[str, Any]:
    """The small profile: Poisson arrivals plus one burst, on the bench runtime, scaled like KEDA would."""
    return {
        "name": "validation",
        "runtime": RUNTIME,
        "duration_seconds": duration_s,
        "seed": 7,
        "traffic": {
            "kind": "bursts",
            "rate_per_second": rate,
            "burst_size": burst,
            "burst_every_seconds": duration_s / 2,
        },
        "requests": [{"model": MODEL, "steps": 1, "width": 64, "height": 64, "tenant": TENANT}],
        "service": {MODEL: {"fixed_seconds": hold_s}},
        "scaling": {
            "queue_length": 2,
            "activation_queue_length": 0,
            "min_replicas": 1,
            "max_replicas": max_replicas,
            "cooldown_seconds": 20,
            "polling_seconds": 2,
            "scale_in_stabilization_seconds": 10,
            "hpa_sync_seconds": 4,
        },
        "capacity": {"spot": False, "launch_seconds": 0, "consolidate_after_seconds": 0},
        "pod": {"image_pull_seconds": 0, "model_load_seconds": 0},
        "agent": {"overlap": True, "prefetch": 1, "submit_seconds": 0.0},
    }


@dataclass
class Calibration:
    start_s: float
    overhead_s: float
    settle_s: float
    service_s: float


@dataclass
class Validation:
    profile: dict[str, Any]
    calibration: Calibration
    tasks: int
    predicted_throughput: float
    measured_throughput: float
    predicted_p95_s: float
    measured_p95_s: float
    predicted_p50_s: float
    measured_p50_s: float
    predicted_max_replicas: int
    measured_max_replicas: int
    measured_statuses: dict[str, int] = field(default_factory=dict)
    submit_lag_max_s: float = 0.0
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (submitted at, latency), measured
    error: str | None = None

    @property
    def throughput_error(self) -> float:
        return self.measured_throughput / self.predicted_throughput - 1

    @property
    def p95_error(self) -> float:
        return self.measured_p95_s / self.predicted_p95_s - 1

    @property
    def within_target(self) -> bool:
        return abs(self.throughput_error) <= TARGET and abs(self.p95_error) <= TARGET

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "throughput_error": self.throughput_error,
            "p95_error": self.p95_error,
            "within_target": self.within_target,
        }


class AgentPod:
    """One agent process with its own synthetic runtime: a pod of the local pool."""

    def __init__(self, stack: LocalStack, runtime: SyntheticRuntime, log: Path) -> None:
        env = agent_env("easel", stack, runtime.url)
        self.port = int(env["EASEL_AGENT_PORT"])
        self.runtime = runtime
        self.spawned = time.monotonic()
        self.ready_at: float | None = None
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "queue_agent"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def poll_ready(self) -> bool:
        if self.ready_at is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=0.5).status_code == 200:
                    self.ready_at = time.monotonic()
            except httpx.HTTPError:
                pass
        return self.ready_at is not None

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Pool:
    """The Deployment: ``replicas`` agent pods, each with a free runtime from a fixed set."""

    def __init__(self, stack: LocalStack, runtimes: list[SyntheticRuntime], workdir: Path) -> None:
        self.stack = stack
        self.free = list(runtimes)
        self.pods: list[AgentPod] = []
        self.stopping: list[AgentPod] = []
        self.workdir = workdir
        self._n = 0

    def scale(self, replicas: int) -> None:
        self._reap()
        while len(self.pods) < replicas and self.free:
            self._n += 1
            self.pods.append(AgentPod(self.stack, self.free.pop(0), self.workdir / f"agent-{self._n}.log"))
        while len(self.pods) > replicas:
            # ReplicaSet order: not ready first, then the newest.
            victim = sorted(self.pods, key=lambda p: (p.poll_ready(), p.spawned))[-1]
            victim = next((p for p in self.pods if not p.poll_ready()), victim)
            self.pods.remove(victim)
            victim.terminate()
            self.stopping.append(victim)

    def _reap(self) -> None:
        for pod in list(self.stopping):
            if pod.proc.poll() is not None:
                pod.wait()
                self.stopping.remove(pod)
                self.free.append(pod.runtime)

    def close(self) -> None:
        for pod in self.pods:
            pod.terminate()
        for pod in self.pods + self.stopping:
            pod.wait()
        self.pods, self.stopping = [], []


class LocalScaler(threading.Thread):
    """KEDA (activation/cooldown, every polling interval) and the HPA (every sync) over the real queues."""

    def __init__(self, plan: Plan, stack: LocalStack, pool: Pool, replicas: int) -> None:
        super().__init__(daemon=True)
        s = plan.scaling
        self.plan, self.stack, self.pool = plan, stack, pool
        self.replicas = replicas
        self.max_seen = replicas
        self.keda = Keda(s.activation_queue_length, s.min_replicas, s.cooldown_seconds)
        self.hpa = Hpa(
            target=s.queue_length,
            min_replicas=max(s.min_replicas, 1),
            max_replicas=s.max_replicas,
            scale_down=Rules(s.scale_in_stabilization_seconds, (Policy("Percent", 100, 15.0),)),
        )
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        # (seconds since t0, metric, replicas, ready agents): what the scaler saw and did.
        self.timeline: list[tuple[float, int, int, int]] = []

    def metric(self) -> int:
        total = self.stack.queue_depth(self.stack.high_queue_url) + self.stack.queue_depth(
            self.stack.normal_queue_url
        )
        return sqs_metric(total, 0)  # queue_depth already counts visible + not visible (in flight)

    def run(self) -> None:
        s = self.plan.scaling
        next_hpa = s.hpa_sync_seconds
        tick = 0
        while True:
            # On schedule (t0 + k * polling), not "polling after the last pass": a pass takes time here.
            tick += 1
            if self.stop.wait(max(0.0, self.t0 + tick * s.polling_seconds - time.monotonic())):
                return
            now = time.monotonic() - self.t0
            metric = self.metric()
            n = self.keda.poll(now, self.replicas, metric)
            if now >= next_hpa:
                next_hpa += s.hpa_sync_seconds
                if n > 0:
                    n = self.hpa.step(now, n, metric)
            self.replicas = n
            self.max_seen = max(self.max_seen, n)
            self.pool.scale(n)
            ready = sum(1 for p in self.pool.pods if p.poll_ready())
            self.timeline.append((round(now, 2), metric, n, ready))


def _wait_done(store: TaskStore, ids: list[str], timeout: float) -> dict[str, Any]:
    """Poll the table until every task is terminal; returns the tasks by id."""
    pending = set(ids)
    done: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for task_id in list(pending):
            task = store.get(TENANT, task_id)
            if task.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED):
                done[task_id] = task
                pending.discard(task_id)
        if pending:
            time.sleep(1.0)
    return done


def _submit(store: TaskStore, sns: Any, topic_arn: str, task_id: str, seed: int) -> Task:
    """Write one task and publish it like the API's submit (as LocalStack.enqueue, with shared clients)."""
    request = parse_task_request(
        {
            "id": task_id,
            "task_type": "text-to-image",
            "model": MODEL,
            "input": {"prompt": f"plan {seed}", "steps": 1, "width": 64, "height": 64, "seed": seed},
        }
    )
    task = queued_task(request, tenant=TENANT, runtime=RUNTIME)
    store.create(task, request_fingerprint(request))
    publish_task(sns, topic_arn, QueueMessage.from_task(task))
    return task


def calibrate(
    stack: LocalStack, runtimes: list[SyntheticRuntime], hold_s: float, workdir: Path
) -> Calibration:
    """Measure the model's inputs the way the run will exercise them: one agent works a backlog while
    ``len(runtimes) - 1`` more start at once (a scale-up: their mean time to ready); then the per-task
    overhead (runtime idle between two generations), settle time (generation end -> ``completed_at``)
    and generation time over every runtime."""
    stack.reset()
    for r in runtimes:
        r.reset(hold_seconds=hold_s)
    pods = [AgentPod(stack, runtimes[0], workdir / "calibrate-0.log")]
    try:
        _wait_ready(pods, workdir)
        offset = time.time() - time.monotonic()  # monotonic (runtime records) -> wall (table timestamps)
        tasks = stack.enqueue(4 + 3 * len(runtimes), batch_id=f"cal-{new_batch_id()}")
        starting = [AgentPod(stack, r, workdir / f"calibrate-{i}.log") for i, r in enumerate(runtimes[1:], 1)]
        pods += starting
        _wait_ready(pods, workdir)
        start_s = sum((p.ready_at or 0.0) - p.spawned for p in starting) / len(starting) if starting else 0.0
        store = TaskStore(stack.session.client("dynamodb"), stack.resources.table)
        done = _wait_done(store, [t.id for t in tasks], 300.0)
    finally:
        for p in pods:
            p.terminate()
        for p in pods:
            p.wait()
    gaps: list[float] = []
    ends: list[float] = []
    services: list[float] = []
    for r in runtimes:
        gens = r.busy_spans()
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(gens)]
        ends += [e for _, e in gens]
        services += [e - s for s, e in gens]
    completed = sorted(t.completed_at.timestamp() for t in done.values() if t.completed_at is not None)
    settles = [c - (e + offset) for c, e in zip(completed, sorted(ends), strict=False)]
    return Calibration(
        start_s=start_s,
        overhead_s=median(gaps) if gaps else 0.0,
        settle_s=median(settles),
        service_s=median(services),
    )


def _wait_ready(pods: list[AgentPod], workdir: Path) -> None:
    while not all(p.poll_ready() for p in pods):
        for p in pods:
            if p.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {p.proc.returncode} (logs in {workdir})")
        time.sleep(0.05)


def predict(profile: dict[str, Any], cal: Calibration) -> tuple[Plan, list[float], float, float, float, int]:
    # The runtime's measured generation time on this machine (T plus its oversleep) is the service time.
    profile = {**profile, "service": {MODEL: {"fixed_seconds": round(cal.service_s, 4)}}}
    plan = resolve(parse_profile(profile), bench_config())
    plan = plan.with_overrides(
        {
            "pod.model_load_seconds": round(cal.start_s, 3),
            "agent.overhead_seconds": round(max(cal.overhead_s, 0.0), 4),
            "agent.settle_seconds": round(max(cal.settle_s, 0.0), 4),
        },
        origin="calibration",
    )
    result = simulate(plan)
    lat = [t.done - t.submit for t in result.tasks if t.done is not None]
    last = max(t.done for t in result.tasks if t.done is not None)
    throughput = len(lat) / last
    return (
        plan,
        [t.submit for t in result.tasks],
        throughput,
        percentile(lat, 95),
        percentile(lat, 50),
        max(s.replicas for s in result.samples),
    )


def validate(
    *,
    hold_s: float = 3.0,
    duration_s: float = 90.0,
    rate: float = 0.4,
    burst: int = 8,
    max_replicas: int = 3,
    workdir: Path | None = None,
) -> Validation:
    """Calibrate, predict, replay, compare (see the module docstring)."""
    import tempfile

    work = workdir or Path(tempfile.mkdtemp(prefix="easel-plan-validate-"))
    work.mkdir(parents=True, exist_ok=True)
    profile = validation_profile(
        hold_s=hold_s, duration_s=duration_s, rate=rate, burst=burst, max_replicas=max_replicas
    )
    runtimes = [
        SyntheticRuntime(hold_seconds=hold_s, models={MODEL}, current_model=MODEL, progress=0.0)
        for _ in range(max_replicas + 1)
    ]
    for r in runtimes:
        r.up()
    try:
        with local_stack() as stack:
            # The profile's min_replicas is 1: a scale-up starts up to max_replicas - 1 agents at once.
            cal = calibrate(stack, runtimes[:max_replicas], hold_s, work)
            plan, submits, p_tput, p_p95, p_p50, p_max = predict(profile, cal)
            # The same submit times as the simulation (same seed, same generator).
            assert submits == arrival_times(plan, __import__("random").Random(plan.seed))
            stack.reset()
            for r in runtimes:
                r.reset(hold_seconds=hold_s)
            pool = Pool(stack, runtimes, work)
            try:
                pool.scale(plan.scaling.min_replicas)
                while not all(p.poll_ready() for p in pool.pods):
                    time.sleep(0.05)
                scaler = LocalScaler(plan, stack, pool, plan.scaling.min_replicas)
                store = TaskStore(stack.session.client("dynamodb"), stack.resources.table)
                sns = stack.session.client("sns")  # boto3 clients are thread-safe; sessions are not
                batch = new_batch_id()
                t0_wall = time.time()
                t0 = time.monotonic()
                scaler.t0 = t0
                scaler.start()
                # Submit on schedule from a few threads, so one slow publish does not delay the next ones.
                from concurrent.futures import ThreadPoolExecutor

                def submit(i: int, at: float) -> tuple[str, float]:
                    delay = t0 + at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    task = _submit(store, sns, stack.resources.tasks_topic_arn, f"v{batch}-{i:04d}", i)
                    return task.id, task.created_at.timestamp() - (t0_wall + at)

                with ThreadPoolExecutor(max_workers=8) as pool_x:
                    futures = [pool_x.submit(submit, i, at) for i, at in enumerate(submits)]
                    sent = [f.result() for f in futures]
                ids = [i for i, _ in sent]
                lag = max(lag for _, lag in sent)
                done = _wait_done(store, ids, 300.0 + duration_s)
                scaler.stop.set()
                scaler.join(timeout=10)
            finally:
                pool.close()
    finally:
        for r in runtimes:
            r.down()
    statuses: dict[str, int] = {}
    for t in done.values():
        statuses[str(t.status)] = statuses.get(str(t.status), 0) + 1
    lat = [(t.completed_at - t.created_at).total_seconds() for t in done.values() if t.completed_at]
    last = max(t.completed_at.timestamp() for t in done.values() if t.completed_at) - t0_wall
    v = Validation(
        profile=profile,
        calibration=cal,
        tasks=len(submits),
        predicted_throughput=p_tput,
        measured_throughput=len(lat) / last,
        predicted_p95_s=p_p95,
        measured_p95_s=percentile(lat, 95),
        predicted_p50_s=p_p50,
        measured_p50_s=percentile(lat, 50),
        predicted_max_replicas=p_max,
        measured_max_replicas=scaler.max_seen,
        measured_statuses=statuses,
        submit_lag_max_s=lag,
        timeline=scaler.timeline,
        latencies=sorted(
            (
                round(t.created_at.timestamp() - t0_wall, 3),
                round((t.completed_at - t.created_at).total_seconds(), 3),
            )
            for t in done.values()
            if t.completed_at
        ),
    )
    if len(done) < len(submits):
        v.error = f"{len(submits) - len(done)} tasks did not finish"
    return v


def main() -> None:  # pragma: no cover - `python -m bench.plan_validation`
    v = validate()
    print(v.to_json())
    sys.exit(0 if v.within_target and v.error is None else 1)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()


def tables(v: Validation) -> list[Any]:
    from bench.report import fmt, make_table, verdict

    cal = make_table(
        "calibration (inputs of the model, measured on this machine)",
        ["agent start (s)", "overhead/task (ms)", "settle (ms)", "service (s)"],
    )
    c = v.calibration
    cal.add_row(
        fmt(c.start_s, 2), fmt(c.overhead_s * 1000, 1), fmt(c.settle_s * 1000, 1), fmt(c.service_s, 3)
    )
    t = make_table(
        f"easel plan vs the local pipeline: {v.tasks} tasks (target: within {TARGET:.0%})",
        ["", "predicted", "measured", "error", "verdict"],
    )
    t.add_row(
        "throughput (tasks/s)",
        fmt(v.predicted_throughput, 3),
        fmt(v.measured_throughput, 3),
        fmt(v.throughput_error * 100, 1, " %"),
        verdict(abs(v.throughput_error) <= TARGET),
    )
    t.add_row(
        "p95 latency (s)",
        fmt(v.predicted_p95_s, 2),
        fmt(v.measured_p95_s, 2),
        fmt(v.p95_error * 100, 1, " %"),
        verdict(abs(v.p95_error) <= TARGET),
    )
    t.add_row("p50 latency (s)", fmt(v.predicted_p50_s, 2), fmt(v.measured_p50_s, 2), "", "")
    t.add_row("max replicas", str(v.predicted_max_replicas), str(v.measured_max_replicas), "", "")
    t.add_row("statuses", "", ", ".join(f"{k} {n}" for k, n in v.measured_statuses.items()), "", "")
    t.add_row("submit lag, max (s)", "", fmt(v.submit_lag_max_s, 3), "", "")
    return [cal, t]
