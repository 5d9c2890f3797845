"""The signed trust list: the CAs, the departments' QR keys (by key id) and their seal
certificates, versioned and signed by the registry's publication key.

Offline verifiers cache it (and show its age); a code whose key id is not on the list is
"unknown key", one whose key was withdrawn is refused. Signed like the status list, over
canonical JSON (RFC 8785); the signer's certificate travels in the list and must chain to one
of its roots, which a verifier pins.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import x509

from signing.jcs import canonicalize
from trust.algorithms import DEFAULT_FOR_KEY, key_type_of
from trust.certificates import load_certificate
from trust.errors import EtrustError, InvalidSignatureError, MalformedInputError
from trust.keys import KeyHandle
from trust.profiles import PUBLICATION_EKU
from trust.validation import TrustStore, validate_chain

FORMAT = "etrust-trust-list/1"
NEXT_UPDATE = timedelta(days=7)


@dataclass(frozen=True)
class QrKeyEntry:
    key_id: str
    """Hex of the 8-byte key id the license codes carry."""
    department: str
    department_name: str
    issuer_code: str
    certificate: bytes
    withdrawn_at: str | None = None
    """When its certificate was revoked (ISO 8601), if it was."""
    withdrawn_reason: str | None = None
    """The revocation reason (RFC 5280 name): after a compromise no code of it is believed."""
    type_codes: tuple[str, ...] = ()
    """The license types the department issues: codes of other types are not its to sign."""


@dataclass(frozen=True)
class TrustList:
    number: int
    issued_at: datetime
    next_update: datetime
    roots: tuple[bytes, ...]
    intermediates: tuple[bytes, ...]
    qr_keys: Mapping[str, QrKeyEntry]
    seals: tuple[Mapping[str, str], ...] = ()
    status_list_url: str = ""
    verify_urls: tuple[str, ...] = ()
    """The pages a license QR code may point at (``<base>/v``); others are foreign sites."""
    signer: bytes = b""
    raw: bytes = field(default=b"", repr=False)

    def age(self, now: datetime) -> timedelta:
        return now - self.issued_at

    @functools.cached_property
    def store(self) -> TrustStore:
        return TrustStore(self.roots, self.intermediates)


def build_trust_list(
    *,
    number: int,
    issued_at: datetime,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    qr_keys: Sequence[QrKeyEntry],
    seals: Sequence[Mapping[str, str]],
    status_list_url: str,
    signer_key: KeyHandle,
    verify_urls: Sequence[str] = (),
    signer_certificate: x509.Certificate,
) -> bytes:
    """The signed trust list (JSON bytes)."""
    body = canonicalize(
        {
            "format": FORMAT,
            "number": number,
            "issued_at": issued_at.isoformat(),
            "next_update": (issued_at + NEXT_UPDATE).isoformat(),
            "roots": [_b64(c.dump()) for c in roots],
            "intermediates": [_b64(c.dump()) for c in intermediates],
            "qr_keys": [
                {
                    "key_id": k.key_id,
                    "department": k.department,
                    "department_name": k.department_name,
                    "issuer_code": k.issuer_code,
                    "certificate": _b64(k.certificate),
                    "withdrawn_at": k.withdrawn_at,
                    "withdrawn_reason": k.withdrawn_reason,
                    "type_codes": list(k.type_codes),
                }
                for k in sorted(qr_keys, key=lambda k: k.key_id)
            ],
            "seals": [dict(s) for s in seals],
            "status_list_url": status_list_url,
            "verify_urls": list(verify_urls),
            "signer": _b64(signer_certificate.dump()),
        }
    )
    signature = base64.b64encode(signer_key.sign(body))
    return b'{"list":' + body + b',"signature":"' + signature + b'"}'


def read_trust_list(
    data: bytes,
    *,
    anchors: Sequence[x509.Certificate] | None,
    at: datetime | None = None,
) -> TrustList:
    """A trust list signed by the publication key (its own EKU), whose certificate chains at
    ``at`` (default: now) to one of ``anchors`` — the roots the verifier pinned; the list's
    own roots never vouch for the list. ``anchors=None`` is for the server reading its own
    list (the roots it carries are then the home's). Raises MalformedInputError or
    InvalidSignatureError."""
    try:
        outer = json.loads(data)
        inner = outer["list"]
        body = canonicalize(inner)
        signature = base64.b64decode(outer["signature"], validate=True)
        if not isinstance(inner, dict) or inner.get("format") != FORMAT:
            raise ValueError("not this format")
        roots = tuple(base64.b64decode(c) for c in inner["roots"])
        intermediates = tuple(base64.b64decode(c) for c in inner["intermediates"])
        signer_der = base64.b64decode(inner["signer"])
        qr_keys = {
            k["key_id"]: QrKeyEntry(
                k["key_id"],
                k["department"],
                k["department_name"],
                k["issuer_code"],
                base64.b64decode(k["certificate"]),
                k.get("withdrawn_at"),
                k.get("withdrawn_reason"),
                tuple(k.get("type_codes") or ()),
            )
            for k in inner["qr_keys"]
        }
        issued_at = datetime.fromisoformat(inner["issued_at"])
        next_update = datetime.fromisoformat(inner["next_update"])
        number = int(inner["number"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"not a trust list: {exc}") from exc
    if anchors is not None:
        if not anchors:
            raise InvalidSignatureError("pin a root to check a trust list against (--trust)")
        pinned = {a.dump() for a in anchors}
        roots = tuple(r for r in roots if r in pinned)  # the list cannot add roots of its own
        if not roots:
            raise InvalidSignatureError("the trust list's roots are not the ones pinned here")
    signer = load_certificate(signer_der)
    report = validate_chain(
        signer,
        trust_roots=TrustStore(roots, intermediates),
        intermediates=intermediates,
        at=at or datetime.now(UTC),
        revocation="none",
    )
    if not report.passed:
        raise InvalidSignatureError(f"the trust list's signer is not trusted: {report.message}")
    if PUBLICATION_EKU not in _extended_key_usages(signer):
        raise InvalidSignatureError(
            "the trust list is signed by a key not certified to publish it (no publication EKU)"
        )
    try:
        public = signer.public_key
        DEFAULT_FOR_KEY[key_type_of(public)].verify(public, signature, body)
    except EtrustError as exc:
        raise InvalidSignatureError(f"the trust list's signature does not verify: {exc}") from exc
    return TrustList(
        number=number,
        issued_at=issued_at,
        next_update=next_update,
        roots=roots,
        intermediates=intermediates,
        qr_keys=qr_keys,
        seals=tuple(inner.get("seals", [])),
        status_list_url=str(inner.get("status_list_url", "")),
        verify_urls=tuple(str(u) for u in inner.get("verify_urls", [])),
        signer=signer_der,
        raw=bytes(data),
    )


def _extended_key_usages(certificate: x509.Certificate) -> set[str]:
    value = certificate.extended_key_usage_value
    return {purpose.dotted for purpose in value} if value is not None else set()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def entry_summary(entry: QrKeyEntry) -> dict[str, Any]:
    return {"key_id": entry.key_id, "department": entry.department, "issuer": entry.issuer_code}
