"""Minimal DER writing for hot paths: gluing pre-encoded parts together.

asn1crypto re-serialises nested values on every ``dump()`` of a freshly built structure, which
costs milliseconds per certificate. Builders therefore encode each part once (with asn1crypto)
and join the parts here; parsing stays with asn1crypto.
"""

from __future__ import annotations


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def integer(value: int) -> bytes:
    """DER INTEGER (two's complement, minimal length)."""
    size = (value.bit_length() + 8) // 8 if value >= 0 else ((-value - 1).bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(max(size, 1), "big", signed=True))


def bit_string(data: bytes) -> bytes:
    return tlv(0x03, b"\x00" + data)


def explicit(tag_number: int, content: bytes) -> bytes:
    """A constructed context-specific tag wrapping already-encoded content."""
    return tlv(0xA0 | tag_number, content)
