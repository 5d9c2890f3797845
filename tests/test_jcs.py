"""RFC 8785 canonical JSON (signing/jcs.py).

Number cases restate the kinds RFC 8785 Appendix B lists (thresholds of the plain and exponent
forms, extremes of the double range, -0, shortest round-trip digits); when Node.js is installed
it judges many random doubles, since ECMAScript's JSON.stringify defines the number form.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
import subprocess
from collections import OrderedDict
from typing import Any

import pytest

from signing.jcs import MAX_DEPTH, canonicalize, number
from trust.errors import MalformedInputError


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (0, "0"),
        (7, "7"),
        (-42, "-42"),
        (1.0, "1"),
        (0.1, "0.1"),
        (-1.5, "-1.5"),
        (4.35, "4.35"),
        (100.0, "100"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.2345678901234568e20, "123456789012345680000"),
        (999999999999999900000.0, "999999999999999900000"),
        (1e23, "1e+23"),
        (1e-6, "0.000001"),
        (1.5e-6, "0.0000015"),
        (1e-7, "1e-7"),
        (-2.5e-7, "-2.5e-7"),
        (123e-20, "1.23e-18"),
        (5e-324, "5e-324"),  # the smallest subnormal
        (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),  # the largest double
        (2.0**53, "9007199254740992"),
        (2**53 - 1, "9007199254740991"),
        (-(2**53 - 1), "-9007199254740991"),
        (1 / 3, "0.3333333333333333"),
        (1e9 / 3, "333333333.3333333"),
        (_double("44b52d02c7e14af5"), "9.999999999999997e+22"),  # just below 1e23
        (_double("3eb0c6f7a0b5ed8c"), "9.999999999999997e-7"),  # just below 1e-6
    ],
)
def test_numbers_are_written_as_ecmascript_does(value: float, expected: str) -> None:
    assert number(value) == expected
    assert canonicalize(value) == expected.encode()
    assert float(expected) == value  # and it reads back as the same double


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 2**53, -(2**53), 10**30],
)
def test_non_i_json_numbers_are_refused(value: float) -> None:
    with pytest.raises(MalformedInputError):
        canonicalize({"n": value})


def test_members_sort_by_utf16_code_units_not_code_points() -> None:
    value = {
        "\U0001f600": "emoji (surrogate pair D83D DE00)",
        "\ufb33": "Hebrew dalet with dagesh (FB33)",
        "\u20ac": "euro sign (20AC)",
        "b": "b",
        "\u00f6": "o with diaeresis (00F6)",
        "\r": "carriage return",
        "10": "ten",
        "1": "one",
        "\u0080": "C1 control",
        "B": "capital B",
    }
    out = canonicalize(value).decode()
    order = [name for name in json.loads(out, object_pairs_hook=OrderedDict)]
    assert order == [
        "\r",
        "1",
        "10",
        "B",
        "b",
        "\u0080",
        "\u00f6",
        "\u20ac",
        "\U0001f600",  # D83D sorts before FB33, although U+1F600 > U+FB33 as a code point
        "\ufb33",
    ]
    assert "\U0001f600".encode() in canonicalize(value)  # UTF-8, not \u escapes


def test_strings_escape_only_what_json_stringify_escapes() -> None:
    text = 'q"b\\s/\b\f\n\r\t\x00\x01\x1f\x7f\u2028é中'
    expected = '"q\\"b\\\\s/\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\x7f\u2028é中"'
    assert canonicalize(text) == expected.encode()


def test_whole_documents_have_no_whitespace_and_nest() -> None:
    value = {
        "numbers": [333333333.3333333, 1e30, 4.5, 0.002, 1e-27],
        "string": '€$\x0f\nA\'B"\\\\"/',
        "literals": [None, True, False],
        "nested": {"z": [], "a": {}, "m": [[1, [2, [3.0]]], {"y": 1, "x": 2}]},
    }
    assert canonicalize(value) == (
        b'{"literals":[null,true,false],'
        b'"nested":{"a":{},"m":[[1,[2,[3]]],{"x":2,"y":1}],"z":[]},'
        b'"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_key_order_and_number_spelling_of_the_input_do_not_matter() -> None:
    first = json.loads('{"b": 1.0, "a": [1E2, 0.50], "c": {"y": -0.0, "x": "\\u00e9"}}')
    second = {"c": {"x": "é", "y": 0}, "a": (100, 0.5), "b": 1}
    expected = '{"a":[100,0.5],"b":1,"c":{"x":"é","y":0}}'.encode()
    assert canonicalize(first) == canonicalize(second) == expected


@pytest.mark.parametrize(
    "value",
    [
        {1: "integer member name"},
        {"bytes": b"raw"},
        {"set": {1, 2}},
        {"object": object()},
        "\ud800 lone surrogate",
        {"\udfff": "lone surrogate in a name"},
    ],
)
def test_values_outside_json_are_refused(value: Any) -> None:
    with pytest.raises(MalformedInputError):
        canonicalize(value)


def test_nesting_is_bounded() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert canonicalize(deep).count(b"[") == MAX_DEPTH
    with pytest.raises(MalformedInputError):
        canonicalize([deep])
    with pytest.raises(MalformedInputError):
        canonicalize({"a": deep})


def test_random_doubles_match_node_json_stringify() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    rng = random.Random(8785)
    values: list[float] = []
    while len(values) < 5000:
        candidate = _double(f"{rng.getrandbits(64):016x}")
        if math.isfinite(candidate):
            values.append(candidate)
    values += [rng.uniform(-1e6, 1e6) for _ in range(1000)]
    values += [float(rng.randint(-(10**25), 10**25)) for _ in range(500)]
    script = (
        "const lines = require('fs').readFileSync(0, 'utf8').trim().split('\\n');"
        "for (const h of lines) console.log(JSON.stringify(Buffer.from(h, 'hex').readDoubleBE(0)));"
    )
    stdin = "\n".join(struct.pack(">d", v).hex() for v in values)
    proc = subprocess.run(
        [node, "-e", script], input=stdin, capture_output=True, text=True, timeout=60, check=True
    )
    expected = proc.stdout.split()
    assert len(expected) == len(values)
    mismatches = [
        (v, e, number(v)) for v, e in zip(values, expected, strict=True) if e != number(v)
    ]
    assert mismatches == []
