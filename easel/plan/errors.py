"""The planner's exception tree.

EaselError (easel.errors)
└── PlanError              a profile, a sweep or the config cannot be planned (``key`` names the dotted key)
"""

from __future__ import annotations

from easel.errors import EaselError


class PlanError(EaselError):
    """Bad planner input: ``key`` is the dotted key (``traffic.rate_per_second``, ``sweep``, ...)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
