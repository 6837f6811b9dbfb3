"""In-memory fakes behind the agent's small interfaces, for unit tests without moto, threads or sleeping:
a clock moved by hand, the lanes (SQS), the task store (DynamoDB), S3 puts, and a runtime (the seam)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from easel.contract import GenerationInput, Lane, QueueMessage, Task, TaskStatus, TrainLoraInput, UpscaleInput
from easel.contract.status import sources_of
from easel.errors import StoreUnavailable, TaskConflict, TaskNotFound
from easel.lifecycle import queued_task
from queue_agent.lanes import Received
from queue_agent.runtimes import RuntimeRequest


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def received(n: int = 1, *, receive_count: int = 1, lane: Lane = Lane.NORMAL, body: str = "{}") -> Received:
    return Received(
        lane=lane,
        queue_url=f"http://sqs/{lane}",
        message_id=f"m{n}",
        receipt=f"r{n}",
        body=body,
        receive_count=receive_count,
    )


class FakeLanes:
    """Records visibility changes and deletes; ``refuse`` names message ids SQS refuses."""

    def __init__(self) -> None:
        self.visibility: list[tuple[list[str], int]] = []
        self.deleted: list[str] = []
        self.refuse: set[str] = set()
        self.fail_calls = 0

    def change_visibility(self, messages: list[Received], seconds: int) -> list[Received]:
        if self.fail_calls:
            self.fail_calls -= 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "ChangeVisibility")
        self.visibility.append(([m.message_id for m in messages], seconds))
        return [m for m in messages if m.message_id in self.refuse]

    def delete(self, messages: list[Received]) -> list[Received]:
        self.deleted += [m.message_id for m in messages]
        return []


def message(task_id: str = "t1", *, tenant: str = "acme", created_at: datetime | None = None) -> QueueMessage:
    return QueueMessage(
        id=task_id,
        tenant=tenant,
        task_type="text-to-image",  # type: ignore[arg-type]
        model="sd15",
        runtime="sd15",
        priority="normal",  # type: ignore[arg-type]
        input=GenerationInput(prompt="a cat", steps=2, width=64, height=64),
        created_at=created_at or datetime(2026, 1, 1, tzinfo=UTC),
    )


def queued(msg: QueueMessage) -> Task:
    return queued_task(msg)


class FakeStore:
    """The TaskStore surface the agent uses, in memory, with the contract's status machine."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], Task] = {}
        self.fingerprints: dict[tuple[str, str], str] = {}
        self.unavailable = 0  # the next N calls raise StoreUnavailable
        self.attempts: dict[tuple[str, str], int] = {}
        self.progress_writes: list[tuple[str, dict[str, Any]]] = []
        self.reads = 0  # find() calls

    def _gate(self) -> None:
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("throttled")

    def find(self, tenant: str, task_id: str) -> Task | None:
        self._gate()
        self.reads += 1
        return self.tasks.get((tenant, task_id))

    def create(self, task: Task, fingerprint: str) -> tuple[Task, bool]:
        self._gate()
        key = (task.tenant, task.id)
        if key in self.tasks:
            if self.fingerprints[key] != fingerprint:
                raise TaskConflict("different body", self.tasks[key])
            return self.tasks[key], False
        self.tasks[key], self.fingerprints[key] = task, fingerprint
        return task, True

    def record_progress(self, tenant: str, task_id: str, progress: dict[str, Any]) -> bool:
        """Like the store: only while processing (the write is listed only when it lands)."""
        self._gate()
        current = self.tasks.get((tenant, task_id))
        if current is None or current.status is not TaskStatus.PROCESSING:
            return False
        self.tasks[(tenant, task_id)] = Task.model_validate(
            {**current.model_dump(mode="json"), "progress": progress}
        )
        self.progress_writes.append((task_id, progress))
        return True

    def transition(
        self,
        tenant: str,
        task_id: str,
        target: TaskStatus,
        *,
        updates: dict[str, Any] | None = None,
        sources: Any = None,
        count_attempt: bool = False,
    ) -> Task:
        self._gate()
        current = self.tasks.get((tenant, task_id))
        if current is None:
            raise TaskNotFound(tenant, task_id)
        allowed = set(sources) if sources is not None else set(sources_of(target))
        if current.status not in allowed:
            raise TaskConflict(f"is {current.status}", current)
        data = {**current.model_dump(mode="json"), **(updates or {}), "status": str(target)}
        task = Task.model_validate(data)
        self.tasks[(tenant, task_id)] = task
        if count_attempt:
            self.attempts[(tenant, task_id)] = self.attempts.get((tenant, task_id), 0) + 1
        return task


class FakeS3:
    """put_object with ``IfNoneMatch`` (first writer wins) and delete_objects, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self.error: str | None = None  # a ClientError code every put raises

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **kw: Any) -> None:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": self.error}}, "PutObject")
        if kw.get("IfNoneMatch") == "*" and Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "exists"}}, "PutObject")
        self.objects[Key] = Body

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> None:
        for obj in Delete["Objects"]:
            self.deleted.append(obj["Key"])
            self.objects.pop(obj["Key"], None)


class SeamRuntime:
    """A :class:`queue_agent.runtimes.Runtime` in memory: ``during`` runs inside the call (on the run thread),
    so a test can act "while the runtime generates" (move the clock, call the watch) without threads."""

    def __init__(self, images: list[bytes] | None = None) -> None:
        self.images = images if images is not None else [b"\x89PNG\r\n\x1a\nimage"]
        self.model: str | None = None
        self.switches = 0
        self.interrupts = 0
        self.calls: list[RuntimeRequest] = []
        self.during: Any = None
        self.error: BaseException | None = None
        self.fraction: float | None = None  # what progress() answers
        self.ready = threading.Event()
        self.ready.set()

    def wait_ready(self, timeout: float, *, stop: threading.Event | None = None) -> bool:
        return self.ready.is_set()

    def ensure_model(self, store_path: str) -> bool:
        if self.model == store_path:
            return False
        self.model, self.switches = store_path, self.switches + 1
        return True

    def generation_request(
        self,
        data: GenerationInput,
        *,
        init_images: list[bytes],
        lora_names: dict[str, str],
        mask: bytes | None = None,
        control_images: list[bytes] | None = None,
    ) -> RuntimeRequest:
        return RuntimeRequest("generate", {"prompt": data.prompt, "loras": lora_names})

    def upscale_request(self, data: UpscaleInput, *, image: bytes) -> RuntimeRequest:
        return RuntimeRequest("upscale", {"upscaler": data.upscaler}, needs_model=False)

    def training_request(self, data: TrainLoraInput, *, images: list[bytes], model: str) -> RuntimeRequest:
        return RuntimeRequest("train", {"model": model}, training=True)

    def generate(self, request: RuntimeRequest) -> list[bytes]:
        self.calls.append(request)
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return list(self.images)

    def train(self, request: RuntimeRequest) -> dict[str, Any]:
        self.calls.append(request)
        return {"weights_b64": ""}

    def progress(self) -> float | None:
        return self.fraction

    def interrupt(self) -> bool:
        self.interrupts += 1
        return True

    def private_lora(self, tenant: str, name: str) -> dict[str, Any] | None:
        return None

    def put_private_lora(
        self, tenant: str, name: str, data: bytes, *, source_etag: str | None = None
    ) -> dict[str, Any]:
        return {}
