"""Signed case outcomes: JSON canonicalised with RFC 8785 and signed as detached CMS.

A portal or case-handling module hands over an outcome as JSON data; the department's key signs
its canonical bytes, so anyone holding the same data (in whatever key order or number spelling
a JSON library produced) can rebuild exactly what was signed and check it. The digest names the
outcome in logs and receipts: SM3 for SM2 keys, SHA-256 for RSA and ECDSA, as the signature's
own digest is.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509

from signing.cms import sign_detached, verify_detached
from signing.context import Timestamper, VerifyContext
from signing.jcs import canonicalize
from signing.report import Report, check, report
from trust.errors import MalformedInputError
from trust.keys import KeyHandle, default_algorithm

__all__ = ["FORMAT", "SignedOutcome", "sign_outcome", "verify_outcome"]

FORMAT = "outcome"


@dataclass(frozen=True)
class SignedOutcome:
    """What is stored and handed back: the signed bytes, the signature, and their digest."""

    canonical: bytes
    signature: bytes  # DER CMS ContentInfo, detached
    digest_hex: str


def sign_outcome(
    outcome: Mapping[str, Any],
    key: KeyHandle,
    cert: x509.Certificate,
    *,
    chain: Sequence[x509.Certificate] = (),
    timestamper: Timestamper | None = None,
) -> SignedOutcome:
    """Canonicalise ``outcome`` (RFC 8785) and sign it; raises MalformedInputError for data that
    is not I-JSON (NaN, huge integers, non-string keys)."""
    if not isinstance(outcome, Mapping):
        raise MalformedInputError("a case outcome is a JSON object")
    canonical = canonicalize(outcome)
    signature = sign_detached(canonical, key, cert, chain=chain, timestamper=timestamper)
    digest = hashlib.new(default_algorithm(key).hash_name, canonical).hexdigest()
    return SignedOutcome(canonical, signature, digest)


def verify_outcome(
    outcome: Mapping[str, Any] | bytes, signature: bytes, ctx: VerifyContext
) -> Report:
    """Verify a signed outcome; never raises for bad input.

    ``outcome`` is the data (canonicalised again here) or the canonical bytes as received,
    which are checked as they are. The report is the CMS one under format ``outcome``, with
    ``digest_hex`` of the checked bytes.
    """
    if isinstance(outcome, bytes | bytearray | memoryview):
        canonical = bytes(outcome)
    else:
        try:
            canonical = canonicalize(outcome)
        except MalformedInputError as exc:
            detail = f"the outcome is not JSON that can be canonicalised: {exc.message}"
            return report(
                FORMAT, "FORMAT_FAILURE", detail, checks=(check("outcome.json", "failed", detail),)
            )
    verified = verify_detached(signature, canonical, ctx)
    details = dict(verified.details)
    digest_name = details.get("digest_algorithm")
    if isinstance(digest_name, str):
        details["digest_hex"] = hashlib.new(digest_name, canonical).hexdigest()
    return dataclasses.replace(verified, format=FORMAT, details=details)
