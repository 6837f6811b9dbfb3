"""The exception tree of the queue agent; the class of an error decides what happens to its message.

    AgentError
    ├── RetryableError            keep the message; visibility backoff from the receive count
    │   ├── RuntimeUnavailable    runtime unreachable, 503, busy, or not ready
    │   ├── AwsUnavailable        AWS throttling or a transient AWS failure (after botocore's own retries)
    │   └── InputUnavailable      an allowed input origin failed transiently (5xx, connect error)
    ├── PermanentError            fail the task with {code, message}, notify, delete the message
    │   ├── InvalidMessage        the queue message does not satisfy the contract      invalid_message
    │   ├── Unsupported           task type / model this agent cannot serve             unsupported
    │   ├── ModelMissing          the runtime does not have the model (404)             model_missing
    │   ├── LoraMissing           the runtime does not have a LoRA the task names (404) lora_missing
    │   ├── RuntimeRejected       the runtime refused the request (400/404/422)         runtime_rejected
    │   ├── NodeFailed            a node of a ComfyUI workflow raised (node id + text)  node_failed
    │   ├── InputRefused          an input URL is not allowed (scheme, host, address,   input_refused
    │   │                         bucket, tenant prefix, redirect)
    │   ├── InputInvalid          input bytes: too large, not an image, too many pixels input_invalid
    │   └── TaskTimeout           EASEL_TASK_TIMEOUT_SECONDS elapsed (runtime interrupted) timeout
    ├── TaskCanceled              not a failure: the task was canceled while we held it
    ├── AlreadyDone               not a failure: the task is already terminal (duplicate delivery)
    └── RuntimeFault              the runtime answered 5xx (not 503) or nonsense: an *unknown* error

Anything else (a bug, a runtime 500, an unexpected AWS error) is *unknown*: the message is left alone, so it
comes back after the visibility timeout and reaches the DLQ after maxReceiveCount receives; on the last
allowed receive the task is also marked failed (``retries_exhausted``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class RetryableError(AgentError):
    """Transient: try the message again later (visibility backoff), keep it."""


class RuntimeUnavailable(RetryableError):
    """The runtime is unreachable, busy (503) or not ready."""


class AwsUnavailable(RetryableError):
    """AWS throttled us or failed transiently."""


class InputUnavailable(RetryableError):
    """An allowed input origin failed transiently; ``url`` names it."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"input '{url}' unavailable: {reason}")
        self.url = url


class PermanentError(AgentError):
    """Retrying cannot help: the task fails with ``code`` and this message."""

    code = "failed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidMessage(PermanentError):
    code = "invalid_message"


class Unsupported(PermanentError):
    code = "unsupported"


class ModelMissing(PermanentError):
    code = "model_missing"


class LoraMissing(PermanentError):
    code = "lora_missing"


class RuntimeRejected(PermanentError):
    code = "runtime_rejected"


class NodeFailed(PermanentError):
    """A node of a ComfyUI workflow failed while running; the message names the node and what it said."""

    code = "node_failed"

    def __init__(self, node_id: str, node_type: str, message: str) -> None:
        super().__init__(f"node {node_id} ({node_type}) failed: {message}")
        self.node_id = node_id
        self.node_type = node_type


class InputRefused(PermanentError):
    """An input reference is not allowed; the message names the URL and why."""

    code = "input_refused"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"input '{url}' refused: {reason}")
        self.url = url
        self.reason = reason


class InputInvalid(PermanentError):
    """The input's bytes are unusable (size, pixels, not an image); names the URL and why."""

    code = "input_invalid"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"input '{url}' invalid: {reason}")
        self.url = url
        self.reason = reason


class TaskTimeout(PermanentError):
    code = "timeout"


class TaskCanceled(AgentError):
    """The task was canceled (by the API) while the agent held it."""


class AlreadyDone(AgentError):
    """The task reached a terminal state elsewhere (a duplicate delivery raced us)."""


class RuntimeFault(AgentError):
    """The runtime failed in a way we cannot classify (500, malformed answer): handled as unknown."""


# ClientError codes that mean "slow down / try later" across SQS, SNS, S3 and DynamoDB.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "KMSThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def is_transient_aws(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "") in THROTTLING_CODES
    return isinstance(
        exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError
    )


@contextmanager
def aws_call(what: str) -> Iterator[None]:
    """Turn transient AWS failures into :class:`AwsUnavailable`; anything else propagates unchanged."""
    try:
        yield
    except Exception as exc:
        if is_transient_aws(exc):
            raise AwsUnavailable(f"{what}: {exc}") from exc
        raise
