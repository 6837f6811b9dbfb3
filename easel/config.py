"""The config model (``config.yaml``), validated at synth and at local start.

A bad config raises :class:`easel.errors.ConfigError` naming the key (dotted path) and the reason.
Nothing reads the config at import time: call :func:`load_config`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from easel.contract.pipeline import MAX_NODES
from easel.contract.tasks import NAME_PATTERN, Priority, TaskType
from easel.errors import ConfigError
from easel.kinds import KindProfile, RuntimeKind, profile
from easel.tenancy import role_pattern_problem

RUNTIME_NAME = r"^[a-z][a-z0-9-]{0,30}$"
TENANT_ID = r"^[a-z0-9][a-z0-9-]{0,31}$"
STACK_NAME = r"^[a-z][a-z0-9-]{0,23}$"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    """Request limits enforced by the API before anything is stored or queued."""

    max_prompt_chars: Annotated[int, Field(ge=1, le=20_000)] = 2000
    max_width: Annotated[int, Field(ge=64, le=4096, multiple_of=8)] = 1024
    max_height: Annotated[int, Field(ge=64, le=4096, multiple_of=8)] = 1024
    max_steps: Annotated[int, Field(ge=1, le=500)] = 100
    max_batch_size: Annotated[int, Field(ge=1, le=16)] = 4
    max_train_steps: Annotated[int, Field(ge=1, le=10_000)] = 2000
    max_train_images: Annotated[int, Field(ge=1, le=50)] = 20
    # SNS caps a message at 256 KiB; keep the body well below that so attributes and the envelope fit.
    max_body_bytes: Annotated[int, Field(ge=1024, le=240 * 1024)] = 64 * 1024
    max_context_bytes: Annotated[int, Field(ge=0, le=64 * 1024)] = 8 * 1024
    # A body carrying inline base64 images may be this large; the API moves the images to S3 and the rest
    # must then fit max_body_bytes. Lambda's 6 MB request payload limit bounds it.
    max_inline_body_bytes: Annotated[int, Field(ge=1024, le=6 * 1000 * 1000)] = 4 * 1024 * 1024


class Throttle(_Section):
    rate_limit: Annotated[float, Field(gt=0)] = 20.0
    burst_limit: Annotated[int, Field(ge=1)] = 40
    quota_per_day: Annotated[int | None, Field(ge=1)] = None


class ApiKeysConfig(_Section):
    """The API-key endpoint (docs/api.md, "API keys"), deployed when a tenant sets ``api_keys``."""

    # How long API Gateway (and the local gateway) caches the authorizer's answer per key. `easel keys
    # revoke` flushes the cache, so a revocation is immediate; without the flush this bounds it. 0 = none.
    cache_ttl_seconds: Annotated[int, Field(ge=0, le=3600)] = 60


class ApiConfig(_Section):
    limits: Limits = Limits()
    throttle: Throttle = Throttle()
    api_keys: ApiKeysConfig = ApiKeysConfig()
    url_ttl_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600
    task_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    list_max_limit: Annotated[int, Field(ge=1, le=1000)] = 100


class Entitlements(_Section):
    """What one tenant may ask for; the API refuses the rest before anything is stored or queued."""

    # Model / runtime names this tenant may use; unset = all.
    models: list[str] | None = None
    runtimes: list[str] | None = None
    # The highest priority this tenant may submit (high > normal > low).
    max_priority: Priority = Priority.HIGH
    # Tasks queued plus processing at once; one more is refused with 429 and Retry-After. Unset = no limit.
    max_active_tasks: Annotated[int | None, Field(ge=1)] = None
    # Images per UTC day (a generation counts its batch_size, a LoRA training run counts 1). Unset = none.
    daily_images: Annotated[int | None, Field(ge=1)] = None
    # The Retry-After (seconds) sent with a max_active_tasks refusal: about one task's service time.
    retry_after_seconds: Annotated[int, Field(ge=1, le=3600)] = 30


class TenantApiKeys(_Section):
    """A tenant's API keys are accepted; its usage plan (API Gateway) throttles and caps them."""

    rate_limit: Annotated[float, Field(gt=0)] = 5.0
    burst_limit: Annotated[int, Field(ge=1)] = 10
    # Requests per UTC day over all of the tenant's keys; unset = no quota.
    quota_per_day: Annotated[int | None, Field(ge=1)] = None


