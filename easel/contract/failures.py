"""What a tenant reads about a failed task: a stable ``code`` and a human message, never internals.

The task's ``error`` travels to the API, the result notifications and the webhooks, so it is built here
and only here (:func:`task_error`): a fixed sentence per code, then the detail with ARNs, account ids,
runtime API paths, file system paths and raw SDK text taken out. The full detail goes to the logs of the
component that failed the task, with the task id.
"""

from __future__ import annotations

import re

from easel.contract.tasks import TaskError

# code -> the sentence a tenant reads first (codes are documented in docs/api.md).
HEADLINES: dict[str, str] = {
    "dispatch_failed": "the task could not be queued; submit it again",
    "retries_exhausted": "the task failed on every attempt",
    "runtime_rejected": "the runtime refused the request",
    "node_failed": "a node of the workflow failed",
    "model_missing": "the model is not available on its runtime",
    "lora_missing": "a LoRA the task names is not available",
    "input_refused": "an input is not allowed",
    "input_invalid": "an input could not be used",
    "invalid_message": "the task's queue message is malformed",
    "unsupported": "this runtime cannot run the task",
    "timeout": "the task ran out of time",
}
MAX_DETAIL = 500

_SCRUB: list[tuple[re.Pattern[str], str]] = [
    # Raw botocore text: "An error occurred (Code) when calling the Op operation: ..." -> code only.
    (re.compile(r"An error occurred \((\w+)\) when calling the \w+ operation:[^\n]*"), r"AWS error \1"),
    (re.compile(r"arn:aws[\w-]*:[^\s'\",)]*"), "<aws resource>"),
    # A standalone account id; one inside a bucket name (the tenant's own s3:// input) stays as written.
    (re.compile(r"(?<![\w.-])\d{12}(?![\w.-])"), "<account>"),
    # The runtime's own API (SD WebUI / Easel endpoints) and where it listens.
    (
        re.compile(
            r"(?:(?:GET|POST|PUT|DELETE) )?(?:https?://[\w.:\[\]-]+)?/(?:sdapi|easel|internal)/[^\s'\":)]*"
        ),
        "",
    ),
    # (A bucket name holding the account id, as in the tenant's own s3:// input, is left as written.)
    # Absolute file system paths (not URL paths: those follow a host or "s3:/").
    (re.compile(r"(?<![\w:/.-])/(?:[\w.-]+/)+[\w.-]*"), "<path>"),
    (re.compile(r"Traceback \(most recent call last\).*", re.S), ""),
]


def scrub(detail: str) -> str:
    """``detail`` without ARNs, account ids, runtime API paths, file paths or raw SDK text."""
    text = detail
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s{2,}", " ", text).replace(" :", ":").strip(" :")
    return text[:MAX_DETAIL]


def task_error(code: str, detail: str = "") -> TaskError:
    """The tenant-readable error of a failed task: the code's sentence, then the scrubbed detail."""
    headline = HEADLINES.get(code, "the task failed")
    cleaned = scrub(detail)
    return TaskError(code=code, message=f"{headline}: {cleaned}" if cleaned else headline)
