"""Result notifications: the task object on the results topic, once per (task, status).

``claim_notification`` in the table decides who publishes; if the publish then fails, the claim is
released so the retry (the message is kept) claims and publishes again. Exactly once as long as SNS
either accepts or errors; a publish that succeeded but whose answer was lost may repeat (at least once).
"""

from __future__ import annotations

import logging
from typing import Any

from easel.contract import Task, result_attributes, sns_attributes
from easel.errors import StoreUnavailable
from easel.store import TaskStore
from queue_agent.errors import AwsUnavailable, aws_call

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, sns: Any, topic_arn: str, store: TaskStore) -> None:
        self._sns = sns
        self._topic = topic_arn
        self._store = store
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
                    Message=task.model_dump_json(exclude={"urls"}),
                    MessageAttributes=sns_attributes(result_attributes(task)),
                )
        except BaseException:
            try:
                self._store.release_notification(task.tenant, task.id, task.status)
            except Exception:
                log.exception("could not release notification claim", extra={"task_id": task.id})
            raise
        self.published += 1
        return True