class Tenant(_Section):
    id: Annotated[str, Field(pattern=TENANT_ID)]
    # IAM principal ARNs, fnmatch globs allowed (see easel/tenancy.py): users
    # ("arn:aws:iam::1234...:user/alice"), roles ("arn:aws:iam::1234...:role/acme-*", matching every session
    # of an assumed role), federated users ("arn:aws:sts::1234...:federated-user/bob").
    principals: list[str] = []
    entitlements: Entitlements = Entitlements()
    # Unset: no API keys (SigV4 only). Set: `easel keys create --tenant <id>` keys are accepted on the
    # API-key endpoint, under this usage plan. Both ways of calling map to this same tenant.
    api_keys: TenantApiKeys | None = None

    @model_validator(mode="after")
    def _role_patterns(self) -> Tenant:
        for i, pattern in enumerate(self.principals):
            problem = role_pattern_problem(pattern)
            if problem:
                raise ValueError(f"principals.{i}: '{pattern}': {problem}")
        return self


class ModelFormat(StrEnum):
    DIFFUSERS = "diffusers"
    SINGLE_FILE = "single-file"


class ModelSpec(_Section):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    runtime: Annotated[str, Field(pattern=RUNTIME_NAME)]
    # Path under the models bucket (and under --models-dir locally); defaults to the model name.
    path: str | None = None
    format: ModelFormat = ModelFormat.DIFFUSERS
    task_types: list[TaskType] = [TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE]
    # AUTOMATIC1111 checkpoint titles or file names clients send as ``sd_model_checkpoint`` (compat
    # routes), e.g. "v1-5-pruned-emaonly.safetensors [6ce0161689]" or "v1-5-pruned-emaonly.safetensors".
    checkpoints: list[Annotated[str, Field(min_length=1, max_length=256)]] = []

    @property
    def store_path(self) -> str:
        return self.path or self.name

    def answers_to(self, checkpoint: str) -> bool:
        """Whether a client's ``sd_model_checkpoint`` names this model: its name, store path, a listed
        checkpoint, or an A1111 title ("<file> [<hash>]") whose file part is one of those."""
        names = {self.name, self.store_path, self.store_path.rsplit("/", 1)[-1], *self.checkpoints}
        file_part = checkpoint.split(" [", 1)[0].strip() if checkpoint.endswith("]") else checkpoint
        return checkpoint in names or file_part in names


class CapacityType(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


class Drain(_Section):
    """How a runtime's pods give their work back (docs/operations.md, "Recovery and drain")."""

    # Visibility the agent asks for at receive and renews (heartbeat) while it holds a message, running or
    # prefetched: a pod that dies without draining has its tasks visible again within about this long.
    receive_visibility_seconds: Annotated[int, Field(ge=10, le=900)] = 60
    # Seconds after SIGTERM by which the running task must be over, by capacity type. The agent lets the
    # task finish only if its progress says it ends (plus a few seconds for the upload) before that;
    # otherwise it interrupts it and returns the message at once. Spot: EC2's two-minute interruption
    # notice, less the time Karpenter takes to cordon and evict and a margin for the return.
    spot_deadline_seconds: Annotated[int, Field(ge=10, le=110)] = 90
    # On-demand (scale-in, consolidation, expiry): unset means the task timeout, so a started task is never
    # thrown away; the pod's termination grace period covers it.
    on_demand_deadline_seconds: Annotated[int | None, Field(ge=10)] = None


class Scaling(_Section):
    queue_length: Annotated[int, Field(ge=1)] = 1
    activation_queue_length: Annotated[int, Field(ge=0)] = 0
    min_replicas: Annotated[int, Field(ge=0)] = 0
    max_replicas: Annotated[int, Field(ge=1)] = 4
    cooldown_seconds: Annotated[int, Field(ge=0)] = 300
    polling_seconds: Annotated[int, Field(ge=1)] = 15

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class Image(_Section):
    repository: str
    tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    digest: Annotated[str | None, Field(pattern=r"^sha256:[a-f0-9]{64}$")] = None

    @model_validator(mode="after")
    def _no_latest(self) -> Image:
        if self.tag == "latest" and self.digest is None:
            raise ValueError("tag 'latest' needs a digest: pin the image")
        return self


class Images(_Section):
    """Prebuilt images to run instead of building them: both are required when ``images`` is set."""

    runtime: Image
    agent: Image


class PipelineRules(_Section):
    """What a ``comfyui`` runtime accepts as a ``pipeline`` workflow (checked by the API at submit)."""

    # Nodes per workflow (the contract's ceiling is easel.contract.pipeline.MAX_NODES).
    max_nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] = 200
    # Node types (class_type) this pool refuses, e.g. custom nodes that fetch URLs or run code; a workflow
    # with one gets 400 naming the node.
    refused_node_types: list[Annotated[str, Field(min_length=1, max_length=128)]] = []


