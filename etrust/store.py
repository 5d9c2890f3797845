"""SQL-backed stores: the CA's certificate repository, CA records and API clients.

Each public method is one transaction: it either happens completely or not at all. Lookups
answer ``None`` (or an empty list) for things that do not exist, as ``MemoryRepository`` does;
writes raise errors from ``trust.errors``.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from asn1crypto import x509
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from etrust.models import (
    NAME_LENGTH,
    SERIAL_HEX_LENGTH,
    ApiClientRow,
    CaRow,
    CrlNumberRow,
    IssuedCertificateRow,
    RevocationRow,
    ServiceIdentityRow,
)
from storage.engine import transaction
from trust.algorithms import key_type_of
from trust.clock import Clock, system_clock
from trust.errors import (
    AlreadyRevokedError,
    AuthError,
    CaNotFoundError,
    CertificateNotFoundError,
    ConfigurationError,
    ConflictError,
    MalformedInputError,
    NotFoundError,
)
from trust.repository import (
    GOOD,
    REVOCATION_REASONS,
    UNKNOWN,
    CertificateStatus,
    IssuedCertificate,
    Revocation,
)

_T = TypeVar("_T")

_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_LENGTH - 1}}}")
_MAX_SERIAL = 1 << (4 * SERIAL_HEX_LENGTH)


def check_name(name: str, what: str = "name") -> str:
    """CA, client and department names: 1-64 letters, digits, '.', '_' and '-'."""
    if not _NAME.fullmatch(name):
        raise MalformedInputError(
            f"{what} {name!r} must be 1-{NAME_LENGTH} letters, digits, '.', '_' or '-'"
        )
    return name


def serial_to_hex(serial: int) -> str:
    """Zero-padded so that text order is numeric order; refuses what RFC 5280 does not allow."""
    if not 0 <= serial < _MAX_SERIAL:
        raise MalformedInputError(f"serial number {serial} is outside 0 .. 2**160 - 1")
    return format(serial, f"0{SERIAL_HEX_LENGTH}x")


def serial_from_hex(text: str) -> int:
    return int(text, 16)


def _lookup_serial(serial: int) -> str | None:
    """The stored form of a serial, or None for one we could never have stored."""
    return format(serial, f"0{SERIAL_HEX_LENGTH}x") if 0 <= serial < _MAX_SERIAL else None


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedInputError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)


def _retry_after_conflict(sessions: sessionmaker[Session], work: Callable[[Session], _T]) -> _T:
    """Run ``work`` in a write transaction; if a concurrent writer made it hit a unique
    constraint, run it once more so it sees that writer's row and answers accordingly."""
    try:
        with transaction(sessions, write=True) as session:
            return work(session)
    except IntegrityError:
        with transaction(sessions, write=True) as session:
            return work(session)


# --------------------------------------------------------------------------- certificates


def _issued(row: IssuedCertificateRow) -> IssuedCertificate:
    return IssuedCertificate(
        issuer=row.issuer,
        serial=serial_from_hex(row.serial),
        subject=row.subject,
        profile=row.profile,
        not_before=row.not_before,
        not_after=row.not_after,
        der=row.der,
    )


def _revocation(row: RevocationRow) -> Revocation:
    return Revocation(row.issuer, serial_from_hex(row.serial), row.reason, row.revoked_at)


_STATUS_QUERY = (
    select(RevocationRow.reason, RevocationRow.revoked_at)
    .select_from(IssuedCertificateRow)
    .outerjoin(
        RevocationRow,
        (RevocationRow.issuer == IssuedCertificateRow.issuer)
        & (RevocationRow.serial == IssuedCertificateRow.serial),
    )
    .where(
        IssuedCertificateRow.issuer == bindparam("issuer"),
        IssuedCertificateRow.serial == bindparam("serial"),
    )
)


