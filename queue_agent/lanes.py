"""The runtime's two lane queues: receive, batched delete and visibility changes, and the backoff policy.

Which lane is asked when (priority) is the prefetcher's business: see :mod:`queue_agent.prefetch`.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from easel.contract import Lane
from queue_agent.errors import aws_call

log = logging.getLogger(__name__)

_BATCH = 10  # SQS batch API limit


@dataclass(eq=False)
class Received:
    """One received SQS message (identity equality: each receive is its own handle)."""

    lane: Lane
    queue_url: str
    message_id: str
    receipt: str
    body: str
    receive_count: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExponentialBackoff:
    """Visibility delay for a retry, from the message's ApproximateReceiveCount (1 on first receive)."""

    base_seconds: int = 5
    cap_seconds: int = 600

    def delay(self, receive_count: int) -> int:
        exponent = max(receive_count, 1) - 1
        # min() before the power would overflow for silly counts; 2**30 already exceeds any cap.
        return int(min(self.cap_seconds, self.base_seconds * 2 ** min(exponent, 30), 43200))


class Lanes:
    """Receives from and acknowledges to the high and normal lane queues; the SQS client is injected."""

    def __init__(
        self,
        sqs: Any,
        *,
        high_url: str,
        normal_url: str,
    ) -> None:
        self._sqs = sqs
        self.urls = {Lane.HIGH: high_url, Lane.NORMAL: normal_url}

    def receive(self, lane: Lane, count: int, wait: int, *, visibility: int | None = None) -> list[Received]:
        """Up to ``count`` messages of one lane, long-polling ``wait`` seconds; hidden for ``visibility``
        seconds (the queue's visibility timeout when None)."""
        extra: dict[str, Any] = {} if visibility is None else {"VisibilityTimeout": int(visibility)}
        url = self.urls[lane]
        with aws_call(f"receive {lane} lane"):
            resp = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(count, _BATCH),
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
                **extra,
            )
        out = []
        for m in resp.get("Messages", []):
            attrs = m.get("Attributes", {})
            out.append(
                Received(
                    lane=lane,
                    queue_url=url,
                    message_id=m["MessageId"],
                    receipt=m["ReceiptHandle"],
                    body=m.get("Body", ""),
                    receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
                    attributes=attrs,
                )
            )
        return out

    def delete(self, messages: Iterable[Received]) -> list[Received]:
        """Batched delete; returns the messages SQS refused (logged; they will be redelivered)."""
        return self._batched(
            messages,
            "delete_message_batch",
            lambda i, m: {"Id": str(i), "ReceiptHandle": m.receipt},
        )

    def change_visibility(self, messages: Iterable[Received], seconds: int) -> list[Received]:
        """Batched ChangeMessageVisibility; returns the messages SQS refused."""
        return self._batched(
            messages,
            "change_message_visibility_batch",
            lambda i, m: {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": int(seconds)},
        )

    def _batched(self, messages: Iterable[Received], op: str, entry: Any) -> list[Received]:
        by_queue: dict[str, list[Received]] = defaultdict(list)
        for m in messages:
            by_queue[m.queue_url].append(m)
        failed: list[Received] = []
        for url, items in by_queue.items():
            for start in range(0, len(items), _BATCH):
                chunk = items[start : start + _BATCH]
                with aws_call(op):
                    resp = getattr(self._sqs, op)(
                        QueueUrl=url, Entries=[entry(i, m) for i, m in enumerate(chunk)]
                    )
                for f in resp.get("Failed", []):
                    m = chunk[int(f["Id"])]
                    failed.append(m)
                    # Typically an expired receipt handle: the message will come back and be skipped
                    # then (its task is terminal), so this is worth a warning, not an error.
                    log.warning(
                        "sqs batch entry failed",
                        extra={"op": op, "message_id": m.message_id, "code": f.get("Code")},
                    )
        return failed


class Acks:
    """Deletes collected from every thread, flushed in batches by the finisher."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self._lock = threading.Lock()
        self._pending: list[Received] = []

    def add(self, message: Received) -> None:
        with self._lock:
            self._pending.append(message)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> list[Received]:
        """Delete everything collected; returns what was deleted (refused entries excluded)."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return []
        try:
            failed = self._lanes.delete(batch)
        except Exception:
            # Keep them for the next flush: a lost delete means a duplicate delivery (handled), but
            # retrying costs nothing.
            with self._lock:
                self._pending[:0] = batch
            raise
        refused = set(map(id, failed))
        return [m for m in batch if id(m) not in refused]