class Batching(_Section):
    """Cross-task batching (docs/capacity.md, "Cross-task batching"): compatible queued text-to-image tasks
    (same model, size, steps, sampler, CFG, LoRAs...; prompts, seeds and counts may differ) generate as one
    batch. More images per GPU-second on a backlog; each task of a batch finishes when the whole batch does,
    and the agent holds up to ``max_images`` messages (invisible to other pods) to fill one."""

    enabled: bool = False
    # Images in one batch (the sum of the tasks' batch_size); the agent's prefetch grows to this many.
    max_images: Annotated[int, Field(ge=2, le=16)] = 4
    # How long the head of a batch may wait for compatible messages already received and being prepared;
    # a lone task never waits.
    max_wait_seconds: Annotated[float, Field(ge=0, le=10)] = 0.25


class RuntimeSpec(_Section):
    name: Annotated[str, Field(pattern=RUNTIME_NAME)]
    # What the pool runs (easel/kinds.py): the Easel runtime, a stock SD WebUI, or a stock ComfyUI.
    kind: RuntimeKind = "diffusers"
    # Runtime container command and arguments. Unset: the kind's default (diffusers: `easel runtime serve
    # ...`; sdwebui/comfyui: the image's entrypoint with the kind's arguments, easel/kinds.py).
    command: list[Annotated[str, Field(min_length=1)]] | None = None
    args: list[str] | None = None
    # Seconds the runtime may take to start before its startup probe fails (unset: the kind's allowance).
    startup_seconds: Annotated[int | None, Field(ge=60, le=4 * 3600)] = None
    pipeline: PipelineRules = PipelineRules()
    # Other names clients may use for this runtime on the compat routes (/v1alpha1, /v1alpha2), e.g. the
    # stable-diffusion-on-eks default "sdruntime".
    aliases: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]] = []
    # A fixed runtime serves one model loaded at start; a dynamic one switches between its models per task.
    dynamic_models: bool = False
    instance_types: Annotated[list[str], Field(min_length=1)] = ["g6.xlarge", "g5.xlarge"]
    capacity_types: Annotated[list[CapacityType], Field(min_length=1)] = [
        CapacityType.SPOT,
        CapacityType.ON_DEMAND,
    ]
    # GPUs per pod. Only 1 for now: the runtime runs one generation at a time on one device, so more would be
    # reserved and paid for while idle. Scale out with scaling.max_replicas instead.
    gpus: Annotated[int, Field(ge=1, le=8)] = 1
    scaling: Scaling = Scaling()
    task_timeout_seconds: Annotated[int, Field(ge=30, le=12 * 3600)] = 900
    max_receive_count: Annotated[int, Field(ge=1, le=100)] = 3
    # Unset (the default): `cdk deploy` builds runtime_image/ and queue_agent/ (CDK Docker image assets) and
    # pushes them to the bootstrap ECR repository. Set: run these prebuilt images instead (no Docker needed).
    images: Images | None = None
    # What one GPU-hour of this pool costs you (blended spot/on-demand estimate); used by `easel costs`.
    gpu_hour_usd: Annotated[float, Field(ge=0)] = 1.0
    batching: Batching = Batching()
    drain: Drain = Drain()

    @property
    def drain_deadline_seconds(self) -> int:
        """``EASEL_AGENT_SHUTDOWN_GRACE_SECONDS`` of this runtime's agent: the shortest deadline of the
        pool's capacity types (a pod cannot tell from SIGTERM whether its node is a spot node being
        reclaimed), never more than the task timeout."""
        deadlines = {
            CapacityType.SPOT: self.drain.spot_deadline_seconds,
            CapacityType.ON_DEMAND: self.drain.on_demand_deadline_seconds or self.task_timeout_seconds,
        }
        return min(self.task_timeout_seconds, *(deadlines[c] for c in self.capacity_types))

    @model_validator(mode="after")
    def _batching_needs_easel_runtime(self) -> RuntimeSpec:
        # Mixed batches are the Easel runtime's own route (POST /easel/v1/txt2img-batch).
        if self.batching.enabled and self.kind != "diffusers":
            raise ValueError(
                f"batching.enabled: a {self.kind} runtime cannot generate mixed batches; "
                "batching needs kind: diffusers"
            )
        return self

    @property
    def agent_batch_max_images(self) -> int:
        """``EASEL_AGENT_BATCH_MAX_IMAGES`` of this runtime's agent (1: batching off)."""
        return self.batching.max_images if self.batching.enabled else 1

    @model_validator(mode="after")
    def _images_for_kind(self) -> RuntimeSpec:
        # The repository builds only the Easel (diffusers) runtime; a stock WebUI or ComfyUI comes from its
        # own image.
        if self.kind != "diffusers" and self.images is None:
            stock = {"sdwebui": "WebUI", "comfyui": "ComfyUI"}[self.kind]
            raise ValueError(
                f"images: a {self.kind} runtime runs a stock {stock} image; "
                "set images.runtime and images.agent"
            )
        return self

    @property
    def profile(self) -> KindProfile:
        return profile(self.kind)

    @property
    def startup_allowance_seconds(self) -> int:
        return self.startup_seconds or self.profile.startup_seconds

    @model_validator(mode="after")
    def _one_gpu(self) -> RuntimeSpec:
        if self.gpus != 1:
            raise ValueError(
                f"gpus: {self.gpus} GPUs per pod is not supported: the runtime uses one GPU (one generation "
                "at a time), so the others would sit reserved and idle; set gpus: 1 and raise "
                "scaling.max_replicas"
            )
        return self

    @property
    def visibility_timeout_seconds(self) -> int:
        # The agent's heartbeat extends visibility while a task runs; this is the window after a crash.
        return min(self.task_timeout_seconds + 60, 12 * 3600)


