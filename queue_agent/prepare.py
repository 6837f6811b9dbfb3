"""The prepare stage (on a poller's thread): from a received message to a job the runtime can run.

Parse the message (a malformed one is the settler's ``poison``), open the task's span, ensure its record
(created from the message if it was published to the topic directly), skip a terminal task (its
notification once, then delete), resolve the model's store path, fetch the inputs through the safe fetcher,
resolve private LoRAs under the task's own tenant, and let the runtime adapter build its request.
Any error is settled here; the job then never reaches the runtime.
"""

from __future__ import annotations

import httpx
from opentelemetry.trace import Span, Tracer

from easel.contract import QueueMessage, TaskType, parse_queue_message
from easel.contract.tasks import GenerationInput, PipelineInput, TrainLoraInput, UpscaleInput
from easel.errors import FieldError
from queue_agent import compat
from queue_agent.batching import batch_key, images_of
from queue_agent.errors import Unsupported
from queue_agent.inputs import InputFetcher, InputPolicy
from queue_agent.job import Job
from queue_agent.lanes import Received
from queue_agent.loras import PrivateLoras
from queue_agent.runtimes import Runtime, RuntimeRequest
from queue_agent.settings import AgentSettings
from queue_agent.settle import Settler
from queue_agent.state import TaskState
from queue_agent.telemetry import record_queue_wait, start_task_span


def input_policy(settings: AgentSettings) -> InputPolicy:
    origins = set()
    for o in settings.agent_test_insecure_origins:
        u = httpx.URL(o)
        port = u.port or (443 if u.scheme == "https" else 80)
        origins.add(f"{u.scheme.lower()}://{u.host.lower()}:{port}")
    return InputPolicy(
        allowed_buckets=settings.allowed_input_buckets,
        allowed_https_hosts=frozenset(settings.allowed_https_hosts),
        max_bytes=settings.max_input_bytes,
        max_pixels=settings.max_input_pixels,
        timeout_seconds=settings.agent_input_timeout_seconds,
        test_insecure_origins=frozenset(origins),
    )


class Preparer:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        state: TaskState,
        inputs: InputFetcher,
        loras: PrivateLoras,
        runtime: Runtime,
        tracer: Tracer,
        settler: Settler,
        batching: bool = False,
    ) -> None:
        self._settings = settings
        # Only when this runtime takes mixed batches (the agent decides, from settings and the adapter).
        self._batching = batching
        self._state = state
        self._inputs = inputs
        self._loras = loras
        self._runtime = runtime
        self._tracer = tracer
        self._settler = settler

    def prepare(self, received: Received) -> Job | None:
        """Parse, ensure the record, skip terminal tasks, fetch inputs. None if the message is settled."""
        try:
            message = parse_queue_message(received.body)
        except FieldError as exc:
            self._settler.poison(received, exc)
            return None
        job = Job(received=received, message=message, span=self._span(received, message), tracer=self._tracer)
        record_queue_wait(job.span, self._tracer, message.created_at)
        try:
            task = self._state.ensure(message)
            job.task = task
            if task.status.terminal:
                # Canceled while queued, or a duplicate of a finished task: its notification once, then ack.
                self._settler.notify_and_ack(job, task, skipped=True)
                return None
            compat.check_prefix(task)
            job.store_path = self.store_path(message)
            with job.stage("fetch inputs"):
                job.request, lora_names = self._request(message, job.store_path)
            if self._batching:
                job.batch_key = batch_key(message, store_path=job.store_path, lora_names=lora_names)
                job.images = images_of(message)
            job.span.add_event("prepared")
            return job
        except Exception as exc:
            self._settler.settle(job, exc)
            return None

    def store_path(self, message: QueueMessage) -> str:
        path = self._settings.models.get(message.model)
        if path is None:
            served = ", ".join(sorted(self._settings.models))
            raise Unsupported(
                f"model '{message.model}' is not served by runtime '{self._settings.runtime}' "
                f"(it serves: {served})"
            )
        return path

    def _request(self, message: QueueMessage, store_path: str) -> tuple[RuntimeRequest, dict[str, str]]:
        """The runtime request, and the task's LoRA names as the runtime will see them."""
        inp = message.input
        if message.task_type is TaskType.TRAIN_LORA and isinstance(inp, TrainLoraInput):
            # Training images go through the same safe fetch (tenant prefix, allow-list, limits).
            images = [self._inputs.fetch(u, message.tenant).data for u in inp.images]
            return self._runtime.training_request(inp, images=images, model=store_path), {}
        if isinstance(inp, GenerationInput):
            fetch = self._inputs.fetch
            fetched = [fetch(u, message.tenant).data for u in inp.init_images]
            # Masks and control images are inputs like init images: same tenant prefix, allow-list, limits.
            mask = fetch(inp.mask, message.tenant).data if inp.mask is not None else None
            controls = [fetch(u.image, message.tenant).data for u in inp.controlnet]
            # Only the task's own tenant prefix is looked at: another tenant's adapter is unreachable.
            names = self._loras.resolve(message.tenant, [lo.name for lo in inp.loras])
            request = self._runtime.generation_request(
                inp, init_images=fetched, lora_names=names, mask=mask, control_images=controls
            )
            return request, names
        if message.task_type is TaskType.UPSCALE and isinstance(inp, UpscaleInput):
            image = self._inputs.fetch(inp.image, message.tenant).data
            return self._runtime.upscale_request(inp, image=image), {}
        if isinstance(inp, PipelineInput):
            files = {name: self._inputs.fetch(u, message.tenant).data for name, u in inp.images.items()}
            return self._runtime.pipeline_request(inp, images=files), {}
        raise Unsupported(f"task_type '{message.task_type}' does not match its input")

    def _span(self, received: Received, message: QueueMessage) -> Span:
        return start_task_span(
            self._tracer,
            message.trace_context,
            "easel.task",
            {
                "easel.task_id": message.id,
                "easel.tenant": message.tenant,
                "easel.runtime": message.runtime,
                "easel.model": message.model,
                "easel.task_type": str(message.task_type),
                "easel.lane": str(received.lane),
                "messaging.message.id": received.message_id,
                "easel.receive_count": received.receive_count,
            },
        )
