"""Config values read as numbers or names, with the ConfigError a bad one gets: shared by every key's parser."""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from .errors import ConfigError


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """" (did you mean X?)" for the choice the value is closest to: one that differs only in case, else ones it is
    the start of (A100 -> A100-40GB or A100-80GB), else the most similar; "" when none is close."""
    choices, text = list(choices), str(value)
    close = ([c for c in choices if c.lower() == text.lower()]
             or [c for c in choices if text and c.lower().startswith(text.lower())]
             or difflib.get_close_matches(text, choices, n=1))
    return f" (did you mean {' or '.join(close[:3])}?)" if close else ""


def whole_number(key: str, value: Any, lo: int, hi: int) -> int:
    """A whole number, also written as 16384.0 or 1e4 (a YAML string: YAML 1.1 floats need a dot)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, value, f"must be a whole number from {lo} to {hi}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(key, value, f"must be a whole number from {lo} to {hi}") from None
    if not (math.isfinite(number) and number.is_integer() and lo <= number <= hi):
        raise ConfigError(key, value, f"must be a whole number from {lo} to {hi}")
    return int(number)
