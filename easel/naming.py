"""One derivation of every resource name, used by the CDK app and by local mode alike.

Physical names are deterministic so that the agent, the Lambdas, the chart and the local stack agree
without passing lists around. Bucket names include account and region (globally unique); in CDK those
are tokens, which concatenate fine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from easel.config import EaselConfig
from easel.contract.tasks import OUTPUT_PREFIX_PATTERN, RESERVED_PREFIXES, Lane

LANES: tuple[Lane, ...] = (Lane.HIGH, Lane.NORMAL)


@dataclass(frozen=True)
class Names:
    prefix: str
    account: str = "000000000000"
    region: str = "us-east-1"

    @classmethod
    def of(cls, config: EaselConfig, account: str | None = None, region: str | None = None) -> Names:
        return cls(
            prefix=config.stack_name,
            account=account or config.env.account or "000000000000",
            region=region or config.env.region or "us-east-1",
        )

    # -- messaging -----------------------------------------------------------------------------------
    @property
    def tasks_topic(self) -> str:
        return f"{self.prefix}-tasks"

    @property
    def results_topic(self) -> str:
        return f"{self.prefix}-results"

    @property
    def alarms_topic(self) -> str:
        return f"{self.prefix}-alarms"

    def lane_queue(self, runtime: str, lane: Lane | str) -> str:
        return f"{self.prefix}-{runtime}-{Lane(lane)}"

    def lane_dlq(self, runtime: str, lane: Lane | str) -> str:
        return f"{self.prefix}-{runtime}-{Lane(lane)}-dlq"

    @property
    def unroutable_queue(self) -> str:
        return f"{self.prefix}-unroutable"

    @property
    def webhooks_failure_queue(self) -> str:
        """Webhook events whose delivery failed after Lambda's retries (the function's on-failure target)."""
        return f"{self.prefix}-webhooks-failed"

    @property
    def webhooks_local_queue(self) -> str:
        """Local mode only: the results topic's queue that the local webhooks worker drains (instead of
        the topic invoking the webhooks Lambda)."""
        return f"{self.prefix}-webhooks-local"

    @property
    def webhooks_local_dlq(self) -> str:
        return f"{self.prefix}-webhooks-local-dlq"

    # -- storage -------------------------------------------------------------------------------------
    @property
    def tasks_table(self) -> str:
        return f"{self.prefix}-tasks"

    @property
    def api_keys_table(self) -> str:
        return f"{self.prefix}-api-keys"

    @property
    def key_api(self) -> str:
        """The REST API that takes ``x-api-key`` (the SigV4 one is ``<prefix>-api``)."""
        return f"{self.prefix}-key-api"

    @property
    def models_bucket(self) -> str:
        return f"{self.prefix}-models-{self.account}-{self.region}"

    @property
    def outputs_bucket(self) -> str:
        return f"{self.prefix}-outputs-{self.account}-{self.region}"

    # -- compute -------------------------------------------------------------------------------------
    @property
    def cluster(self) -> str:
        return self.prefix

    def release(self, runtime: str) -> str:
        return f"{self.prefix}-{runtime}"

    def service_account(self, runtime: str) -> str:
        return f"{self.prefix}-{runtime}"

    @property
    def metrics_namespace(self) -> str:
        return "Easel"

    # -- ARNs (for local mode and tests; CDK uses the constructs' own attributes) ---------------------
    def topic_arn(self, topic: str) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{topic}"

    def queue_arn(self, queue: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{queue}"


# -- object keys (tenant isolation is a prefix: IAM policies and the agent's input checks use it) ---------
def tenant_prefix(tenant: str) -> str:
    return f"tenants/{tenant}/"


def output_dir(tenant: str, task_id: str, prefix: str | None = None) -> str:
    """A task's output folder; ``prefix`` (compat ``prefix``/``save_dir``) replaces ``tasks`` but stays
    inside the tenant's own prefix: a prefix that could leave it (``..``, ``/``-led, empty segments) or take
    a reserved folder (``inputs``, ``loras``) raises ValueError here, whoever built it."""
    if prefix is not None and not safe_output_prefix(prefix):
        raise ValueError(f"output prefix '{prefix[:80]}' is not 1-4 plain segments inside the tenant prefix")
    return f"tenants/{tenant}/{prefix or 'tasks'}/{task_id}/"


def safe_output_prefix(prefix: str) -> bool:
    """Whether ``prefix`` may name outputs inside a tenant's prefix (:data:`OUTPUT_PREFIX_PATTERN`: every
    segment starts with a letter or digit, so no ``.``/``..`` segment; not a reserved folder)."""
    head = prefix.split("/", 1)[0]
    return bool(re.fullmatch(OUTPUT_PREFIX_PATTERN, prefix)) and head not in RESERVED_PREFIXES


def output_key(tenant: str, task_id: str, index: int, ext: str = "png", prefix: str | None = None) -> str:
    return f"{output_dir(tenant, task_id, prefix)}{index}.{ext}"


def result_document_key(tenant: str, task_id: str, prefix: str | None = None) -> str:
    """The stable-diffusion-on-eks ``.out`` JSON of a compat task, beside its images."""
    return f"{output_dir(tenant, task_id, prefix)}{task_id}.out"


def input_prefix(tenant: str) -> str:
    return f"tenants/{tenant}/inputs/"


def lora_key(tenant: str, name: str) -> str:
    """A tenant's private LoRA adapter, in the OUTPUTS bucket (workloads may write only ``tenants/*``
    there): train-lora tasks upload to it, and generation tasks of the same tenant naming ``name`` in
    ``loras`` use it (the agent looks under the task's own tenant prefix only)."""
    return f"tenants/{tenant}/loras/{name}.safetensors"
