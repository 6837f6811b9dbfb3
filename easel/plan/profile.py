"""A traffic profile (YAML) and the deployment it runs on, resolved into one validated :class:`Plan`.

A profile names the runtime of ``config.yaml`` to plan, the traffic, the request mix and the service time
per model; every deployment setting starts from what Easel deploys (config.yaml's ``runtimes[].scaling``,
the chart's defaults for what config does not set, the ``pricing`` table) and a profile or a sweep may
override it by dotted key (``scaling.queue_length``, ``capacity.spot_availability``, ...).

Bad input raises :class:`PlanError` naming the dotted key and the reason, before anything is simulated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from easel.config import EaselConfig, InstanceFacts, load_config
from easel.errors import ConfigError
from easel.plan.errors import PlanError

KINDS = ("poisson", "bursts", "diurnal", "trace")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Strict):
    """Arrivals. ``poisson``: rate; ``bursts``: rate plus ``burst_size`` tasks at once every
    ``burst_every_seconds``; ``diurnal``: rate * (1 + amplitude * sin(2 pi (t - peak + period/4) / period));
    ``trace``: recorded submit times in seconds (``times`` inline or ``file``, one number per line)."""

    kind: Literal["poisson", "bursts", "diurnal", "trace"] = "poisson"
    rate_per_second: Annotated[float, Field(ge=0)] = 0.0
    burst_size: Annotated[int, Field(ge=0)] = 0
    burst_every_seconds: Annotated[float, Field(gt=0)] = 600.0
    amplitude: Annotated[float, Field(ge=0, le=1)] = 0.5
    period_seconds: Annotated[float, Field(gt=0)] = 86_400.0
    peak_at_seconds: Annotated[float, Field(ge=0)] = 50_400.0
    times: list[Annotated[float, Field(ge=0)]] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Traffic:
        if self.kind == "trace":
            if self.times is None and self.file is None:
                raise ValueError("times: a trace needs `times` or `file`")
            if self.times is not None and not self.times:
                raise ValueError("times: empty trace")
        elif self.rate_per_second == 0 and not (self.kind == "bursts" and self.burst_size > 0):
            raise ValueError("rate_per_second: must be > 0 (no traffic to plan)")
        return self


class RequestClass(_Strict):
    """One kind of request in the mix; ``weight`` is relative to the other classes."""

    weight: Annotated[float, Field(gt=0)] = 1.0
    model: str
    steps: Annotated[int, Field(ge=1, le=500)] = 20
    width: Annotated[int, Field(ge=64, le=4096)] = 512
    height: Annotated[int, Field(ge=64, le=4096)] = 512
    batch_size: Annotated[int, Field(ge=1, le=16)] = 1
    priority: Literal["high", "normal", "low"] = "normal"
    tenant: str | None = None

    @property
    def lane(self) -> str:
        return "high" if self.priority == "high" else "normal"  # low shares the normal lane


class ServiceTime(_Strict):
    """Runtime service time of one request: fixed + steps * seconds_per_step * pixels / reference_pixels,
    for the first image; each further image of a batch adds ``extra_image_cost`` of that."""

    fixed_seconds: Annotated[float, Field(ge=0)] = 0.0
    seconds_per_step: Annotated[float, Field(ge=0)] = 0.0
    reference_pixels: Annotated[int, Field(ge=1)] = 512 * 512
    extra_image_cost: Annotated[float, Field(ge=0, le=1)] = 1.0

    def seconds(self, r: RequestClass) -> float:
        one = (
            self.fixed_seconds
            + r.steps * self.seconds_per_step * (r.width * r.height) / self.reference_pixels
        )
        return one * (1 + (r.batch_size - 1) * self.extra_image_cost)


class Scaling(_Strict):
    """KEDA + HPA as deployed: the first six from config.yaml, the rest the chart's values/defaults."""

    queue_length: Annotated[int, Field(ge=1)] = 1
    activation_queue_length: Annotated[int, Field(ge=0)] = 0
    min_replicas: Annotated[int, Field(ge=0)] = 0
    max_replicas: Annotated[int, Field(ge=1)] = 4
    cooldown_seconds: Annotated[float, Field(ge=0)] = 300.0
    polling_seconds: Annotated[float, Field(gt=0)] = 15.0
    # charts/easel-runtime values.yaml scaling.scaleInStabilizationSeconds
    scale_in_stabilization_seconds: Annotated[float, Field(ge=0)] = 300.0
    hpa_sync_seconds: Annotated[float, Field(gt=0)] = 15.0
    scale_on_in_flight: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas: must be <= max_replicas")
        return self


