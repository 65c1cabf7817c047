"""Strict JSON (RFC 8259, PROTOCOL 1.1 "Numbers"): in at ingress, out once per frame.

- `loads` parses what a client sent and refuses `NaN`, `Infinity`, `-Infinity` and
  numbers that overflow a double (`1e400`, or an integer beyond ±1.8e308): a browser's
  `JSON.parse` would reject the first three and turn the others into `Infinity`.
- `dumps` encodes a frame with `allow_nan=False`. Should a non-finite number still reach
  it (a row stored by an older server, a figure computed as NaN), it is sent as `null`
  rather than as a frame no browser can read; the slow path runs only then.
- `loads_stored` reads JSON the server stored itself (old rows may hold `Infinity`):
  non-finite numbers come back as None.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from typing import Any

log = logging.getLogger("confide.json")

_MAX_DOUBLE = sys.float_info.max
#: The decimal digits of the largest double: a shorter integer always fits.
_DOUBLE_DIGITS = len(str(int(_MAX_DOUBLE)))


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _int(text: str) -> int:
    value = int(text)
    if len(text) >= _DOUBLE_DIGITS and abs(value) > _MAX_DOUBLE:
        raise ValueError("number out of range")
    return value


#: Only a number with a 3-digit exponent or a run of 200+ digits can overflow a double
#: (a 2-digit exponent needs a 210-digit mantissa). Texts without one (nearly all) are
#: parsed with the C scanner alone, twice as fast as with a callback per number.
_SUSPECT = re.compile(r"[eE][+-]?\d{3}|\d{200}")
#: Built once: `json.loads` with hooks would build a decoder per call.
_PLAIN = json.JSONDecoder(parse_constant=_constant)
_CHECKED = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


def loads(text: str | bytes) -> Any:
    """Parse strict JSON (UTF-8 when bytes); ValueError (UnicodeDecodeError included), or
    RecursionError for deep nesting, otherwise."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    decoder = _PLAIN if _SUSPECT.search(text) is None else _CHECKED
    return decoder.decode(text)


def finite(value: Any) -> Any:
    """`value` with every non-finite float (and out-of-range integer) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) <= _MAX_DOUBLE else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact strict JSON; a non-finite number is written as null (and logged)."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        log.warning("a non-finite number in an outgoing frame was sent as null")
        return json.dumps(finite(value), separators=(",", ":"), allow_nan=False)


def loads_stored(text: str | bytes) -> Any:
    """JSON the server stored: rows written before strict parsing may hold `NaN` or
    `Infinity`, which are read back as None (the literals are found by a fast scan)."""
    value = json.loads(text)
    probe = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if "NaN" in probe or "Infinity" in probe:
        return finite(value)
    return value