class Inputs(_Section):
    allowed_https_hosts: list[str] = []
    max_bytes: Annotated[int, Field(ge=1024)] = 20 * 1024 * 1024
    max_pixels: Annotated[int, Field(ge=64 * 64)] = 4096 * 4096
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0


class Network(_Section):
    max_azs: Annotated[int, Field(ge=2, le=6)] = 2
    nat_gateways: Annotated[int, Field(ge=0, le=6)] = 1
    interface_endpoints: bool = False


class Adopt(_Section):
    """Resources kept by an earlier ``cdk destroy`` (they are retained) to use again instead of creating new
    ones; give their physical names (the ``ModelsBucketName``/``OutputsBucketName``/``TasksTableName``
    outputs of that deployment)."""

    models_bucket: Annotated[str | None, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] = None
    outputs_bucket: Annotated[str | None, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] = None


class Storage(_Section):
    outputs_expire_days: Annotated[int, Field(ge=1)] = 30
    access_logs: bool = True
    adopt: Adopt = Adopt()


class Cluster(_Section):
    # Moved together (infra/versions.py holds the compatibility tables; a test checks the set).
    kubernetes_version: str = "1.36"
    system_instance_types: Annotated[list[str], Field(min_length=1)] = ["m7i.large"]
    system_nodes: Annotated[int, Field(ge=1, le=10)] = 2
    keda_chart_version: str = "2.21.0"
    karpenter_chart_version: str = "1.15.0"
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] = "easel"


# An image reference with an explicit tag that is not `latest` (or a digest): a rollout stays reproducible.
IMAGE_REF = r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$"


class Telemetry(_Section):
    """Traces and GPU metrics of the pools: an ADOT collector (DaemonSet, OpenTelemetry's collector chart
    with the AWS Distro image) receives OTLP from the agent and runtime and sends traces to X-Ray; it scrapes
    NVIDIA's DCGM exporter on the GPU nodes and writes GPU utilisation and memory as CloudWatch metrics."""

    enabled: bool = True
    # Head sampling of the agent and runtime (parent-based: a sampled API trace stays sampled downstream).
    trace_sampling_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    collector_chart_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = "0.140.0"
    collector_image: Annotated[str, Field(pattern=IMAGE_REF)] = (
        "public.ecr.aws/aws-observability/aws-otel-collector:v0.46.0"
    )
    dcgm_exporter_chart_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = "4.6.0"
    # Retention of the collector's metrics log group (the EMF documents CloudWatch turns into metrics).
    metrics_log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 180, 365] = 14

    @model_validator(mode="after")
    def _pinned_image(self) -> Telemetry:
        if self.collector_image.endswith(":latest"):
            raise ValueError(f"collector_image: {self.collector_image!r} must pin a version, not latest")
        return self


