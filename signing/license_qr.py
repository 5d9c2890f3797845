"""The license QR code, format 1: a compact binary payload signed by the issuing department's
QR key, in the fragment of an https URL of our verify page (see docs/qr-format.md).

Offline verification needs only the payload and the trust list (which holds the QR keys by key
id); the fragment stays out of request lines and logs (our page posts it to be checked).
The holder's code is carried as a salted scrypt hash: a clerk who holds the ID card can match
it, guessing it back costs minutes of CPU per license instead of microseconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from asn1crypto import algos

from trust.errors import MalformedInputError

MAGIC = b"L\x01"
"""'L' (license) and the format number: a reader refuses formats it does not know."""

ALGORITHMS = {1: "sm2-sm3", 2: "ecdsa-p256-sha256", 3: "rsa-pkcs1-sha256"}
ALGORITHM_IDS = {name: number for number, name in ALGORITHMS.items()}
EC_SIGNATURE = 64
"""SM2 and ECDSA signatures travel as r || s (32 bytes each), not DER: 6-8 bytes less."""

EPOCH = date(1949, 10, 1)
LONG_TERM = 0xFFFF
"""valid_to of a license without an end (长期)."""

HOLDER_SALT = 8
HOLDER_HASH = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**12, 8, 1
"""About 6 ms per try on one core: negligible for a clerk, slow for someone trying every
birth date of an area."""

MAX_PAYLOAD = 700
MIN_PAYLOAD = 120
"""Shorter than the smallest possible code (fields and a 64-byte signature)."""
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_TYPE_CODE, _ISSUER = 21, 18


@dataclass(frozen=True)
class LicenseCode:
    """What a license QR code says (before or after its signature is checked)."""

    algorithm: str
    key_id: bytes
    type_code: str
    issuer_code: str
    serial: str
    version: int
    issue_date: date
    valid_from: date
    valid_to: date | None
    holder_name: str
    holder_salt: bytes
    holder_hash: bytes

    def holder_matches(self, holder_code: str) -> bool:
        """Whether ``holder_code`` (as typed from the ID card) is this license's holder."""
        return holder_digest(holder_code, self.holder_salt) == self.holder_hash


@dataclass(frozen=True)
class SignedCode:
    code: LicenseCode
    signed: bytes
    """The bytes the signature covers."""
    signature: bytes
    """As the algorithm verifies it (DER for SM2 and ECDSA)."""


def holder_digest(holder_code: str, salt: bytes) -> bytes:
    normalised = holder_code.strip().translate(_ASCII_UPPER).encode("utf-8")
    return hashlib.scrypt(
        normalised, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HOLDER_HASH
    )


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def encode(code: LicenseCode, sign: Callable[[bytes], bytes]) -> bytes:
    """The signed payload; ``sign(data)`` is the QR key's (DER for SM2 and ECDSA)."""
    body = _body(code)
    signature = sign(body)
    if code.algorithm == "rsa-pkcs1-sha256":
        return body + signature
    raw: bytes = algos.DSASignature.load(signature).to_p1363()
    return body + raw


def _body(code: LicenseCode) -> bytes:
    algorithm = ALGORITHM_IDS.get(code.algorithm)
    if algorithm is None:
        raise MalformedInputError(f"QR codes are signed with {', '.join(ALGORITHM_IDS)}")
    name = code.holder_name.encode("utf-8")
    serial = code.serial.encode("ascii")
    if len(code.key_id) != 8 or len(code.holder_salt) != HOLDER_SALT:
        raise MalformedInputError("a key id and a holder salt are 8 bytes")
    if len(code.holder_hash) != HOLDER_HASH or len(name) > 120 or not 1 <= len(serial) <= 32:
        raise MalformedInputError("a holder hash is 16 bytes, a name at most 120, a serial 1-32")
    return b"".join(
        [
            MAGIC,
            bytes([algorithm]),
            code.key_id,
            _ascii(code.type_code, _TYPE_CODE),
            _ascii(code.issuer_code, _ISSUER),
            bytes([len(serial)]),
            serial,
            struct.pack(
                ">HHHH",
                code.version,
                _days(code.issue_date),
                _days(code.valid_from),
                LONG_TERM if code.valid_to is None else _days(code.valid_to),
            ),
            bytes([len(name)]),
            name,
            code.holder_salt,
            code.holder_hash,
        ]
    )


