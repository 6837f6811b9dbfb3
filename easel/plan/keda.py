"""KEDA's SQS scaler and the Kubernetes HPA, as arithmetic (no clock, no I/O): the rules Easel deploys.

The chart (charts/easel-runtime/templates/scaledobject.yaml) deploys, per runtime pool:

- two ``aws-sqs-queue`` triggers (high, normal) with ``scaleOnInFlight: "true"``: a lane's metric is
  ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible;
- ``scalingModifiers`` ``high + normal`` with ``metricType: AverageValue``, ``target: queueLength`` and
  ``activationTarget: activationQueueLength`` (one metric, the sum of the lanes);
- ``pollingInterval``, ``cooldownPeriod``, ``minReplicaCount``, ``maxReplicaCount`` from config, and the HPA
  ``behavior.scaleDown.stabilizationWindowSeconds`` (default 300); scale-up keeps the HPA defaults.

What KEDA does with that (KEDA docs "Scaling Deployments", aws-sqs-queue scaler):
- activation, 0 <-> 1: every polling interval, the scaler is *active* when metric > activationQueueLength. An
  active scaler takes a deployment at 0 replicas to max(minReplicaCount, 1); when no trigger has been active
  for ``cooldownPeriod`` seconds and minReplicaCount is 0, KEDA scales it to 0.
- 1 <-> N: the HPA (minReplicas = max(minReplicaCount, 1)) reads the metric on its own sync period (15 s)
  and, for an AverageValue external metric, computes ``ceil(metric / target)`` unless
  ``metric / (target * replicas)`` is within the tolerance (0.1) of 1, then applies ``behavior``.

The HPA behaviour follows the Kubernetes algorithm (KEP-853, ``horizontal.go``): a recommendation history
stabilizes the desired count (scale-up: the minimum over the up window; scale-down: the maximum over the down
window), then the rate policies cap the change per period (selectPolicy Max: the largest change allowed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance default
HPA_SYNC_SECONDS = 15.0  # --horizontal-pod-autoscaler-sync-period default


def sqs_metric(visible: int, in_flight: int, *, scale_on_in_flight: bool = True) -> int:
    """The aws-sqs-queue scaler's "actual messages": visible (+ not visible, i.e. in flight, if counted)."""
    return visible + in_flight if scale_on_in_flight else visible


def is_active(metric: float, activation_target: float) -> bool:
    """KEDA's activation rule: a scaler is active when its metric is strictly above the activation target."""
    return metric > activation_target


def average_value_replicas(metric: float, target: float) -> int:
    """Replicas an AverageValue target asks for with no current replicas to compare: ceil(metric / target)."""
    if target <= 0:
        raise ValueError(f"target must be > 0, got {target}")
    return math.ceil(metric / target)


def hpa_desired(current_replicas: int, metric: float, target: float, *, tolerance: float = TOLERANCE) -> int:
    """The HPA's desired replicas for an external metric with an AverageValue target.

    usage ratio = metric / (target * current); within ``tolerance`` of 1 nothing changes, else
    ceil(metric / target) (Kubernetes ``GetExternalPerPodMetricReplicas``). For a per-pod average this is the
    documented ``ceil(currentReplicas * currentMetricValue / desiredMetricValue)``.
    """
    if current_replicas <= 0:
        return 0  # the HPA is idle at zero replicas: KEDA's activation decides 0 -> 1
    ratio = metric / (target * current_replicas)
    if abs(1.0 - ratio) <= tolerance:
        return current_replicas
    return average_value_replicas(metric, target)


def ratio_desired(
    current_replicas: int, current_value: float, desired_value: float, *, tolerance: float = TOLERANCE
) -> int:
    """The HPA formula on a per-pod metric: ceil(current * current_value / desired_value), with tolerance."""
    ratio = current_value / desired_value
    if abs(1.0 - ratio) <= tolerance:
        return current_replicas
    return math.ceil(current_replicas * ratio)


@dataclass(frozen=True)
class Policy:
    """One HPA scaling policy: change by ``value`` pods or percent within ``period_seconds``."""

    kind: Literal["Pods", "Percent"]
    value: int
    period_seconds: float


