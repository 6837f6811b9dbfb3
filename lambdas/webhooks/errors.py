"""Errors of the webhooks Lambda.

WebhookError
├── DeliveryRefused     the URL is not allowed (scheme, address, redirect): never retried
├── DeliveryRejected    the receiver answered 4xx (not 408/429): retrying would not help
└── DeliveryFailed      timeout, connection error, 408/429/5xx: raised so Lambda retries the event
"""

from __future__ import annotations


class WebhookError(Exception):
    def __init__(self, url: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"webhook '{url}': {reason}")
        self.url = url
        self.reason = reason
        # The receiver's HTTP status when it answered (None: refused, timed out, connection failed).
        self.status = status


class DeliveryRefused(WebhookError):
    pass


class DeliveryRejected(WebhookError):
    pass


class DeliveryFailed(WebhookError):
    pass
