"""Minimal DER writing for hot paths: gluing pre-encoded parts together.

asn1crypto re-serialises nested values on every ``dump()`` of a freshly built structure, which
costs milliseconds per certificate. Builders therefore encode each part once (with asn1crypto)
and join the parts here; parsing stays with asn1crypto.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from asn1crypto import parser

from trust.errors import EtrustError, MalformedInputError


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, *parts: bytes) -> bytes:
    """One TLV with a single-octet ``tag`` around the concatenated ``parts``."""
    content = b"".join(parts)
    return bytes((tag,)) + length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, *parts)


def set_of(*parts: bytes) -> bytes:
    """A SET OF whose elements the caller has already put in DER order."""
    return tlv(0x31, *parts)


def integer(value: int) -> bytes:
    """DER INTEGER (two's complement, minimal length)."""
    size = (value.bit_length() + 8) // 8 if value >= 0 else ((-value - 1).bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(max(size, 1), "big", signed=True))


def bit_string(data: bytes) -> bytes:
    return tlv(0x03, b"\x00" + data)


def explicit(tag_number: int, content: bytes) -> bytes:
    """A constructed context-specific tag wrapping already-encoded content."""
    return tlv(0xA0 | tag_number, content)


def generalized_time(moment: datetime) -> bytes:
    """GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 form) of an aware datetime."""
    return tlv(0x18, moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii"))


# --- reading -----------------------------------------------------------------------------


def read_tlv(
    buf: bytes, pos: int, end: int, error: type[EtrustError] = MalformedInputError
) -> tuple[int, int, int]:
    """The TLV at ``pos``: (tag, contents start, contents end); strict DER, never past ``end``.

    Single-octet tags and definite, minimal lengths only: what small protocol messages (OCSP
    requests) use. ``error`` is raised, with a plain message, for anything else.
    """
    if end - pos < 2:
        raise error("truncated DER")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise error("multi-byte DER tags are not expected here")
    size = buf[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        if count == 0:
            raise error("indefinite length (BER) is not DER")
        if count > 3 or end - pos < count:
            raise error("truncated DER")
        size = int.from_bytes(buf[pos : pos + count], "big")
        if size < 0x80 or buf[pos] == 0:
            raise error("non-minimal DER length")
        pos += count
    if end - pos < size:
        raise error("truncated DER")
    return tag, pos, pos + size


def children(
    buf: bytes, start: int, end: int, error: type[EtrustError] = MalformedInputError
) -> list[tuple[int, int, int]]:
    """The TLVs laid end to end between ``start`` and ``end``."""
    out = []
    while start < end:
        tag, s, e = read_tlv(buf, start, end, error)
        out.append((tag, s, e))
        start = e
    return out


# --- reading: TLVs with their exact bytes -----------------------------------------------


class Tlv(NamedTuple):
    cls: int
    constructed: bool
    tag: int
    contents: bytes
    encoded: bytes


MAX_SIBLINGS = 64
"""Most values :func:`tlvs` reads side by side: a token has 2 to 6 at each level and a few
certificates. The cap also bounds the certificates the chain walk tries as issuers."""


def tlv_at(data: bytes, end: int, pointer: int) -> tuple[Tlv, int]:
    """The TLV at ``pointer`` and the offset after it; slices only that TLV's own bytes.

    ``parser._parse`` is asn1crypto's offset-taking reader (private, but unchanged through the
    1.x series): ``parser.parse`` takes a whole buffer, so walking with it copies the rest of
    the buffer once per value, which is quadratic.
    """
    (cls, method, tag, _, contents, _), after = parser._parse(data, end, pointer)
    return Tlv(cls, method == 1, tag, contents, data[pointer:after]), after


def tlvs(data: bytes, what: str, *, limit: int = MAX_SIBLINGS) -> list[Tlv]:
    """The TLVs laid end to end in ``data``, each with its exact bytes; at most ``limit``.

    The parts that are hashed or signed (TSTInfo, signed attributes) are taken from the wire
    this way: asn1crypto may re-encode a parsed value it considers changed, and a check over
    re-encoded bytes would not be a check of what the TSA signed.
    """
    out: list[Tlv] = []
    offset, end = 0, len(data)
    try:
        while offset < end:
            if len(out) == limit:
                raise MalformedInputError(f"{what}: more than {limit} values side by side")
            item, offset = tlv_at(data, end, offset)
            out.append(item)
    except ValueError as exc:
        raise MalformedInputError(f"{what}: malformed DER ({exc})") from exc
    return out


def one_tlv(data: bytes, what: str) -> Tlv:
    """The single TLV that fills ``data`` (read without walking what may follow it)."""
    try:
        item, after = tlv_at(data, len(data), 0)
    except ValueError as exc:
        raise MalformedInputError(f"{what}: malformed DER ({exc})") from exc
    if after != len(data):
        raise MalformedInputError(f"{what}: {len(data) - after} bytes after the DER value")
    return item