class SqlCertificateRepository:
    """``trust.repository.CertificateRepository`` on SQLite or PostgreSQL.

    Same behaviour as ``MemoryRepository``, plus refusals it lacks: recording a different
    certificate under an existing (issuer, serial) raises ``ConflictError`` instead of
    overwriting history (the identical one again is a no-op); unknown revocation reasons,
    naive datetimes, serials outside 0 .. 2**160 - 1 and issuer names that are not short
    identifiers raise ``MalformedInputError`` rather than being stored for a CRL to trip on.
    """

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]
        self._clock = clock

    def add_certificate(self, cert: IssuedCertificate) -> None:
        check_name(cert.issuer, "issuer")
        if len(cert.profile) > NAME_LENGTH:
            raise MalformedInputError(f"profile name {cert.profile!r} is too long")
        serial = serial_to_hex(cert.serial)
        not_before = _aware(cert.not_before, "not_before")
        not_after = _aware(cert.not_after, "not_after")

        def work(session: Session) -> None:
            existing = session.scalar(
                select(IssuedCertificateRow).where(
                    IssuedCertificateRow.issuer == cert.issuer,
                    IssuedCertificateRow.serial == serial,
                )
            )
            if existing is not None:
                if _issued(existing) != cert:
                    raise ConflictError(
                        f"{cert.issuer} already recorded a different certificate {cert.serial:x}"
                    )
                return
            session.add(
                IssuedCertificateRow(
                    issuer=cert.issuer,
                    serial=serial,
                    subject=cert.subject,
                    profile=cert.profile,
                    not_before=not_before,
                    not_after=not_after,
                    der=cert.der,
                    created_at=self._clock(),
                )
            )
            session.flush()

        _retry_after_conflict(self._sessions, work)

    def get_certificate(self, issuer: str, serial: int) -> IssuedCertificate | None:
        key = _lookup_serial(serial)
        if key is None:
            return None
        with transaction(self._sessions) as session:
            row = session.scalar(
                select(IssuedCertificateRow).where(
                    IssuedCertificateRow.issuer == issuer, IssuedCertificateRow.serial == key
                )
            )
            return None if row is None else _issued(row)

    def certificates_with_serial(self, serial: int) -> list[IssuedCertificate]:
        key = _lookup_serial(serial)
        if key is None:
            return []
        with transaction(self._sessions) as session:
            rows = session.scalars(
                select(IssuedCertificateRow)
                .where(IssuedCertificateRow.serial == key)
                .order_by(IssuedCertificateRow.issuer)
            )
            return [_issued(r) for r in rows]

    def revoke(self, issuer: str, serial: int, reason: str, at: datetime) -> Revocation:
        """Record a revocation; raise if unknown or already revoked (nothing half-written)."""
        if reason not in REVOCATION_REASONS:
            raise MalformedInputError(f"unknown revocation reason {reason!r}")
        revoked_at = _aware(at, "revocation time")
        unknown = CertificateNotFoundError(f"{issuer} issued no certificate {serial:x}")
        key = _lookup_serial(serial)
        if key is None:
            raise unknown

        def work(session: Session) -> Revocation:
            if (
                session.scalar(
                    select(IssuedCertificateRow.id).where(
                        IssuedCertificateRow.issuer == issuer, IssuedCertificateRow.serial == key
                    )
                )
                is None
            ):
                raise unknown
            if session.scalar(
                select(RevocationRow.id).where(
                    RevocationRow.issuer == issuer, RevocationRow.serial == key
                )
            ):
                raise AlreadyRevokedError(f"certificate {serial:x} is already revoked")
            row = RevocationRow(issuer=issuer, serial=key, reason=reason, revoked_at=revoked_at)
            session.add(row)
            session.flush()
            return _revocation(row)

        return _retry_after_conflict(self._sessions, work)

    def get_revocation(self, issuer: str, serial: int) -> Revocation | None:
        key = _lookup_serial(serial)
        if key is None:
            return None
        with transaction(self._sessions) as session:
            row = session.scalar(
                select(RevocationRow).where(
                    RevocationRow.issuer == issuer, RevocationRow.serial == key
                )
            )
            return None if row is None else _revocation(row)

    def certificate_status(self, issuer: str, serial: int) -> CertificateStatus:
        """One indexed query with Core, no ORM objects: OCSP asks this on every request."""
        key = _lookup_serial(serial)
        if key is None:
            return UNKNOWN
        with self._engine.connect() as conn:
            row = conn.execute(_STATUS_QUERY, {"issuer": issuer, "serial": key}).first()
        if row is None:
            return UNKNOWN
        if row.reason is None:
            return GOOD
        return CertificateStatus(True, Revocation(issuer, serial, row.reason, row.revoked_at))

    def revocations(self, issuer: str) -> list[Revocation]:
        with transaction(self._sessions) as session:
            rows = session.scalars(select(RevocationRow).where(RevocationRow.issuer == issuer))
            return sorted((_revocation(r) for r in rows), key=lambda r: r.serial)

    def next_crl_number(self, issuer: str) -> int:
        """Allocate the next CRL number for ``issuer`` (1, 2, ...), atomically."""
        check_name(issuer, "issuer")
        with transaction(self._sessions, write=True) as session:
            return _bump_crl_number(session, issuer)

    def next_crl(self, issuer: str) -> tuple[int, list[Revocation]]:
        """A CRL number and the revocations that CRL lists, read in the same transaction.

        The number is taken first, under the counter's row lock, so a CRL with a higher number
        is read after every lower one was committed: it never lists fewer revocations.
        """
        check_name(issuer, "issuer")
        with transaction(self._sessions, write=True) as session:
            number = _bump_crl_number(session, issuer)
            rows = session.scalars(select(RevocationRow).where(RevocationRow.issuer == issuer))
            return number, sorted((_revocation(r) for r in rows), key=lambda r: r.serial)