class Monitoring(_Section):
    oldest_message_alarm_seconds: Annotated[int, Field(ge=60)] = 900
    # Cost guard: a pool whose pods stay not Ready this long is paused at zero replicas and alarmed.
    pool_not_ready_seconds: Annotated[int, Field(ge=600, le=86_400)] = 2700
    alarm_email: str | None = None
    # SLO alarms: share of finished tasks that failed (per runtime, over 15 minutes), a pod's start until its
    # runtime is ready, and GPU utilisation under which a pool counts as idle while its lanes hold tasks.
    failure_ratio_alarm: Annotated[float, Field(gt=0, le=1)] = 0.1
    cold_start_alarm_seconds: Annotated[int, Field(ge=60)] = 900
    gpu_idle_percent: Annotated[float, Field(gt=0, le=100)] = 5.0
    telemetry: Telemetry = Telemetry()


class InstanceFacts(_Section):
    """What one GPU instance type costs and how it behaves, for ``easel plan`` (never fetched at run time)."""

    on_demand_hour_usd: Annotated[float, Field(ge=0)]
    spot_hour_usd: Annotated[float, Field(ge=0)]
    gpus: Annotated[int, Field(ge=1, le=8)] = 1
    # From Karpenter's launch request to the node being Ready (EC2 boot, GPU AMI, kubelet, device plugin).
    launch_seconds: Annotated[float, Field(ge=0)] = 120.0
    # Mean spot interruptions per node-hour: the Spot Instance Advisor's monthly "frequency of
    # interruption" / 730 hours.
    spot_interruptions_per_hour: Annotated[float, Field(ge=0)] = 0.05 / 730


# Defaults of the table below, us-west-2, Linux. Sources and dates (edit them for your region and date):
# - on_demand_hour_usd: the AWS EC2 On-Demand price list for us-west-2 as of 2025 (g5: $1.006 xlarge, $1.212
#   2xlarge; g6: $0.8048 xlarge, $0.9776 2xlarge; g4dn.xlarge $0.526).
# - spot_hour_usd: g5.2xlarge/g6.2xlarge $0.53, the average Spot price across us-west-2 AZs of March 2026
#   published by the AWS guidance for asynchronous inference with Stable Diffusion (README "Cost"); the
#   xlarge sizes and g4dn are estimates at the same discount to on-demand (0.53 / 1.212 = 0.44x).
# - launch_seconds: 120, "new Amazon EKS nodes within 2 minutes" (same guidance, Karpenter + Bottlerocket).
# - spot_interruptions_per_hour: the Spot Instance Advisor's lowest bucket (< 5 % a month), read as
#   5 % / 730 h.
DEFAULT_INSTANCES: dict[str, InstanceFacts] = {
    "g5.xlarge": InstanceFacts(on_demand_hour_usd=1.006, spot_hour_usd=0.44),
    "g5.2xlarge": InstanceFacts(on_demand_hour_usd=1.212, spot_hour_usd=0.53),
    "g6.xlarge": InstanceFacts(on_demand_hour_usd=0.8048, spot_hour_usd=0.35),
    "g6.2xlarge": InstanceFacts(on_demand_hour_usd=0.9776, spot_hour_usd=0.53),
    "g4dn.xlarge": InstanceFacts(on_demand_hour_usd=0.526, spot_hour_usd=0.23),
}


class Pricing(_Section):
    """Prices, launch times and interruption rates per instance type, read by ``easel plan`` only.

    A documented, editable table: nothing here is fetched at run time. ``source``/``as_of`` travel with the
    plan's output so a reader knows which prices a figure used.
    """

    source: str = (
        "AWS EC2 On-Demand price list (us-west-2, 2025); Spot: AWS SD async guidance README (2026-03)"
    )
    as_of: str = "2026-03"
    instances: dict[str, InstanceFacts] = DEFAULT_INSTANCES
    # Notice a spot interruption gives before the node goes (EC2 two-minute warning).
    spot_notice_seconds: Annotated[float, Field(ge=0)] = 120.0


class Env(_Section):
    account: Annotated[str | None, Field(pattern=r"^\d{12}$")] = None
    region: str | None = None