class Capacity(_Strict):
    """Karpenter's nodes. ``instance_type``: default the cheapest on-demand of the runtime's list."""

    instance_type: str | None = None
    # Share of the pool's capacity types: spot is tried first when allowed (Karpenter prefers spot).
    spot: bool = True
    on_demand: bool = True
    # Probability that a spot launch gets capacity; otherwise Karpenter falls back to on-demand.
    spot_availability: Annotated[float, Field(ge=0, le=1)] = 1.0
    fallback_seconds: Annotated[float, Field(ge=0)] = 30.0
    launch_seconds: Annotated[float | None, Field(ge=0)] = None  # default: the pricing table's
    interruptions_per_hour: Annotated[float | None, Field(ge=0)] = None  # default: the pricing table's
    # charts/easel-runtime values.yaml nodePool.consolidateAfter (5m): an empty node lives this long.
    consolidate_after_seconds: Annotated[float, Field(ge=0)] = 300.0

    @model_validator(mode="after")
    def _some(self) -> Capacity:
        if not (self.spot or self.on_demand):
            raise ValueError("on_demand: at least one of spot / on_demand must be true")
        return self


class PodStart(_Strict):
    """A new pod on its node: image pull (skipped on a node that has the image) and model load."""

    image_pull_seconds: Annotated[float, Field(ge=0)] = 60.0
    model_load_seconds: Annotated[float, Field(ge=0)] = 30.0


class Agent(_Strict):
    """The queue agent. ``overhead_seconds``: runtime idle between two tasks (critical path);
    ``settle_seconds``: upload + status write + notification + delete after a generation, beside the next
    one when ``overlap`` (Easel's agent), in series when not (a serial agent)."""

    overlap: bool = True
    # docs/benchmarks.md, `easel bench agent`: Easel's median per-task overhead, 7.6 ms at T = 100 ms.
    overhead_seconds: Annotated[float, Field(ge=0)] = 0.0076
    settle_seconds: Annotated[float, Field(ge=0)] = 0.1
    prefetch: Annotated[int, Field(ge=0, le=9)] = 1
    submit_seconds: Annotated[float, Field(ge=0)] = 0.05
    # Seconds the agent lets a running task go on after SIGTERM; 0 = the task timeout (chart default).
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 0.0


class Profile(_Strict):
    """The file a user writes (docs/profiles/*.yaml)."""

    name: str = "profile"
    config: str | None = None
    runtime: str
    duration_seconds: Annotated[float, Field(gt=0)] = 3600.0
    seed: int = 1
    traffic: Traffic
    requests: Annotated[list[RequestClass], Field(min_length=1)]
    service: dict[str, ServiceTime]
    scaling: dict[str, Any] = {}
    capacity: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    pod: dict[str, Any] = {}


class Plan(_Strict):
    """A profile resolved against the config: everything the simulator reads, validated."""

    name: str
    runtime: str
    duration_seconds: float
    seed: int
    traffic: Traffic
    trace: list[float] = []
    requests: list[RequestClass]
    service: dict[str, ServiceTime]
    scaling: Scaling
    capacity: Capacity
    agent: Agent
    pod: PodStart
    task_timeout_seconds: float
    instance: InstanceFacts
    instance_type: str
    spot_notice_seconds: float
    pricing_source: str
    pricing_as_of: str

    def request_seconds(self, r: RequestClass) -> float:
        return self.service[r.model].seconds(r)

    def with_overrides(self, overrides: dict[str, Any], *, origin: str = "sweep") -> Plan:
        """A copy with dotted-key overrides (``scaling.queue_length``) applied and validated."""
        data = self.model_dump()
        for key, value in overrides.items():
            section, _, leaf = key.partition(".")
            if section not in SWEEPABLE or leaf not in SWEEPABLE[section]:
                raise PlanError(origin, f"unknown key '{key}'; known: {', '.join(sweepable_keys())}")
            data[section][leaf] = value
        try:
            plan = Plan.model_validate(data)
        except ValidationError as exc:
            raise _plan_error(exc, prefix=f"{origin} ") from None
        return plan


SWEEPABLE: dict[str, tuple[str, ...]] = {
    "scaling": tuple(Scaling.model_fields),
    "capacity": tuple(k for k in Capacity.model_fields if k != "instance_type"),
    "agent": tuple(Agent.model_fields),
    "pod": tuple(PodStart.model_fields),
}


def sweepable_keys() -> list[str]:
    return [f"{s}.{k}" for s, keys in SWEEPABLE.items() for k in keys]


def _plan_error(exc: ValidationError, prefix: str = "") -> PlanError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    # A validator's message may start with the leaf key it is about ("times: empty trace").
    head, sep, rest = msg.partition(": ")
    if sep and head.replace("_", "").isalnum() and head.islower():
        loc, msg = [*loc, head], rest
    return PlanError(prefix + (".".join(loc) or "profile"), msg)


def parse_profile(data: Any) -> Profile:
    if not isinstance(data, dict):
        raise PlanError("profile", "must be a mapping")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise _plan_error(exc) from None


def load_profile(path: str | Path) -> Profile:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise PlanError("profile", f"file not found: {p}") from None
    except yaml.YAMLError as exc:
        raise PlanError("profile", f"not valid YAML: {exc}") from None
    return parse_profile(data)


