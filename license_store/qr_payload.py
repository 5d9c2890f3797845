"""The signed payload of a license's QR code, behind one pair of functions.

Its compact binary format belongs to the QR verification work; until then it is canonical
JSON (RFC 8785) with the identifier, version, type, issuer, validity, the holder's name (masked
unless the type says otherwise) and a salted hash of the holder code, signed with the issuing
department's seal key. Text form: ``base64url(json).base64url(sig)``.

The salted hash lets a clerk who holds the ID card match it. It does not hide the code from
someone determined: the salt is in the payload, and resident IDs of one area and birth year
are few enough to try. The QR verification work must replace it (a slow, memory-hard hash, or
matching done by the server).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import date
from typing import Any

from license_store.holder_codes import normalise_code
from signing.jcs import canonicalize
from trust.errors import MalformedInputError

FORMAT = "etrust-license-qr/0"


def holder_match(salt: bytes, holder_code: str) -> str:
    """What the payload carries of the holder code: HMAC-SM3 under a per-license salt."""
    return hmac.new(salt, normalise_code(holder_code).encode("utf-8"), "sm3").hexdigest()[:32]


def make_payload(
    *,
    identifier: str,
    version: int,
    type_code: str,
    issuer_code: str,
    issue_date: date,
    valid_from: date,
    valid_to: date | None,
    holder_name: str,
    holder_code: str,
    key_id: str,
    sign: Callable[[bytes], bytes],
) -> bytes:
    """The signed payload (ASCII bytes, ready for a QR code or a URL fragment)."""
    salt = secrets.token_bytes(8)
    body = canonicalize(
        {
            "f": FORMAT,
            "id": identifier,
            "v": version,
            "t": type_code,
            "i": issuer_code,
            "d": issue_date.isoformat(),
            "from": valid_from.isoformat(),
            "to": valid_to.isoformat() if valid_to else None,
            "n": holder_name,
            "s": _b64(salt),
            "h": holder_match(salt, holder_code),
            "k": key_id,
        }
    )
    return f"{_b64(body)}.{_b64(sign(body))}".encode("ascii")


def read_payload(payload: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """The fields, the signed bytes and the signature of a payload (not yet verified)."""
    try:
        body_b64, sig_b64 = payload.decode("ascii").split(".")
        body = _unb64(body_b64)
        fields = json.loads(body)
        signature = _unb64(sig_b64)
    except (UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise MalformedInputError(f"not a license QR payload: {exc}") from exc
    if not isinstance(fields, dict) or fields.get("f") != FORMAT:
        raise MalformedInputError("not a license QR payload of this format")
    return fields, body, signature


def key_id_of(public_key_der: bytes) -> str:
    """A key's id in payloads: the first 8 bytes of the SHA-256 of its SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_der).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
