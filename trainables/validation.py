"""One error type and a few checks for validating user input once, at the boundary."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


class ConfigError(ValueError):
    """A user-supplied value is invalid. The message names the field, the value and what is
    valid."""

    def __init__(self, field: str, value: Any, valid: str) -> None:
        super().__init__(f"{field}={value!r} is invalid: expected {valid}")
        self.field = field
        self.value = value
        self.valid = valid


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"a number in {left}{low_text}, {high_text}{right}"


def check_range(
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Return ``value`` if it is a number inside the interval, else raise :class:`ConfigError`."""
    valid = _interval(low, high, low_open, high_open)
    if integer:
        valid = valid.replace("a number", "an integer")
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type or value != value or value in (math.inf, -math.inf):  # NaN, ±inf, non-numbers
        raise ConfigError(field, value, valid)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(field, value, valid)
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(field, value, valid)
    return value


def check_choice(field: str, value: Any, choices: Collection[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    if value not in choices:
        raise ConfigError(field, value, "one of " + ", ".join(repr(c) for c in sorted(choices)))
    return value