def _bump_crl_number(session: Session, issuer: str) -> int:
    """One ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: the first call creates the
    counter, later ones bump it, and concurrent callers queue on the row lock, so no two ever
    get the same number and none is skipped."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(CrlNumberRow).values(issuer=issuer, last_number=1)
        stmt = pg.on_conflict_do_update(
            index_elements=[CrlNumberRow.issuer],
            set_={"last_number": CrlNumberRow.last_number + 1},
        ).returning(CrlNumberRow.last_number)
    elif dialect == "sqlite":
        lite = sqlite.insert(CrlNumberRow).values(issuer=issuer, last_number=1)
        stmt = lite.on_conflict_do_update(
            index_elements=[CrlNumberRow.issuer],
            set_={"last_number": CrlNumberRow.last_number + 1},
        ).returning(CrlNumberRow.last_number)
    else:  # make_engine refuses other databases; this guards hand-made engines
        raise ConfigurationError(f"CRL numbering is not implemented for {dialect}")
    return int(session.execute(stmt).scalar_one())


# --------------------------------------------------------------------------- CA records


@dataclass(frozen=True)
class CaRecord:
    """A CA this service runs: its name, where its key lives, its certificate."""

    name: str
    key_type: str
    key_uri: str
    certificate_der: bytes
    parent: str | None
    created_at: datetime

    @property
    def certificate(self) -> x509.Certificate:
        return x509.Certificate.load(self.certificate_der)


def _ca(row: CaRow) -> CaRecord:
    return CaRecord(
        row.name, row.key_type, row.key_uri, row.certificate_der, row.parent, row.created_at
    )


class CaRecordStore:
    """Which CAs exist; ``etrust init`` saves them, the app loads them at start."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def save(
        self, name: str, key_uri: str, certificate_der: bytes, parent: str | None = None
    ) -> CaRecord:
        """Record a CA; saving the same one again is a no-op, a different one a conflict.

        The key type is read from the certificate so it cannot disagree with it.
        """
        check_name(name, "CA name")
        if parent is not None:
            check_name(parent, "parent CA name")
        if not key_uri or len(key_uri) > 1024:
            raise MalformedInputError("key URI must be 1-1024 characters")
        try:
            certificate = x509.Certificate.load(certificate_der, strict=True)
            key_type = key_type_of(certificate.public_key)
        except ValueError as exc:
            raise MalformedInputError(f"CA {name}: not a DER certificate: {exc}") from exc

        def work(session: Session) -> CaRecord:
            existing = session.scalar(select(CaRow).where(CaRow.name == name))
            if existing is not None:
                if (existing.certificate_der, existing.key_uri, existing.parent) != (
                    certificate_der,
                    key_uri,
                    parent,
                ):
                    raise ConflictError(f"a different CA named {name} is already recorded")
                return _ca(existing)
            if (
                parent is not None
                and session.scalar(select(CaRow.id).where(CaRow.name == parent)) is None
            ):
                raise CaNotFoundError(f"parent CA {parent} is not recorded")
            row = CaRow(
                name=name,
                key_type=key_type,
                key_uri=key_uri,
                certificate_der=certificate_der,
                parent=parent,
                created_at=self._clock(),
            )
            session.add(row)
            session.flush()
            return _ca(row)

        return _retry_after_conflict(self._sessions, work)

    def get(self, name: str) -> CaRecord | None:
        with transaction(self._sessions) as session:
            row = session.scalar(select(CaRow).where(CaRow.name == name))
            return None if row is None else _ca(row)

    def list(self) -> builtins.list[CaRecord]:
        """All CAs, parents before their children, then by name."""
        with transaction(self._sessions) as session:
            records = [_ca(r) for r in session.scalars(select(CaRow).order_by(CaRow.name))]
        ordered: builtins.list[CaRecord] = []
        placed: set[str | None] = {None}
        while len(ordered) < len(records):
            ready = [r for r in records if r.parent in placed and r.name not in placed]
            if not ready:  # pragma: no cover - save() wants the parent first: no cycles
                raise ConfigurationError("CA records form a cycle")
            ordered.extend(ready)
            placed.update(r.name for r in ready)
        return ordered


