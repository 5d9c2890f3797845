"""What a verification trusts, and what a signature may ask for: roots, revocation data, a
clock and a timestamping service. Injected, so tests freeze time and run offline."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from asn1crypto import x509

from signing.report import chain_reason, check
from trust.errors import EtrustError
from trust.tsa import (
    TimeStampAuthority,
    TimestampInfo,
    build_request,
    token_der,
    verify_token,
)
from trust.validation import Check, RevocationMode, TrustStore, ValidationReport, validate_chain


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VerifyContext:
    """Trust anchors and revocation data for verifying signed documents.

    Without ``trust`` no chain can be established: signatures may still be cryptographically
    intact, but the report is INDETERMINATE (NO_CERTIFICATE_CHAIN_FOUND). ``revocation`` is
    certvalidator's mode; ``soft-fail`` uses the CRLs and OCSP answers given and ignores what is
    missing, ``require`` needs them for every certificate below the root.
    """

    trust: TrustStore | None = None
    crls: tuple[bytes, ...] = ()
    ocsp_responses: tuple[bytes, ...] = ()
    revocation: RevocationMode = "soft-fail"
    clock: Callable[[], datetime] = field(default=_utc_now)

    def now(self) -> datetime:
        return self.clock()

    def validate_certificate(
        self,
        cert: x509.Certificate | bytes,
        *,
        at: datetime,
        role: str,
        intermediates: Iterable[x509.Certificate] = (),
        key_usage: set[str] | None = None,
        extended_key_usage: set[str] | None = None,
        proven: bool = False,
    ) -> tuple[str, Check, ValidationReport | None]:
        """(sub-reason, check named ``<role>.chain``, the chain report) for ``cert`` at ``at``.

        ``proven``: a verified timestamp proves ``at``, so revocation data issued since counts
        (a CRL of today that does not list the certificate shows it was not revoked then).
        """
        name = f"{role}.chain"
        if self.trust is None:
            return (
                "NO_CERTIFICATE_CHAIN_FOUND",
                check(name, "indeterminate", "no trust anchors were given"),
                None,
            )
        validation = validate_chain(
            cert,
            trust_roots=self.trust,
            intermediates=intermediates,
            crls=self.crls,
            ocsp_responses=self.ocsp_responses,
            at=at,
            revocation=self.revocation,
            key_usage=key_usage,
            extended_key_usage=extended_key_usage,
            retroactive_revocation=proven,
        )
        result = {"PASSED": "passed", "FAILED": "failed"}.get(validation.verdict, "indeterminate")
        path = " <- ".join(validation.path)
        detail = f"{validation.message} ({path})" if path else validation.message
        return chain_reason(validation), check(name, result, detail), validation  # type: ignore[arg-type]

    def verify_timestamp(
        self,
        token: bytes,
        *,
        data: bytes,
        certificates: Iterable[x509.Certificate] = (),
    ) -> tuple[TimestampInfo | None, Check]:
        """A timestamp token over ``data``, checked against the trust roots (its TSA chain)."""
        if self.trust is None:
            return None, check("timestamp", "indeterminate", "no trust anchors were given")
        try:
            info = verify_token(
                token,
                trusted=[*self.trust.roots, *self.trust.intermediates],
                data=data,
                certificates=certificates,
            )
        except EtrustError as exc:
            return None, check("timestamp", "failed", f"{exc.code}: {exc.message}")
        return info, check(
            "timestamp", "passed", f"genTime {info.gen_time.isoformat()} ({info.hash_algorithm})"
        )


class Timestamper(Protocol):
    """Gets timestamp tokens (DER ContentInfo) from a TSA.

    ``timestamp`` stamps data (hashed here with ``hash_name``); ``timestamp_digest`` stamps a
    digest the caller already has (PAdES: pyhanko computes it while writing the file).
    """

    def timestamp(self, data: bytes, hash_name: str) -> bytes: ...

    def timestamp_digest(self, digest: bytes, hash_name: str) -> bytes: ...


@dataclass(frozen=True)
class LocalTimestamper:
    """Our own TSA, called in process (no HTTP round trip for signatures made here)."""

    tsa: TimeStampAuthority

    def timestamp(self, data: bytes, hash_name: str) -> bytes:
        return self.timestamp_digest(hashlib.new(hash_name, data).digest(), hash_name)

    def timestamp_digest(self, digest: bytes, hash_name: str) -> bytes:
        """The token of a granted reply; a refusal raises TimestampRejectedError."""
        reply = self.tsa.respond(build_request(digest=digest, hash_name=hash_name))
        return token_der(reply)
