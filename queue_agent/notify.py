"""Result notifications: the task object on the results topic, once per (task, status).

``claim_notification`` in the table decides who publishes; if the publish then fails, the claim is
released so the retry (the message is kept) claims and publishes again. Exactly once as long as SNS
either accepts or errors; a publish that succeeded but whose answer was lost may repeat (at least once).

A terminal stable-diffusion-on-eks task (``compat``) also gets the reference's fields in its message, and,
when it did not succeed, its failure ``.out`` first (a succeeded one's is written with its images); see
:mod:`queue_agent.compat`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from easel import tracing
from easel.contract import Task, TaskStatus, result_attributes, sns_attributes
from easel.errors import StoreUnavailable
from easel.store import TaskStore
from queue_agent import compat
from queue_agent.errors import AwsUnavailable, aws_call
from queue_agent.outputs import OutputWriter

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self, sns: Any, topic_arn: str, store: TaskStore, outputs: OutputWriter | None = None
    ) -> None:
        self._sns = sns
        self._topic = topic_arn
        self._store = store
        self._outputs = outputs  # compat tasks: their failure .out and output_url
        self.published = 0

    def publish_once(self, task: Task) -> bool:
        """Publish ``task`` unless its current status was already notified; True if this call published."""
        try:
            with aws_call("claim notification"):
                claimed = self._store.claim_notification(task.tenant, task.id, task.status)
        except StoreUnavailable as exc:
            raise AwsUnavailable(f"claim notification: {exc}") from exc
        if not claimed:
            return False
        try:
            with aws_call("publish result"):
                self._sns.publish(
                    TopicArn=self._topic,
                    Message=self.message(task),
                    # The publish span's context: the webhooks Lambda's deliveries join the task's trace.
                    MessageAttributes=sns_attributes({**result_attributes(task), **tracing.inject_context()}),
                )
        except BaseException:
            try:
                self._store.release_notification(task.tenant, task.id, task.status)
            except Exception:
                log.exception("could not release notification claim", extra={"task_id": task.id})
            raise
        self.published += 1
        return True

    def message(self, task: Task) -> str:
        """The task object; a terminal compat task's also has the reference's fields (its failure .out is
        written here first, so ``output_url`` never names a missing object)."""
        if task.compat is None or not task.status.terminal or self._outputs is None:
            return task.model_dump_json(exclude={"urls"})
        if task.status is not TaskStatus.SUCCEEDED and compat.has_document(task):
            self._outputs.put_result_document(
                task.tenant, task.id, compat.encode(compat.failed_document(task)), task.output_prefix
            )
        doc = task.model_dump(mode="json", exclude={"urls"})
        doc.update(compat.result_fields(task, self._outputs.bucket))
        return json.dumps(doc, separators=(",", ":"))
