"""The API's exception tree; every member renders as ``{"error": {"code", "message", "field"?}}``.

    ApiError                      status + machine code + message (+ field)
    ├── BadRequest              400 a request the API cannot use (the field is named when known)
    ├── Forbidden               403 the caller maps to no tenant
    ├── NotFound                404 no such task for this tenant, or no such route
    ├── MethodNotAllowed        405 known path, other method
    ├── Conflict                409 idempotency mismatch, or a status change the task no longer allows
    ├── PayloadTooLarge         413 body over ``api.limits.max_body_bytes``
    ├── UnsupportedMediaType    415 body that is not ``application/json``
    ├── TooManyRequests         429 over a tenant's entitlement (tasks in flight, daily quota); Retry-After
    └── ServiceUnavailable      503 AWS (table, topic) unavailable: retry later

Core errors (:mod:`easel.errors`) are mapped onto these by the handlers in ``app.py``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.extra = extra or {}

    def headers(self) -> dict[str, str]:
        """Response headers that go with the error (none by default)."""
        return {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        err.update(self.extra)
        return {"error": err}


class BadRequest(ApiError):
    status = 400
    code = "invalid_request"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.extra.setdefault("retry_after_seconds", retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"