@dataclass(frozen=True)
class Rules:
    """``behavior.scaleUp`` or ``behavior.scaleDown`` of an HPA."""

    stabilization_seconds: float
    policies: tuple[Policy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"


# The HPA defaults (Kubernetes docs, "Default Behavior"): up at once by 100 % or 4 pods per 15 s, whichever
# is more; down by 100 % per 15 s after a 300 s stabilization window.
DEFAULT_SCALE_UP = Rules(0.0, (Policy("Percent", 100, 15.0), Policy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN = Rules(300.0, (Policy("Percent", 100, 15.0),))


@dataclass
class Hpa:
    """An HPA's state across syncs: the recommendation history and the recent scale events.

    :meth:`step` is one sync: given the time, the current (spec) replicas and the metric, it returns the
    replicas the HPA sets. ``min_replicas``/``max_replicas`` bound the result like the HPA's own fields.
    """

    target: float
    min_replicas: int
    max_replicas: int
    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN
    tolerance: float = TOLERANCE
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, replica change), + up, - down

    def step(self, now: float, current: int, metric: float) -> int:
        desired = hpa_desired(current, metric, self.target, tolerance=self.tolerance)
        return self.normalize(now, current, desired)

    def normalize(self, now: float, current: int, desired: int) -> int:
        """Stabilize ``desired`` over the windows, cap it by the rate policies and the bounds."""
        stabilized = self.stabilize(now, current, desired)
        final = self.limit(now, current, stabilized)
        final = max(self.min_replicas, min(self.max_replicas, final))
        if final != current:
            self.events.append((now, final - current))
        return final

    def stabilize(self, now: float, current: int, desired: int) -> int:
        up, down = desired, desired
        for t, rec in self.recommendations:
            if t > now - self.scale_up.stabilization_seconds:
                up = min(up, rec)
            if t > now - self.scale_down.stabilization_seconds:
                down = max(down, rec)
        keep = max(self.scale_up.stabilization_seconds, self.scale_down.stabilization_seconds)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep]
        self.recommendations.append((now, desired))
        result = current
        result = max(result, up)
        return min(result, down)

    def limit(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            return min(desired, self.scale_up_limit(now, current))
        if desired < current:
            return max(desired, self.scale_down_limit(now, current))
        return desired

    def _period_start(self, now: float, current: int, period: float) -> int:
        """Replicas at the start of the policy's period: current - added + deleted within it."""
        added = sum(d for t, d in self.events if t > now - period and d > 0)
        deleted = sum(-d for t, d in self.events if t > now - period and d < 0)
        return current - added + deleted

    def scale_up_limit(self, now: float, current: int) -> int:
        if self.scale_up.select == "Disabled":
            return current
        limits = []
        for p in self.scale_up.policies:
            start = self._period_start(now, current, p.period_seconds)
            limits.append(start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100)))
        return max(limits) if self.scale_up.select == "Max" else min(limits)

    def scale_down_limit(self, now: float, current: int) -> int:
        if self.scale_down.select == "Disabled":
            return current
        limits = []
        for p in self.scale_down.policies:
            start = self._period_start(now, current, p.period_seconds)
            # Kubernetes truncates the remaining count (int32 of a float): the change rounds up.
            limits.append(start - p.value if p.kind == "Pods" else int(start * (1 - p.value / 100)))
        # "Max" means the policy that allows the largest change: for scale-down, the lowest count.
        return min(limits) if self.scale_down.select == "Max" else max(limits)


@dataclass
class Keda:
    """KEDA's activation state of one ScaledObject (0 <-> 1 and the cooldown to zero)."""

    activation_target: float
    min_replicas: int
    cooldown_seconds: float
    last_active: float | None = None

    def poll(self, now: float, replicas: int, metric: float) -> int:
        """One polling interval: the replicas KEDA sets (it only ever moves 0 -> max(min, 1) or N -> 0)."""
        if is_active(metric, self.activation_target):
            self.last_active = now
            if replicas == 0:
                return max(self.min_replicas, 1)
            return replicas
        if replicas > 0 and self.min_replicas == 0:
            # KEDA measures the cooldown from the last time a trigger was active (or from the start).
            since = self.last_active if self.last_active is not None else 0.0
            if now - since >= self.cooldown_seconds:
                return 0
        return replicas
