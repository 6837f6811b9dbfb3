"""Agent test harness: the provisioned local stack in moto (real HTTP), a fake runtime over real HTTP, and
an observer queue subscribed to the results topic (raw delivery) to see result notifications."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from bench.synthetic_runtime import SyntheticRuntime
from easel.config import EaselConfig
from easel.contract import (
    QueueMessage,
    Task,
    TaskRequest,
    parse_input,
    request_fingerprint,
)
from easel.lifecycle import publish_task, queued_task
from easel.naming import Names
from easel.netsafe import Resolver, system_resolver
from easel.store import TaskStore
from infra.local.provision import Resources
from queue_agent.agent import Agent
from queue_agent.settings import AgentSettings

RUNTIME = "sd15"
ROOT_DIR = Path(__file__).resolve().parents[2]


def wait_for(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Stack:
    config: EaselConfig
    names: Names
    resources: Resources
    session: boto3.Session
    runtime: SyntheticRuntime
    observer_url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sqs = self.session.client("sqs")
        self.sns = self.session.client("sns")
        self.s3 = self.session.client("s3")
        self.ddb = self.session.client("dynamodb")
        self.store = TaskStore(self.ddb, self.resources.table)
        lanes = self.resources.lanes[RUNTIME]
        self.high_url, self.normal_url = lanes["high"].queue_url, lanes["normal"].queue_url
        self.high_dlq, self.normal_dlq = lanes["high"].dlq_url, lanes["normal"].dlq_url
        self.observer_url = self.sqs.create_queue(QueueName="observer")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.observer_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(
            TopicArn=self.resources.results_topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )

    # -- agent ------------------------------------------------------------------------------------------
    def settings(self, **overrides: Any) -> AgentSettings:
        values: dict[str, Any] = {
            "runtime": RUNTIME,
            "high_queue_url": self.high_url,
            "normal_queue_url": self.normal_url,
            "table_name": self.resources.table,
            "outputs_bucket": self.resources.outputs_bucket,
            "results_topic_arn": self.resources.results_topic_arn,
            "models": {"sd15": "sd15", "other": "other", "ghost": "ghost"},
            "runtime_url": self.runtime.url,
            "visibility_timeout_seconds": 30,
            "agent_port": 0,
            "agent_host": "127.0.0.1",
            "agent_high_wait_seconds": 1,
            "agent_normal_wait_seconds": 1,
            "agent_cancel_poll_seconds": 0.1,
            "agent_backoff_base_seconds": 1,
            "agent_backoff_cap_seconds": 2,
            "agent_shutdown_grace_seconds": 5,
            "agent_runtime_ready_timeout_seconds": 5,
            "agent_emf": True,
        }
        values.update(overrides)
        return AgentSettings(**values)

    def agent(
        self, settings: AgentSettings | None = None, *, resolver: Resolver = system_resolver, **kw: Any
    ) -> Agent:
        settings = settings or self.settings()
        return Agent(
            settings,
            session=self.session,
            runtime_http=httpx.Client(base_url=settings.runtime_url, trust_env=False),
            input_http=httpx.Client(trust_env=False),
            resolver=resolver,
            **kw,
        )

    @contextmanager
    def running(self, agent: Agent | None = None, **settings: Any) -> Iterator[Agent]:
        agent = agent or self.agent(self.settings(**settings))
        errors: list[BaseException] = []

        def target() -> None:
            try:
                agent.run()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, name="agent-under-test", daemon=True)
        thread.start()
        try:
            wait_for(lambda: agent.ready_state()["ok"], 10, "agent ready")
            yield agent
        finally:
            agent.request_stop("test end")
            thread.join(timeout=30)
            assert not thread.is_alive(), "agent did not stop"
            assert not errors, errors

    # -- tasks ------------------------------------------------------------------------------------------
    def message(
        self,
        task_id: str,
        *,
        tenant: str = "acme",
        prompt: str | None = None,
        priority: str = "normal",
        model: str = "sd15",
        task_type: str = "text-to-image",
        trace_context: dict[str, str] | None = None,
        **inp: Any,
    ) -> QueueMessage:
        data = {"prompt": prompt or f"prompt of {task_id}", "width": 64, "height": 64, "steps": 2}
        data.update(inp)
        return QueueMessage(
            id=task_id,
            tenant=tenant,
            task_type=task_type,  # type: ignore[arg-type]
            model=model,
            runtime=RUNTIME,
            priority=priority,  # type: ignore[arg-type]
            input=parse_input(task_type, data),
            created_at=datetime.now(UTC),
            trace_context=trace_context or {},
        )

    def create_record(self, msg: QueueMessage, *, webhook: str | None = None) -> Task:
        """What the API does before publishing."""
        task = queued_task(msg).model_copy(
            update={
                "webhook": webhook,
                "webhook_events_filter": ["start", "completed"] if webhook else ["completed"],
            }
        )
        req = TaskRequest(
            id=msg.id, task_type=msg.task_type, model=msg.model, priority=msg.priority, input=msg.input
        )
        created, _ = self.store.create(task, request_fingerprint(req))
        return created

    def publish(self, msg: QueueMessage) -> None:
        """Publish to the tasks topic like the API (routing by the lane filter policies)."""
        publish_task(self.sns, self.resources.tasks_topic_arn, msg)

    def submit(self, task_id: str, *, record: bool = True, **kw: Any) -> QueueMessage:
        msg = self.message(task_id, **kw)
        if record:
            self.create_record(msg)
        self.publish(msg)
        return msg

    def task(self, task_id: str, tenant: str = "acme") -> Task:
        return self.store.get(tenant, task_id)

    def wait_status(self, task_id: str, status: str, timeout: float = 15.0, tenant: str = "acme") -> Task:
        def check() -> Task | None:
            t = self.store.find(tenant, task_id)
            return t if t is not None and t.status == status else None

        result: Task = wait_for(check, timeout, f"task {task_id} {status}")
        return result

    # -- observation --------------------------------------------------------------------------------------
    def drain_results(self) -> list[dict[str, Any]]:
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.observer_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["SentTimestamp"],
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                return self.seen
            for m in msgs:
                body = json.loads(m["Body"])
                body["_attributes"] = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                # When the agent published it (wall clock, ms): the observer's polling adds no delay here.
                body["_sent_at"] = int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
                self.seen.append(body)
                self.sqs.delete_message(QueueUrl=self.observer_url, ReceiptHandle=m["ReceiptHandle"])

    def results_for(self, task_id: str) -> list[dict[str, Any]]:
        return [r for r in self.drain_results() if r["id"] == task_id]

    def wait_result(self, task_id: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
        found: list[dict[str, Any]] = wait_for(
            lambda: [r for r in self.results_for(task_id) if r["status"] == status],
            timeout,
            f"{status} notification of {task_id}",
        )
        return found[0]

    def queue_counts(self, url: str) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def objects(self, prefix: str) -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=self.resources.outputs_bucket, Prefix=prefix)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def set_lane(self, *, visibility: int, max_receive: int, lane: str = "normal") -> None:
        lanes = self.resources.lanes[RUNTIME][lane]
        self.sqs.set_queue_attributes(
            QueueUrl=lanes.queue_url,
            Attributes={
                "VisibilityTimeout": str(visibility),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": lanes.dlq_arn, "maxReceiveCount": str(max_receive)}
                ),
            },
        )


@pytest.fixture
def fake_runtime() -> Iterator[SyntheticRuntime]:
    rt = SyntheticRuntime().up()
    yield rt
    rt.down()


@pytest.fixture
def stack(
    provisioned: tuple[EaselConfig, Names, Resources],
    aws_session: boto3.Session,
    fake_runtime: SyntheticRuntime,
) -> Stack:
    config, names, resources = provisioned
    return Stack(config=config, names=names, resources=resources, session=aws_session, runtime=fake_runtime)