def decode(payload: bytes) -> SignedCode:
    """Read a payload (not yet verified); MalformedInputError naming what is wrong."""
    if len(payload) > MAX_PAYLOAD:
        raise MalformedInputError(f"a license code is at most {MAX_PAYLOAD} bytes")
    if payload[:1] != MAGIC[:1]:
        raise MalformedInputError("not a license code")
    if payload[:2] != MAGIC:
        raise MalformedInputError(f"license code format {payload[1:2].hex()} is not known here")
    reader = _Reader(payload, 2)
    algorithm = ALGORITHMS.get(reader.byte())
    if algorithm is None:
        raise MalformedInputError("the code names an unknown signature algorithm")
    key_id = reader.take(8)
    type_code = reader.text(_TYPE_CODE)
    issuer = reader.text(_ISSUER)
    serial = reader.text(reader.byte())
    version, issued, start, end = struct.unpack(">HHHH", reader.take(8))
    try:
        name = reader.take(reader.byte()).decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedInputError("the holder's name in the code is not UTF-8") from exc
    salt = reader.take(HOLDER_SALT)
    holder = reader.take(HOLDER_HASH)
    signed = payload[: reader.at]
    raw = payload[reader.at :]
    if algorithm == "rsa-pkcs1-sha256":
        if len(raw) not in (256, 384, 512):
            raise MalformedInputError("the RSA signature is cut short or too long")
        signature = raw
    else:
        if len(raw) != EC_SIGNATURE:
            raise MalformedInputError("the signature is cut short or too long")
        signature = algos.DSASignature.from_p1363(raw).dump()
    code = LicenseCode(
        algorithm=algorithm,
        key_id=key_id,
        type_code=type_code,
        issuer_code=issuer,
        serial=serial,
        version=version,
        issue_date=_date(issued),
        valid_from=_date(start),
        valid_to=None if end == LONG_TERM else _date(end),
        holder_name=name,
        holder_salt=salt,
        holder_hash=holder,
    )
    return SignedCode(code, signed, signature)


def to_text(payload: bytes, verify_url: str) -> str:
    """The QR code's text: ``<verify_url>#<base64url payload>``."""
    return f"{verify_url}#{base64.urlsafe_b64encode(payload).rstrip(b'=').decode('ascii')}"


def from_text(text: str) -> bytes:
    """The payload of a scanned code: a URL with it in the fragment, or the bare base64url.
    A QR code of some other site is "not a license code" (and nothing is fetched from it)."""
    text = text.strip()
    if len(text) > 2 * MAX_PAYLOAD:
        raise MalformedInputError("this is not a license code (too long)")
    fragment = text.split("#", 1)[1] if "#" in text else text
    if "://" in fragment or not fragment:
        raise MalformedInputError("this is not a license code")
    if not _BASE64URL.fullmatch(fragment):
        raise MalformedInputError("this is not a license code")
    try:
        payload = base64.urlsafe_b64decode(fragment + "=" * (-len(fragment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedInputError("this is not a license code") from exc
    if len(payload) < MIN_PAYLOAD:  # "TEST" and friends decode to a few bytes starting "L"
        raise MalformedInputError("this is not a license code")
    if payload[:1] != MAGIC[:1]:
        raise MalformedInputError("this is not a license code")
    return payload


class _Reader:
    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise MalformedInputError("the license code is cut short")
        out = self.data[self.at : self.at + count]
        self.at += count
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def text(self, count: int) -> str:
        raw = self.take(count)
        if not raw.isascii() or not raw.isalnum():
            raise MalformedInputError("the license code holds a malformed identifier")
        return raw.decode("ascii")


def _ascii(text: str, length: int) -> bytes:
    raw = text.encode("ascii")
    if len(raw) != length:
        raise MalformedInputError(f"expected {length} characters, got {len(raw)}")
    return raw


def _days(day: date) -> int:
    days = (day - EPOCH).days
    if not 0 <= days < LONG_TERM:
        raise MalformedInputError(f"{day} cannot be carried in a license code")
    return days


def _date(days: int) -> date:
    return EPOCH + timedelta(days=days)
