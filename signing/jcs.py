"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

Signed JSON (case outcomes) is signed over these bytes, so any party can rebuild them from the
data alone, whatever the key order or number spelling it received. The rules: UTF-8, no
whitespace, object members sorted by the UTF-16 code units of their names, strings escaped as
ECMAScript's JSON.stringify does, and numbers written as ECMAScript writes an IEEE 754 double.

Only I-JSON (RFC 7493) is accepted, as RFC 8785 requires: NaN and the infinities, integers a
double cannot hold exactly (beyond 2^53 - 1 in magnitude), strings with lone surrogates and
non-string member names raise :class:`MalformedInputError` rather than being coerced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from trust.errors import MalformedInputError

__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "canonicalize", "number"]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude every JSON reader holds exactly (I-JSON, RFC 7493 §2.2)."""

MAX_DEPTH = 128
"""Deepest nesting of arrays and objects canonicalised; deeper input is refused, not recursed."""


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 form of a JSON value made of dicts, lists, str, numbers,
    bools and None (tuples count as arrays, any Mapping with str keys as an object)."""
    parts: list[str] = []
    _write(value, parts, 0)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not Unicode text, not I-JSON
        raise MalformedInputError("JSON strings must be valid Unicode (a lone surrogate)") from exc


def _write(value: Any, parts: list[str], depth: int) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int | float):
        parts.append(number(value))
    elif isinstance(value, Mapping | Sequence) and not isinstance(value, bytes | bytearray):
        if depth >= MAX_DEPTH:
            raise MalformedInputError(f"JSON nested more than {MAX_DEPTH} deep")
        if isinstance(value, Mapping):
            _object(value, parts, depth + 1)
        else:
            parts.append("[")
            for index, item in enumerate(value):
                if index:
                    parts.append(",")
                _write(item, parts, depth + 1)
            parts.append("]")
    else:
        raise MalformedInputError(f"{type(value).__name__} is not a JSON value")


def _object(value: Mapping[Any, Any], parts: list[str], depth: int) -> None:
    if not all(isinstance(name, str) for name in value):
        raise MalformedInputError("JSON member names must be strings")
    parts.append("{")
    # RFC 8785 §3.2.3: by UTF-16 code units; big-endian UTF-16 bytes compare in that order.
    names = sorted(value, key=lambda name: name.encode("utf-16-be", "surrogatepass"))
    for index, name in enumerate(names):
        if index:
            parts.append(",")
        parts.append(_string(name))
        parts.append(":")
        _write(value[name], parts, depth)
    parts.append("}")


def _string(text: str) -> str:
    # The stdlib encoder without ensure_ascii escapes exactly what JSON.stringify does: '"', '\',
    # \b \f \n \r \t by name, other controls below U+0020 as lowercase \u00xx, nothing else.
    return json.dumps(text, ensure_ascii=False)


def number(value: int | float) -> str:
    """A number as ECMAScript's Number.prototype.toString writes the double (RFC 8785 §3.2.2.3)."""
    if isinstance(value, bool):
        raise MalformedInputError("a boolean is not a JSON number")
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise MalformedInputError(
                f"integer {value} is beyond 2^53 - 1: JSON readers cannot hold it exactly"
            )
        return str(value)
    if not math.isfinite(value):
        raise MalformedInputError(f"{value} is not a JSON number")
    if value == 0:
        return "0"  # -0 too
    if value < 0:
        return "-" + number(-value)
    digits, point = _shortest_digits(value)
    # value = 0.<digits> x 10^point, with the fewest digits that read back as the same double
    # (ECMA-262 Number::toString: k = len(digits), n = point).
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    exponent = n - 1
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _shortest_digits(value: float) -> tuple[str, int]:
    """(significant digits, decimal point position) of a positive double's shortest form.

    Python's repr is the shortest string that reads back as the same double, choosing the
    nearest when several are as short: the digits ECMAScript requires.
    """
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point
