"""What the CA needs to remember, as interfaces; ``etrust`` implements them with SQLAlchemy.

``trust`` imports no SQL. :class:`MemoryRepository` serves tests and benchmarks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from trust.errors import AlreadyRevokedError, CertificateNotFoundError

REVOCATION_REASONS = (
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "certificate_hold",
    "remove_from_crl",
    "privilege_withdrawn",
    "aa_compromise",
)
"""RFC 5280 §5.3.1 CRLReason names (asn1crypto spelling); code 7 is unused by the RFC."""


@dataclass(frozen=True)
class IssuedCertificate:
    issuer: str  # the CA's name, e.g. "issuing-sm2"
    serial: int
    subject: str
    profile: str
    not_before: datetime
    not_after: datetime
    der: bytes


@dataclass(frozen=True)
class Revocation:
    issuer: str
    serial: int
    reason: str
    revoked_at: datetime


@dataclass(frozen=True)
class CertificateStatus:
    """What a status service needs to know: issued here at all, and revoked or not."""

    issued: bool
    revocation: Revocation | None = None


UNKNOWN = CertificateStatus(issued=False)
GOOD = CertificateStatus(issued=True)


class CertificateRepository(Protocol):
    """Issued certificates, their revocations and each CA's CRL counter."""

    def add_certificate(self, cert: IssuedCertificate) -> None: ...

    def get_certificate(self, issuer: str, serial: int) -> IssuedCertificate | None: ...

    def certificates_with_serial(self, serial: int) -> list[IssuedCertificate]: ...

    def revoke(self, issuer: str, serial: int, reason: str, at: datetime) -> Revocation:
        """Record a revocation; raise if unknown or already revoked (nothing half-written)."""
        ...

    def get_revocation(self, issuer: str, serial: int) -> Revocation | None: ...

    def certificate_status(self, issuer: str, serial: int) -> CertificateStatus:
        """Issued and revocation state in one cheap look-up (OCSP asks this per request)."""
        ...

    def revocations(self, issuer: str) -> list[Revocation]: ...

    def next_crl_number(self, issuer: str) -> int:
        """Allocate the next CRL number for ``issuer`` (1, 2, ...), atomically."""
        ...

    def next_crl(self, issuer: str) -> tuple[int, list[Revocation]]:
        """Allocate a CRL number and read the revocations it lists, atomically together:
        a CRL with a higher number never lists fewer revocations."""
        ...


class MemoryRepository:
    """In-process repository, thread-safe; for tests and benchmarks."""

    def __init__(self) -> None:
        self._certs: dict[tuple[str, int], IssuedCertificate] = {}
        self._revoked: dict[tuple[str, int], Revocation] = {}
        self._crl_numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    def add_certificate(self, cert: IssuedCertificate) -> None:
        with self._lock:
            self._certs[(cert.issuer, cert.serial)] = cert

    def get_certificate(self, issuer: str, serial: int) -> IssuedCertificate | None:
        return self._certs.get((issuer, serial))

    def certificates_with_serial(self, serial: int) -> list[IssuedCertificate]:
        return [c for (_, s), c in self._certs.items() if s == serial]

    def revoke(self, issuer: str, serial: int, reason: str, at: datetime) -> Revocation:
        with self._lock:
            if (issuer, serial) not in self._certs:
                raise CertificateNotFoundError(f"{issuer} issued no certificate {serial:x}")
            if (issuer, serial) in self._revoked:
                raise AlreadyRevokedError(f"certificate {serial:x} is already revoked")
            rev = Revocation(issuer, serial, reason, at)
            self._revoked[(issuer, serial)] = rev
            return rev

    def get_revocation(self, issuer: str, serial: int) -> Revocation | None:
        return self._revoked.get((issuer, serial))

    def certificate_status(self, issuer: str, serial: int) -> CertificateStatus:
        if (issuer, serial) not in self._certs:
            return UNKNOWN
        revocation = self._revoked.get((issuer, serial))
        return GOOD if revocation is None else CertificateStatus(True, revocation)

    def revocations(self, issuer: str) -> list[Revocation]:
        return sorted(
            (r for (i, _), r in self._revoked.items() if i == issuer), key=lambda r: r.serial
        )

    def next_crl_number(self, issuer: str) -> int:
        return self.next_crl(issuer)[0]

    def next_crl(self, issuer: str) -> tuple[int, list[Revocation]]:
        with self._lock:
            n = self._crl_numbers.get(issuer, 0) + 1
            self._crl_numbers[issuer] = n
            revoked = [r for (i, _), r in self._revoked.items() if i == issuer]
        return n, sorted(revoked, key=lambda r: r.serial)
