"""The exception tree of the shared core.

EaselError
├── ConfigError              config.yaml is invalid (names the key and the reason)
├── ContractError            a payload does not satisfy the task contract
│   └── FieldError           ... and we know which field (``field`` is a dotted path)
│       └── InvalidCursor    a pagination cursor that is tampered, foreign or of another query
├── TransitionError          a status change the state machine forbids
└── StoreError               the task table refused or failed an operation
    ├── TaskNotFound
    ├── TaskConflict         a conditional write lost (idempotency mismatch, concurrent update)
    ├── ApiKeyNotFound       no API key with that id for that tenant (easel/apikeys.py)
    └── StoreUnavailable     throttling / transient AWS failure: retry later
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the contract imports this module: no runtime import back
    from easel.contract import Task


class EaselError(Exception):
    """Base of every error raised by the shared core."""


class ConfigError(EaselError):
    """The config is invalid; ``key`` names the offending key as a dotted path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key '{key}': {reason}")
        self.key = key
        self.reason = reason


class ContractError(EaselError):
    """A payload does not satisfy the task contract."""


class FieldError(ContractError):
    """One or more fields are invalid. ``field``/``reason`` describe the first; ``errors`` holds all."""

    def __init__(self, field: str, reason: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.errors = errors or [{"field": field, "message": reason}]


class InvalidCursor(FieldError):
    """A ``next`` cursor this deployment did not issue for this tenant and query."""

    def __init__(self, reason: str = "not a pagination cursor of this listing") -> None:
        super().__init__("next", reason)


class TransitionError(EaselError):
    """The status machine forbids moving from ``current`` to ``target``."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"task status cannot move from '{current}' to '{target}'")
        self.current = current
        self.target = target


class StoreError(EaselError):
    """The task table refused or failed an operation."""


class TaskNotFound(StoreError):
    def __init__(self, tenant: str, task_id: str) -> None:
        super().__init__(f"task '{task_id}' not found")
        self.tenant = tenant
        self.task_id = task_id


class ApiKeyNotFound(StoreError):
    def __init__(self, key_id: str, tenant: str) -> None:
        super().__init__(f"tenant '{tenant}' has no API key '{key_id}'")
        self.key_id = key_id
        self.tenant = tenant


class TaskConflict(StoreError):
    """A conditional write lost; ``current`` is the stored task when known."""

    def __init__(self, message: str, current: Task | None = None) -> None:
        super().__init__(message)
        self.current: Task | None = current


class StoreUnavailable(StoreError):
    """Throttling or a transient AWS failure; the caller may retry."""