def read_trace(path: Path) -> list[float]:
    """Submit times, one number (seconds) per line; the first column of a CSV; or a JSON list."""
    try:
        text = path.read_text()
    except OSError:
        raise PlanError("traffic.file", f"cannot read {path}") from None
    if text.lstrip().startswith("["):
        values: list[Any] = json.loads(text)
    else:
        values = [
            line.split(",")[0] for line in text.splitlines() if line.strip() and not line.startswith("#")
        ]
    times = []
    for i, v in enumerate(values):
        try:
            t = float(v)
        except (TypeError, ValueError):
            if i == 0:
                continue  # a CSV header
            raise PlanError("traffic.file", f"line {i + 1}: '{v}' is not a number of seconds") from None
        if t < 0:
            raise PlanError("traffic.file", f"line {i + 1}: negative time {t}")
        times.append(t)
    if not times:
        raise PlanError("traffic.file", f"empty trace: {path}")
    return sorted(times)


def resolve(profile: Profile, config: EaselConfig, *, base_dir: Path = Path()) -> Plan:
    """The :class:`Plan` of ``profile`` on ``config``'s runtime, as deployed plus the profile's overrides."""
    names = [r.name for r in config.runtimes]
    if profile.runtime not in names:
        raise PlanError("runtime", f"unknown runtime '{profile.runtime}' (config has: {', '.join(names)})")
    runtime = config.runtime(profile.runtime)
    served = {m.name for m in config.models_of(runtime.name)}
    tenants = [t.id for t in config.tenants]
    for i, r in enumerate(profile.requests):
        if r.model not in served:
            raise PlanError(
                f"requests.{i}.model", f"model '{r.model}' is not served by runtime '{runtime.name}'"
            )
        if r.tenant is not None and r.tenant not in tenants:
            raise PlanError(
                f"requests.{i}.tenant", f"unknown tenant '{r.tenant}' (config has: {', '.join(tenants)})"
            )
        if r.model not in profile.service:
            raise PlanError(f"service.{r.model}", "no service time for this model")
    requests = [r if r.tenant else r.model_copy(update={"tenant": tenants[0]}) for r in profile.requests]

    trace: list[float] = []
    if profile.traffic.kind == "trace":
        if profile.traffic.times is not None:
            trace = sorted(profile.traffic.times)
        else:
            assert profile.traffic.file is not None
            trace = read_trace(base_dir / profile.traffic.file)

    types = list(runtime.instance_types)
    capacity = dict(profile.capacity)
    itype = capacity.get("instance_type")
    for t in [itype] if itype else types:
        if t not in config.pricing.instances:
            key = (
                "capacity.instance_type" if itype else f"runtimes.{names.index(runtime.name)}.instance_types"
            )
            raise PlanError(key, f"'{t}' is not in the pricing table (pricing.instances in config)")
    if not itype:
        itype = min(types, key=lambda t: config.pricing.instances[t].on_demand_hour_usd)
    capacity.setdefault("spot", "spot" in [str(c) for c in runtime.capacity_types])
    capacity.setdefault("on_demand", "on-demand" in [str(c) for c in runtime.capacity_types])
    capacity["instance_type"] = itype

    s = runtime.scaling
    scaling = {
        "queue_length": s.queue_length,
        "activation_queue_length": s.activation_queue_length,
        "min_replicas": s.min_replicas,
        "max_replicas": s.max_replicas,
        "cooldown_seconds": s.cooldown_seconds,
        "polling_seconds": s.polling_seconds,
        **profile.scaling,
    }
    data = {
        "name": profile.name,
        "runtime": runtime.name,
        "duration_seconds": profile.duration_seconds,
        "seed": profile.seed,
        "traffic": profile.traffic,
        "trace": trace,
        "requests": requests,
        "service": profile.service,
        "scaling": scaling,
        "capacity": capacity,
        "agent": profile.agent,
        "pod": profile.pod,
        "task_timeout_seconds": runtime.task_timeout_seconds,
        "instance": config.pricing.instances[itype],
        "instance_type": itype,
        "spot_notice_seconds": config.pricing.spot_notice_seconds,
        "pricing_source": config.pricing.source,
        "pricing_as_of": config.pricing.as_of,
    }
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise _plan_error(exc) from None


def load_plan(profile_path: str | Path, config_path: str | Path | None = None) -> Plan:
    """Load a profile and its config (the profile's ``config`` relative to it, else ``config_path``)."""
    path = Path(profile_path)
    profile = load_profile(path)
    if profile.config is not None:
        cfg_path = path.parent / profile.config
    else:
        cfg_path = Path(config_path) if config_path is not None else Path("config.yaml")
    try:
        config = load_config(cfg_path)
    except ConfigError as exc:
        raise PlanError("config", str(exc)) from None
    return resolve(profile, config, base_dir=path.parent)


def parse_sweep(items: list[str], plan: Plan) -> list[tuple[str, list[Any]]]:
    """``key=v1,v2`` items -> [(key, [values])], each value checked on ``plan`` before anything runs."""
    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not raw.strip():
            raise PlanError("sweep", f"'{item}' is not key=v1,v2,...")
        values = [yaml.safe_load(v.strip()) for v in raw.split(",") if v.strip()]
        for v in values:
            plan.with_overrides({key: v})  # raises PlanError naming the key
        axes.append((key, values))
    return axes
