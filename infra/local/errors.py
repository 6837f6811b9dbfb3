"""The exception tree of local mode.

LocalError
├── AuthError          a request to the local gateway failed SigV4 verification (-> 403)
├── StackError         the local stack could not start (port taken, moto down, bad models dir)
└── StateError         the state file is missing or unreadable (``easel local down`` / scripts)
"""

from __future__ import annotations


class LocalError(Exception):
    """Base of local-mode errors."""


class AuthError(LocalError):
    """SigV4 verification failed; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StackError(LocalError):
    pass


class StateError(LocalError):
    pass
