"""The agent's settings: one pydantic-settings object, read from the environment once, at start.

The ``EASEL_*`` names of docs/development.md are the contract with the chart and the local supervisor.
``EASEL_AGENT_*`` variables are tuning knobs with production defaults; nothing needs to set them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore", frozen=True)

    # -- the process contract (docs/development.md) ------------------------------------------------------
    runtime: str
    # What the runtime container runs (config ``runtimes[].kind``): it picks the agent's adapter.
    runtime_kind: Literal["diffusers", "sdwebui", "comfyui"] = "diffusers"
    high_queue_url: str
    normal_queue_url: str
    table_name: str
    outputs_bucket: str
    results_topic_arn: str
    models: dict[str, str] = Field(description="model name -> store path (sd_model_checkpoint)")
    input_buckets: CommaList = []
    allowed_https_hosts: CommaList = []
    max_input_bytes: Annotated[int, Field(ge=1)] = 20 * 1024 * 1024
    max_input_pixels: Annotated[int, Field(ge=1)] = 4096 * 4096
    runtime_url: str = "http://127.0.0.1:8080"
    task_timeout_seconds: Annotated[float, Field(gt=0)] = 900
    visibility_timeout_seconds: Annotated[int, Field(ge=1, le=43200)] = 960
    max_receive_count: Annotated[int, Field(ge=1)] = 3
    agent_port: Annotated[int, Field(ge=0, le=65535)] = 8081
    aws_region: str | None = Field(default=None, validation_alias=AliasChoices("AWS_REGION"))
    aws_endpoint_url: str | None = Field(default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL"))

    # -- tuning (EASEL_AGENT_*) --------------------------------------------------------------------------
    # Probes come from the kubelet to the pod IP, so listen on every interface in the pod.
    agent_host: str = "0.0.0.0"
    # Addresses besides 127.0.0.1/::1 allowed to call /drain and /stats: the node's, from which the kubelet
    # runs the preStop hook (the chart sets it from status.hostIP). Everyone else gets 403 there.
    agent_control_peers: CommaList = []
    # Messages received ahead of the running task (inputs fetched meanwhile). Small: held messages are
    # invisible to other pods. High-lane messages may use one slot more than normal ones, so a high task
    # that arrives while normal ones are prefetched is still received and runs first.
    agent_prefetch: Annotated[int, Field(ge=1, le=9)] = 1
    # Long-poll waits. Each lane has its own poller, so a long wait delays nothing but shutdown (which
    # waits for an in-flight poll) and costs fewer requests while idle. 0 would busy-poll: not allowed.
    agent_high_wait_seconds: Annotated[int, Field(ge=1, le=20)] = 2
    agent_normal_wait_seconds: Annotated[int, Field(ge=1, le=20)] = 2
    # Visibility asked for at receive and renewed by the heartbeat for every held message (prefetched or
    # running), capped at the queue's. Short, so a dead agent's messages are visible again within about this
    # long instead of the queue's visibility timeout (sized for a whole task).
    agent_receive_visibility_seconds: Annotated[int, Field(ge=1, le=43200)] = 60
    # Default: a quarter of the hold visibility (capped at 60 s) so two beats may fail before expiry.
    agent_heartbeat_seconds: Annotated[float | None, Field(gt=0)] = None
    agent_cancel_poll_seconds: Annotated[float, Field(gt=0)] = 2.0
    agent_backoff_base_seconds: Annotated[int, Field(ge=0)] = 5
    agent_backoff_cap_seconds: Annotated[int, Field(ge=0, le=43200)] = 600
    # The drain deadline: seconds after SIGTERM (or GET /drain) by which the running task must be over. The
    # chart sets it per capacity type (config ``runtimes[].drain``): a spot notice, or the grace period.
    agent_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 25.0
    # Reserved before the deadline for what follows a generation (upload, succeeded write, notification):
    # a task is let run only if its progress says it ends at least this long before the deadline.
    agent_drain_margin_seconds: Annotated[float, Field(ge=0)] = 5.0
    # Past the grace period the runtime is interrupted; if the generation still has not returned this much
    # later, the message is returned anyway, and after twice this the process exits (0) regardless.
    agent_interrupt_wait_seconds: Annotated[float, Field(gt=0)] = 5.0
    agent_runtime_ready_timeout_seconds: Annotated[float, Field(gt=0)] = 600.0
    agent_input_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # "field": send ``loras`` in the body (Easel runtime); "prompt": <lora:name:weight> tags (stock A1111).
    agent_lora_style: Literal["field", "prompt"] = "field"
    # Cross-task batching (queue_agent.batching): compatible text-to-image tasks generate as one batch of at
    # most this many images (1: off). Prefetch grows to this many messages, which are then invisible to
    # other pods. Needs the Easel runtime (LoRAs in the ``loras`` field).
    agent_batch_max_images: Annotated[int, Field(ge=1, le=16)] = 1
    # How long the head of a batch may wait for more compatible tasks, and only while received messages are
    # still being prepared: a lone task never waits.
    agent_batch_max_wait_seconds: Annotated[float, Field(ge=0, le=10)] = 0.25
    # How often a running task's progress (step n of N) may be written to the table, at most (one
    # conditional write per task per period; phase changes are written at once).
    agent_progress_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    agent_emf: bool = True
    agent_log_level: str = "INFO"
    # TEST ONLY, never set in production: exact origins (e.g. "http://127.0.0.1:8123") from which inputs may
    # be fetched over plain http and whatever address they resolve to (the fetcher still pins the IP and
    # re-vets every redirect hop). Exists so tests can exercise the https path against a loopback server.
    agent_test_insecure_origins: CommaList = []

    @field_validator(
        "input_buckets",
        "allowed_https_hosts",
        "agent_test_insecure_origins",
        "agent_control_peers",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("allowed_https_hosts")
    @classmethod
    def _lower_hosts(cls, v: list[str]) -> list[str]:
        return [h.lower().rstrip(".") for h in v]

    @model_validator(mode="after")
    def _consistent(self) -> AgentSettings:
        if not self.models:
            raise ValueError("EASEL_MODELS: must name at least one model")
        if self.heartbeat_seconds >= self.hold_visibility_seconds:
            raise ValueError(
                "EASEL_AGENT_HEARTBEAT_SECONDS: must be below the hold visibility "
                f"({self.hold_visibility_seconds} s: EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS capped at "
                "EASEL_VISIBILITY_TIMEOUT_SECONDS)"
            )
        if self.agent_batch_max_images > 1 and self.agent_lora_style != "field":
            raise ValueError(
                "EASEL_AGENT_BATCH_MAX_IMAGES: batching needs the Easel runtime "
                "(EASEL_AGENT_LORA_STYLE=field); set it to 1"
            )
        return self

    @property
    def prefetch_slots(self) -> int:
        """Messages held ahead of the running task: enough to fill a batch when batching is on."""
        return max(self.agent_prefetch, self.agent_batch_max_images)

    @property
    def hold_visibility_seconds(self) -> int:
        """Visibility of a held message: asked for at receive, renewed by the heartbeat."""
        return min(self.agent_receive_visibility_seconds, self.visibility_timeout_seconds)

    @property
    def heartbeat_seconds(self) -> float:
        if self.agent_heartbeat_seconds is not None:
            return self.agent_heartbeat_seconds
        return min(60.0, self.hold_visibility_seconds / 4)

    @property
    def allowed_input_buckets(self) -> frozenset[str]:
        return frozenset([self.outputs_bucket, *self.input_buckets])
