"""The discrete-event model of one runtime pool (simpy): queues, KEDA + HPA, Karpenter nodes, agents.

    arrivals --(submit_seconds)--> lane queues (high, normal)
    KEDA poll (polling_seconds): activation 0 <-> 1 and the cooldown to 0          } easel.plan.keda
    HPA sync (hpa_sync_seconds): ceil(metric / queue_length) with behaviour       }
    replicas -> pods (Deployment) -> nodes (Karpenter: reuse an empty node, else launch one: spot first,
        on-demand on a failed spot launch; an empty node goes after consolidate_after_seconds)
    pod start: image pull (first pod on a node) + model load -> the agent receives
    agent: holds 1 running + ``prefetch`` received tasks; per task: overhead (runtime idle) -> generation
        (service time) -> settle (upload, status, notification, delete: beside the next task if overlap)
    scale-in: Kubernetes' ReplicaSet order (unscheduled, not ready, then newest ready); a draining agent
        returns its prefetched messages, finishes the running task within its grace, then exits.
    spot interruption (exponential per spot node): two-minute notice, the pod drains with
        min(grace, notice), a task still running at the end is interrupted and its message returned.

Messages are received by a pod with room chosen at random (SQS hands a message to whichever long poll
is waiting), high lane first. One pod per node (the pool's pods request the node's GPUs).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from easel.plan.arrivals import arrival_times
from easel.plan.keda import DEFAULT_SCALE_UP, Hpa, Keda, Policy, Rules, sqs_metric
from easel.plan.profile import Plan

SPOT, ON_DEMAND = "spot", "on-demand"


@dataclass
class SimTask:
    id: int
    cls: int
    tenant: str
    lane: str
    images: int
    service: float
    submit: float
    received: float | None = None
    started: float | None = None
    done: float | None = None
    returns: int = 0


@dataclass
class Node:
    id: int
    capacity: str
    price: float
    requested: float
    ready_at: float | None = None
    ended: float | None = None
    has_image: bool = False
    pod: Pod | None = None
    empty_since: float | None = None
    busy: float = 0.0
    pod_start: float = 0.0
    ready_event: simpy.Event | None = None


@dataclass
class Pod:
    id: int
    created: float
    node: Node | None = None
    state: str = "starting"  # starting -> ready -> draining -> gone
    ready_at: float | None = None
    held: list[SimTask] = field(default_factory=list)
    occupied: bool = False
    running: SimTask | None = None
    wake: simpy.Event | None = None
    proc: simpy.Process | None = None


@dataclass
class Sample:
    t: float
    high: int
    normal: int
    in_flight: int
    replicas: int
    ready: int
    nodes_spot: int
    nodes_on_demand: int
    oldest_age: float


@dataclass
class SimResult:
    plan: Plan
    tasks: list[SimTask]
    nodes: list[Node]
    samples: list[Sample]
    horizon: float
    interruptions: int = 0
    returned: int = 0


class Simulation:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.env = simpy.Environment()
        self.rng = random.Random(plan.seed)
        self.lanes: dict[str, deque[SimTask]] = {"high": deque(), "normal": deque()}
        self.in_flight = 0
        self.replicas = 0
        self.pods: list[Pod] = []
        self.nodes: list[Node] = []
        self.tasks: list[SimTask] = []
        self.samples: list[Sample] = []
        self.interruptions = 0
        self.returned = 0
        self._pending = 0
        self._all_arrived = False
        self._finished = self.env.event()
        s = plan.scaling
        self.keda = Keda(s.activation_queue_length, s.min_replicas, s.cooldown_seconds)
        self.hpa = Hpa(
            target=s.queue_length,
            min_replicas=max(s.min_replicas, 1),
            max_replicas=s.max_replicas,
            scale_up=DEFAULT_SCALE_UP,
            scale_down=Rules(s.scale_in_stabilization_seconds, (Policy("Percent", 100, 15.0),)),
        )

    # -- driver ----------------------------------------------------------------------------------------
    def run(self) -> SimResult:
        times = arrival_times(self.plan, self.rng)
        weights = [r.weight for r in self.plan.requests]
        classes = self.rng.choices(range(len(self.plan.requests)), weights=weights, k=len(times))
        for i, (t, c) in enumerate(zip(times, classes, strict=True)):
            r = self.plan.requests[c]
            assert r.tenant is not None
            self.tasks.append(
                SimTask(i, c, r.tenant, r.lane, r.batch_size, self.plan.request_seconds(r), submit=t)
            )
        self._pending = len(self.tasks)
        # min_replicas pods were running before the profile starts (their nodes up, images pulled).
        self.replicas = self.plan.scaling.min_replicas
        for _ in range(self.replicas):
            self._warm_pod()
        self.env.process(self._arrivals())
        self.env.process(self._keda())
        self.env.process(self._hpa())
        self.env.process(self._sampler())
        end = max(self.plan.duration_seconds, self.tasks[-1].submit if self.tasks else 0.0)
        cap = self.env.timeout(end + 6 * 3600)
        self.env.run(until=self.env.any_of([self._finished, cap]) if self.tasks else cap)
        horizon = max(self.plan.duration_seconds, self.env.now)
        return SimResult(
            self.plan, self.tasks, self.nodes, self.samples, horizon, self.interruptions, self.returned
        )

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        delay = self.plan.agent.submit_seconds
        for task in self.tasks:
            at = task.submit + delay
            if at > self.env.now:
                yield self.env.timeout(at - self.env.now)
            self.lanes[task.lane].append(task)
            self.dispatch()
        self._all_arrived = True

    # -- scaling ---------------------------------------------------------------------------------------
    def metric(self) -> int:
        visible = len(self.lanes["high"]) + len(self.lanes["normal"])
        return sqs_metric(visible, self.in_flight, scale_on_in_flight=self.plan.scaling.scale_on_in_flight)

    def _keda(self) -> Generator[simpy.Event, Any, None]:
        while True:
            n = self.keda.poll(self.env.now, self.replicas, self.metric())
            if n != self.replicas:
                self.replicas = n
                self.reconcile()
            yield self.env.timeout(self.plan.scaling.polling_seconds)

    def _hpa(self) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self.env.timeout(self.plan.scaling.hpa_sync_seconds)
            if self.replicas > 0:
                n = self.hpa.step(self.env.now, self.replicas, self.metric())
                if n != self.replicas:
                    self.replicas = n
                    self.reconcile()

    def reconcile(self) -> None:
        """The Deployment controller: create or delete pods until ``replicas`` are alive."""
        alive = [p for p in self.pods if p.state in ("starting", "ready")]
        for _ in range(self.replicas - len(alive)):
            self._create_pod()
        if len(alive) > self.replicas:
            # ReplicaSet order: unscheduled (node not ready) < not ready < ready; newest first within.
            def rank(p: Pod) -> tuple[int, float]:
                node_ready = p.node is not None and p.node.ready_at is not None
                return (0 if not node_ready else 1 if p.state == "starting" else 2, -p.created)

            for pod in sorted(alive, key=rank)[: len(alive) - self.replicas]:
                self._terminate(pod, self._grace())

    def _grace(self) -> float:
        return self.plan.agent.shutdown_grace_seconds or self.plan.task_timeout_seconds

    # -- nodes -----------------------------------------------------------------------------------------
    def _create_pod(self) -> None:
        pod = Pod(id=len(self.pods), created=self.env.now)
        self.pods.append(pod)
        free = [n for n in self.nodes if n.ended is None and n.pod is None]
        # Prefer a node that is up (ready) over one still launching.
        free.sort(key=lambda n: (n.ready_at is None, n.requested))
        node = free[0] if free else self._launch()
        node.pod = pod
        node.empty_since = None
        pod.node = node
        self.env.process(self._start_pod(pod, node))

    def _warm_pod(self) -> None:
        node = self._launch(warm=True)
        pod = Pod(id=len(self.pods), created=0.0, node=node, state="ready", ready_at=0.0)
        node.pod = pod
        self.pods.append(pod)
        pod.proc = self.env.process(self._agent(pod))

    def _launch(self, *, warm: bool = False) -> Node:
        cap = self.plan.capacity
        inst = self.plan.instance
        got_spot = cap.spot and self.rng.random() < cap.spot_availability
        kind = SPOT if got_spot or not cap.on_demand else ON_DEMAND
        delay = cap.launch_seconds if cap.launch_seconds is not None else inst.launch_seconds
        if kind == ON_DEMAND and cap.spot:
            delay += cap.fallback_seconds  # the spot launch failed first (insufficient capacity)
        price = inst.spot_hour_usd if kind == SPOT else inst.on_demand_hour_usd
        node = Node(id=len(self.nodes), capacity=kind, price=price, requested=self.env.now)
        node.ready_event = self.env.event()
        self.nodes.append(node)
        if warm:
            node.has_image = True
            delay = 0.0
        self.env.process(self._node_up(node, delay))
        return node

    def _node_up(self, node: Node, delay: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay)
        node.ready_at = self.env.now
        assert node.ready_event is not None
        node.ready_event.succeed()
        if node.pod is None:
            self._empty(node)
        if node.capacity == SPOT:
            rate = self.plan.capacity.interruptions_per_hour
            rate = self.plan.instance.spot_interruptions_per_hour if rate is None else rate
            if rate > 0:
                self.env.process(self._interruption(node, self.rng.expovariate(rate / 3600.0)))

    def _empty(self, node: Node) -> None:
        node.empty_since = self.env.now
        self.env.process(self._consolidate(node, self.env.now))

    def _consolidate(self, node: Node, since: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.plan.capacity.consolidate_after_seconds)
        if (
            node.ended is None
            and node.pod is None
            and node.empty_since == since
            and node.ready_at is not None
        ):
            node.ended = self.env.now

    def _interruption(self, node: Node, after: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(after)
        if node.ended is not None:
            return
        self.interruptions += 1
        notice = self.plan.spot_notice_seconds
        pod = node.pod
        node.pod = None
        node.ended = self.env.now + notice  # the instance goes at the end of the notice
        if pod is not None and pod.state in ("starting", "ready"):
            self._terminate(pod, min(self._grace(), notice), replace=True)

    # -- pods and agents -------------------------------------------------------------------------------
    def _start_pod(self, pod: Pod, node: Node) -> Generator[simpy.Event, Any, None]:
        assert node.ready_event is not None
        yield node.ready_event
        if pod.state != "starting":
            return
        took = self.plan.pod.model_load_seconds + (
            0.0 if node.has_image else self.plan.pod.image_pull_seconds
        )
        node.has_image = True
        node.pod_start += took
        yield self.env.timeout(took)
        if pod.state != "starting":
            return
        pod.state = "ready"
        pod.ready_at = self.env.now
        pod.proc = self.env.process(self._agent(pod))
        self.dispatch()

    def _terminate(self, pod: Pod, grace: float, *, replace: bool = False) -> None:
        was_ready = pod.state == "ready"
        pod.state = "draining" if was_ready else "gone"
        for task in reversed(pod.held):  # prefetched messages go back (visibility 0)
            self._return(task)
        pod.held.clear()
        if not was_ready:
            self._release(pod)
        else:
            if pod.running is not None:
                self.env.process(self._deadline(pod, pod.running, grace))
            self._wake(pod)
        if replace:
            self.reconcile()
        self.dispatch()

    def _deadline(self, pod: Pod, task: SimTask, grace: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(grace)
        if pod.running is task and pod.proc is not None and pod.proc.is_alive:
            pod.proc.interrupt("grace")

    def _release(self, pod: Pod) -> None:
        node = pod.node
        if node is not None and node.pod is pod:
            node.pod = None
            if node.ended is None and node.ready_at is not None:
                self._empty(node)
        pod.state = "gone"

    def _return(self, task: SimTask) -> None:
        self.in_flight -= 1
        task.returns += 1
        self.returned += 1
        self.lanes[task.lane].appendleft(task)

    def _wake(self, pod: Pod) -> None:
        if pod.wake is not None and not pod.wake.triggered:
            pod.wake.succeed()

    def room(self, pod: Pod) -> int:
        return 1 + self.plan.agent.prefetch - len(pod.held) - (1 if pod.occupied else 0)

    def dispatch(self) -> None:
        """Hand visible messages to pods with room (high lane first), as waiting long polls would."""
        while self.lanes["high"] or self.lanes["normal"]:
            pods = [p for p in self.pods if p.state == "ready" and self.room(p) > 0]
            if not pods:
                return
            pod = pods[0] if len(pods) == 1 else self.rng.choice(pods)
            task = (self.lanes["high"] or self.lanes["normal"]).popleft()
            if task.received is None:
                task.received = self.env.now
            self.in_flight += 1
            pod.held.append(task)
            self._wake(pod)

    def _agent(self, pod: Pod) -> Generator[simpy.Event, Any, None]:
        agent = self.plan.agent
        node = pod.node
        assert node is not None
        while True:
            if not pod.held:
                if pod.state != "ready":
                    break
                pod.wake = self.env.event()
                yield pod.wake
                continue
            # High lane first among what the agent holds.
            task = next((t for t in pod.held if t.lane == "high"), pod.held[0])
            pod.held.remove(task)
            pod.occupied = True
            pod.running = task
            self.dispatch()  # a prefetch slot opened
            try:
                if agent.overhead_seconds:
                    yield self.env.timeout(agent.overhead_seconds)
                task.started = self.env.now
                yield self.env.timeout(task.service)
            except simpy.Interrupt:
                # Past the grace (or the node's notice): the runtime is interrupted, the message returned.
                if task.started is not None:
                    node.busy += self.env.now - task.started
                task.started = None
                pod.running = None
                pod.occupied = False
                self._return(task)
                self.dispatch()
                break
            node.busy += task.service
            pod.running = None
            if agent.overlap:
                pod.occupied = False
                self.env.process(self._settle(task))
            else:
                yield self.env.timeout(agent.settle_seconds)
                self._complete(task)
                pod.occupied = False
            self.dispatch()
            if pod.state != "ready" and not pod.held:
                break
        self._release(pod)

    def _settle(self, task: SimTask) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.plan.agent.settle_seconds)
        self._complete(task)

    def _complete(self, task: SimTask) -> None:
        task.done = self.env.now
        self.in_flight -= 1
        self._pending -= 1
        if self._pending == 0 and not self._finished.triggered:
            self._finished.succeed()

    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        step = max(1.0, min(5.0, self.plan.duration_seconds / 2000))
        while True:
            oldest = [q[0].submit for q in self.lanes.values() if q]
            live = [n for n in self.nodes if n.ended is None or n.ended > self.env.now]
            self.samples.append(
                Sample(
                    t=self.env.now,
                    high=len(self.lanes["high"]),
                    normal=len(self.lanes["normal"]),
                    in_flight=self.in_flight,
                    replicas=self.replicas,
                    ready=sum(1 for p in self.pods if p.state == "ready"),
                    nodes_spot=sum(1 for n in live if n.capacity == SPOT),
                    nodes_on_demand=sum(1 for n in live if n.capacity == ON_DEMAND),
                    oldest_age=self.env.now - min(oldest) if oldest else 0.0,
                )
            )
            yield self.env.timeout(step)


def simulate(plan: Plan) -> SimResult:
    return Simulation(plan).run()
