"""Bounds every JSON value of the contract obeys: what the task table (DynamoDB) and the runtime can hold.

A DynamoDB number keeps at most 38 significant digits, and its magnitude is 0 or between 1e-130 and
9.99...e125; a string must be valid UTF-8 (no lone surrogates). A request that breaks one of these would
pass validation and then fail at the store with a 5xx, so the contract refuses it first, naming the field:

- integers: at most :data:`MAX_INT_DIGITS` digits (``|n| < 10**38``);
- decimals: finite, and 0 or a magnitude in [:data:`MIN_FLOAT_MAGNITUDE`, :data:`MAX_FLOAT_MAGNITUDE`];
- strings and object keys: valid Unicode (no unpaired surrogate code points); keys not empty (the local
  store, moto, cannot list an item holding one);
- nesting: at most :data:`MAX_DEPTH` levels.

The same bounds are published in the JSON schema (``float_bounds_schema`` on every decimal field, the
``context`` description).
"""

from __future__ import annotations

import math
from typing import Any

from easel.errors import FieldError

MAX_INT_DIGITS = 38
MAX_INT = 10**MAX_INT_DIGITS - 1
MIN_FLOAT_MAGNITUDE = 1e-130
MAX_FLOAT_MAGNITUDE = 9.9e125
MAX_DEPTH = 32
# What the schema says about every decimal: "0, or a magnitude the store keeps exactly enough".
FLOAT_BOUNDS_SCHEMA: dict[str, Any] = {
    "not": {
        "anyOf": [
            {"exclusiveMinimum": 0, "exclusiveMaximum": MIN_FLOAT_MAGNITUDE},
            {"exclusiveMinimum": -MIN_FLOAT_MAGNITUDE, "exclusiveMaximum": 0},
        ]
    }
}
JSON_VALUE_BOUNDS = (
    f"numbers: integers of at most {MAX_INT_DIGITS} digits, decimals 0 or of magnitude "
    f"{MIN_FLOAT_MAGNITUDE:g}..{MAX_FLOAT_MAGNITUDE:g}; strings valid Unicode; keys non-empty; "
    f"at most {MAX_DEPTH} levels"
)


class OversizedInt:
    """An integer literal too long to convert (the JSON parser keeps its digit count, not its value)."""

    __slots__ = ("digits",)

    def __init__(self, literal: str) -> None:
        self.digits = len(literal.lstrip("-"))


def parse_json_int(literal: str) -> int | OversizedInt:
    """``parse_int`` hook for :func:`json.loads`: Python refuses to convert over 4300 digits."""
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        return OversizedInt(literal)
    return int(literal)


def valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def float_problem(value: float) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if not math.isfinite(value):
        return "must be a finite number"
    magnitude = abs(value)
    if magnitude and not MIN_FLOAT_MAGNITUDE <= magnitude <= MAX_FLOAT_MAGNITUDE:
        return (
            f"{value!r} is out of range: use 0 or a magnitude between "
            f"{MIN_FLOAT_MAGNITUDE:g} and {MAX_FLOAT_MAGNITUDE:g}"
        )
    return None


def storable_float(value: float) -> float:
    """Pydantic after-validator of every decimal field of the contract."""
    problem = float_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def check_json_value(value: Any, path: str = "body") -> None:
    """Raise :class:`FieldError` naming the first value (by dotted path) the store could not hold."""
    _walk(value, path, 1)


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FieldError(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, OversizedInt):
        raise FieldError(
            path, f"an integer of {value.digits} digits is over the {MAX_INT_DIGITS}-digit limit"
        )
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise FieldError(path, f"an integer over {MAX_INT_DIGITS} digits is over the limit")
        return
    if isinstance(value, float):
        problem = float_problem(value)
        if problem:
            raise FieldError(path, problem)
        return
    if isinstance(value, str):
        if not valid_unicode(value):
            raise FieldError(path, "is not valid Unicode (unpaired surrogate)")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not valid_unicode(key):
                raise FieldError(path, "has a key that is not valid Unicode (unpaired surrogate)")
            if not key:
                raise FieldError(path, "has an empty key")
            _walk(item, _join(path, key), depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _walk(item, _join(path, str(i)), depth + 1)


def _join(path: str, key: str) -> str:
    # An empty key still names a field: '""'; long keys are cut so the error stays readable.
    segment = key[:64] or '""'
    return segment if path == "body" else f"{path}.{segment}"