class EaselConfig(_Section):
    stack_name: Annotated[str, Field(pattern=STACK_NAME)] = "easel"
    env: Env = Env()
    api: ApiConfig = ApiConfig()
    tenants: Annotated[list[Tenant], Field(min_length=1)]
    models: Annotated[list[ModelSpec], Field(min_length=1)]
    runtimes: Annotated[list[RuntimeSpec], Field(min_length=1)]
    inputs: Inputs = Inputs()
    network: Network = Network()
    storage: Storage = Storage()
    cluster: Cluster = Cluster()
    monitoring: Monitoring = Monitoring()
    pricing: Pricing = Pricing()

    @model_validator(mode="after")
    def _references(self) -> EaselConfig:
        _unique("tenants", [t.id for t in self.tenants])
        _unique("models", [m.name for m in self.models])
        _unique("runtimes", [r.name for r in self.runtimes])
        names = {r.name for r in self.runtimes}
        # An alias may name one runtime per set of task types: a stable-diffusion-on-eks deployment's
        # runtime name can then stand for an SD WebUI-dialect pool and a ComfyUI pool at once (the compat
        # routes pick by task type), but never for two pools that could run the same task.
        aliased: dict[str, list[frozenset[TaskType]]] = {}
        for i, r in enumerate(self.runtimes):
            runs = profile(r.kind).task_types
            for alias in r.aliases:
                taken = aliased.setdefault(alias, [])
                if alias in names or any(runs & other for other in taken):
                    raise ValueError(f"runtimes.{i}.aliases: '{alias}' already names a runtime")
                taken.append(runs)
        runtimes = {r.name: r for r in self.runtimes}
        models = {m.name for m in self.models}
        for i, t in enumerate(self.tenants):
            for j, name in enumerate(t.entitlements.models or []):
                if name not in models:
                    raise ValueError(f"tenants.{i}.entitlements.models.{j}: unknown model '{name}'")
            for j, name in enumerate(t.entitlements.runtimes or []):
                if name not in runtimes:
                    raise ValueError(f"tenants.{i}.entitlements.runtimes.{j}: unknown runtime '{name}'")
        for i, m in enumerate(self.models):
            if m.runtime not in runtimes:
                raise ValueError(f"models.{i}.runtime: unknown runtime '{m.runtime}'")
            kind = runtimes[m.runtime].kind
            allowed = profile(kind).task_types
            for j, task_type in enumerate(m.task_types):
                if task_type not in allowed:
                    raise ValueError(
                        f"models.{i}.task_types.{j}: runtime '{m.runtime}' is kind {kind}, which runs "
                        f"{', '.join(sorted(allowed))}, not {task_type}"
                    )
        for i, r in enumerate(self.runtimes):
            served = [m.name for m in self.models if m.runtime == r.name]
            if not served:
                raise ValueError(f"runtimes.{i}: runtime '{r.name}' serves no model")
            if not r.dynamic_models and len(served) > 1:
                raise ValueError(
                    f"runtimes.{i}.dynamic_models: runtime '{r.name}' serves {len(served)} models "
                    f"({', '.join(served)}); set dynamic_models: true or give each model its own runtime"
                )
        return self

    # -- lookups -------------------------------------------------------------------------------------
    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    def runtime(self, name: str) -> RuntimeSpec:
        for r in self.runtimes:
            if r.name == name:
                return r
        raise KeyError(name)

    def runtime_named(self, name: str) -> RuntimeSpec | None:
        """The runtime called ``name`` or aliased to it (compat routes); the first of several."""
        return next(iter(self.runtimes_named(name)), None)

    def runtimes_named(self, name: str) -> list[RuntimeSpec]:
        """The runtime called ``name``, or those aliased to it (at most one per kind of task)."""
        return [r for r in self.runtimes if name == r.name or name in r.aliases]

    def models_of(self, runtime: str) -> list[ModelSpec]:
        return [m for m in self.models if m.runtime == runtime]

    def tenant(self, tenant_id: str) -> Tenant | None:
        return next((t for t in self.tenants if t.id == tenant_id), None)

    @property
    def key_tenants(self) -> frozenset[str]:
        """The tenants whose API keys are accepted (``tenants[].api_keys`` set)."""
        return frozenset(t.id for t in self.tenants if t.api_keys is not None)


def _unique(key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"{key}.{i}: duplicate name '{n}'")
        seen.add(n)


def parse_config(data: Any, source: str = "config") -> EaselConfig:
    try:
        return EaselConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        # A validator that knows the exact key below its own says so as "sub.key: reason".
        head, sep, rest = msg.partition(": ")
        if sep and _DOTTED.fullmatch(head):
            key, msg = (f"{key}.{head}" if key else head), rest
        raise ConfigError(key or source, msg) from None


def load_config(path: str | Path = "config.yaml") -> EaselConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(str(p), "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), "must be a mapping")
    return parse_config(data, str(p))
