"""The harness floor: receive every message first, then call the runtime back to back, then delete.

Not an agent anyone should run (it holds every message and writes no results). It shows what the bench
itself costs per task when no AWS work at all sits between two generations: the loopback HTTP round trip,
JSON and base64 of a small PNG, and the machine's scheduling noise. Configured like the baseline
(``SQS_QUEUE_URL``, ``API_BASE_URL``) plus ``FLOOR_TASKS``.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import httpx


def main() -> None:
    queue_url = os.environ["SQS_QUEUE_URL"]
    base = os.environ["API_BASE_URL"].rstrip("/")
    expected = int(os.environ["FLOOR_TASKS"])
    sqs: Any = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages.extend(resp.get("Messages", []))
    import json

    with httpx.Client(base_url=base, trust_env=False) as http:
        for m in messages:
            body = json.loads(m["Body"])["input"]
            http.post("/txt2img", json=body, timeout=60).raise_for_status()
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )


if __name__ == "__main__":
    main()