# ------------------------------------------------------------------- service identities

SERVICE_PURPOSES = ("ocsp", "tsa", "audit", "seal-maker", "log", "qr")


@dataclass(frozen=True)
class ServiceIdentity:
    """A delegated OCSP responder or a TSA: its key, its certificate and the CA it serves."""

    name: str
    purpose: str
    ca_name: str
    key_uri: str
    certificate_der: bytes


def _identity(row: ServiceIdentityRow) -> ServiceIdentity:
    return ServiceIdentity(row.name, row.purpose, row.ca_name, row.key_uri, row.certificate_der)


class ServiceIdentityStore:
    """Which services sign for which CA; ``etrust init`` saves them, the app loads them."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def save(self, identity: ServiceIdentity, *, renew: bool = False) -> ServiceIdentity:
        """Record an identity; the same again is a no-op, a different one under its name a
        conflict unless ``renew`` (a new certificate for the service, same purpose and CA)."""
        check_name(identity.name, "service name")
        if identity.purpose not in SERVICE_PURPOSES:
            raise MalformedInputError(
                f"service purpose must be one of {', '.join(SERVICE_PURPOSES)}"
            )

        def work(session: Session) -> ServiceIdentity:
            existing = session.scalar(
                select(ServiceIdentityRow).where(ServiceIdentityRow.name == identity.name)
            )
            if existing is not None:
                same_role = (existing.purpose, existing.ca_name) == (
                    identity.purpose,
                    identity.ca_name,
                )
                if renew and same_role:
                    existing.key_uri = identity.key_uri
                    existing.certificate_der = identity.certificate_der
                    return identity
                if _identity(existing) != identity:
                    raise ConflictError(f"a different service named {identity.name} is recorded")
                return identity
            if session.scalar(select(CaRow.id).where(CaRow.name == identity.ca_name)) is None:
                raise CaNotFoundError(f"CA {identity.ca_name} is not recorded")
            session.add(ServiceIdentityRow(**vars(identity), created_at=self._clock()))
            session.flush()
            return identity

        return _retry_after_conflict(self._sessions, work)

    def get(self, name: str) -> ServiceIdentity | None:
        with transaction(self._sessions) as session:
            row = session.scalar(select(ServiceIdentityRow).where(ServiceIdentityRow.name == name))
            return None if row is None else _identity(row)

    def list(self) -> builtins.list[ServiceIdentity]:
        with transaction(self._sessions) as session:
            rows = session.scalars(select(ServiceIdentityRow).order_by(ServiceIdentityRow.name))
            return [_identity(r) for r in rows]


# --------------------------------------------------------------------------- API clients

API_ROLES = ("admin", "ra-officer", "security-officer", "department", "auditor", "service-desk")
"""What a client may be; the web layer decides what each role may do. ``service-desk`` is a
citizen-facing window: the only role that mints holder links (read-only ones), which nobody
else may, admin and the certificate RA (``ra-officer``) included."""

_TOKEN = re.compile(r"et_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_UNKNOWN_HASH = hashlib.sha256(b"no such client").hexdigest()


@dataclass(frozen=True)
class ApiClient:
    name: str
    role: str
    department: str | None
    token_prefix: str  # not secret: shown in lists and logs to tell tokens apart
    created_at: datetime
    disabled: bool


def _client(row: ApiClientRow) -> ApiClient:
    return ApiClient(
        row.name, row.role, row.department, row.token_prefix, row.created_at, row.disabled
    )


def _token_hash(token: str) -> str:
    # A plain hash is enough: the token carries 256 random bits, so there is nothing to guess
    # and no need for a slow password hash.
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class ApiClientStore:
    """API clients and their bearer tokens; a token is shown once and only its hash is kept."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, name: str, role: str, department: str | None = None) -> str:
        """Register a client and return its token: ``et_<prefix>_<secret>``, never seen again.

        A ``department`` client must name its department code.
        """
        check_name(name, "client name")
        if role not in API_ROLES:
            raise MalformedInputError(f"unknown role {role!r}; use one of {', '.join(API_ROLES)}")
        if department is not None:
            check_name(department, "department code")
        elif role == "department":
            raise MalformedInputError("a department client needs a department code")
        for _ in range(3):  # a fresh prefix on the (2**-48) chance it is taken
            prefix = secrets.token_hex(6)
            token = f"et_{prefix}_{secrets.token_urlsafe(32)}"
            try:
                with transaction(self._sessions, write=True) as session:
                    if session.scalar(select(ApiClientRow.id).where(ApiClientRow.name == name)):
                        raise ConflictError(f"an API client named {name} already exists")
                    session.add(
                        ApiClientRow(
                            name=name,
                            role=role,
                            department=department,
                            token_prefix=prefix,
                            token_hash=_token_hash(token),
                            created_at=self._clock(),
                            disabled=False,
                        )
                    )
                    session.flush()
                return token
            except IntegrityError:
                # Either the prefix collided (try another) or a concurrent create took the name.
                if self.get(name) is not None:
                    raise ConflictError(f"an API client named {name} already exists") from None
        raise ConflictError("could not allocate a unique token prefix")  # pragma: no cover

    def authenticate(self, token: str) -> ApiClient:
        """The enabled client holding ``token``; ``AuthError`` for anything else.

        Unknown, malformed, wrong and disabled tokens get the same answer, and the hash is
        compared in constant time.
        """
        failure = AuthError("invalid or disabled API token")
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise failure
        with transaction(self._sessions) as session:
            row = session.scalar(
                select(ApiClientRow).where(ApiClientRow.token_prefix == match.group(1))
            )
            stored = _UNKNOWN_HASH if row is None else row.token_hash
            matches = hmac.compare_digest(_token_hash(token), stored)
            if row is None or not matches or row.disabled:
                raise failure
            return _client(row)

    def get(self, name: str) -> ApiClient | None:
        with transaction(self._sessions) as session:
            row = session.scalar(select(ApiClientRow).where(ApiClientRow.name == name))
            return None if row is None else _client(row)

    def list(self) -> builtins.list[ApiClient]:
        with transaction(self._sessions) as session:
            rows = session.scalars(select(ApiClientRow).order_by(ApiClientRow.name))
            return [_client(r) for r in rows]

    def disable(self, name: str) -> None:
        """Stop a client's token working at once; disabling twice is harmless."""
        with transaction(self._sessions, write=True) as session:
            row = session.scalar(select(ApiClientRow).where(ApiClientRow.name == name))
            if row is None:
                raise NotFoundError(f"no API client named {name}")
            row.disabled = True
