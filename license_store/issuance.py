"""Issuing a license: validate, allocate the identifier, sign the QR payload, render and seal
the OFD and PDF, then store license, documents, signed event and log entry in ONE transaction.

Only the serial is taken before the documents are made, in its own short transaction: a
failure afterwards leaves a gap in the serials (allowed) and nothing else. The signed
documents exist only in memory until the transaction commits, so a database that fails
half-way leaves no row, no file and nothing signed that could pass for a license.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from license_store.errors import IdempotencyConflictError, LicenseDataError, LicenseStateError
from license_store.holder_codes import check_holder_code, holder_code_hash, mask_name
from license_store.identifiers import LicenseId, format_serial
from license_store.models import (
    DepartmentRow,
    IdempotencyRow,
    LicenseEventRow,
    LicenseFileRow,
    LicenseRow,
    LicenseTypeRow,
    SerialCounterRow,
)
from license_store.records import License, license_of, row_by_identifier, today
from license_store.registry import Department, Registry
from license_store.render import LicenseFace, render
from license_store.translog import Checkpoint, TransparencyLog
from license_store.types import LicenseType
from signing import license_qr
from signing.jcs import canonicalize
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import ConflictError, ForbiddenError, MalformedInputError

SERIAL_WIDTH = 10


class LicenseSigner(Protocol):
    """A department's seal, ready to sign (``etrust`` makes one from a seal and its key)."""

    @property
    def seal_id(self) -> str: ...

    @property
    def qr_algorithm(self) -> str:
        """The department's QR key's algorithm (``sm2-sm3``, ``ecdsa-p256-sha256``, ...)."""
        ...

    @property
    def qr_key_id(self) -> bytes:
        """The 8-byte id the trust list knows the QR key by."""
        ...

    def sign_qr(self, data: bytes) -> bytes:
        """A signature by the department's QR key (license codes)."""
        ...

    def seal_ofd(self, ofd: bytes) -> bytes:
        """The OFD with a Seal-type signature in the license's seal box."""
        ...

    def seal_pdf(self, pdf: bytes) -> bytes:
        """The PDF with a PAdES signature and the seal stamp in the seal box."""
        ...

    def sign(self, data: bytes) -> bytes:
        """A plain signature by the seal key (event records)."""
        ...


@dataclass(frozen=True)
class IssueRequest:
    type_code: str
    department: str
    holder_name: str
    holder_code: str
    holder_code_type: str = "111"
    data: Mapping[str, Any] = field(default_factory=dict)
    valid_from: date | None = None
    license_number: str | None = None
    issue_date: date | None = None
    """For historical licenses (bulk import): the date it was issued on paper."""
    valid_to: date | None = None
    """For historical licenses: the end printed on them (default: the type's rule)."""

    def fingerprint(self, seal_id: str) -> str:
        """What an Idempotency-Key is bound to: the request and the seal, hashed."""
        return hashlib.sha256(
            canonicalize(
                {
                    "seal": seal_id,
                    "type": self.type_code,
                    "department": self.department,
                    "holder_name": self.holder_name,
                    "holder_code": self.holder_code,
                    "holder_code_type": self.holder_code_type,
                    "data": dict(self.data),
                    "valid_from": self.valid_from.isoformat() if self.valid_from else None,
                    "license_number": self.license_number,
                    "issue_date": self.issue_date.isoformat() if self.issue_date else None,
                    "valid_to": self.valid_to.isoformat() if self.valid_to else None,
                }
            )
        ).hexdigest()


@dataclass(frozen=True)
class Amendment:
    """What an amendment changes (None: unchanged); ``data`` replaces all fields."""

    reason: str
    data: Mapping[str, Any] | None = None
    holder_name: str | None = None
    license_number: str | None = None
    valid_to: date | None = None


@dataclass(frozen=True)
class _Content:
    """What one version of a license says."""

    license_type: LicenseType
    department: Department
    license_id: LicenseId
    holder_name: str
    holder_code: str
    holder_code_type: str
    number: str | None
    data: dict[str, Any]
    issue_date: date
    valid_from: date
    valid_to: date | None


@dataclass(frozen=True)
class _Made:
    """A license version made and signed, ready to store."""

    content: _Content
    payload: bytes
    documents: dict[str, bytes]
    holder_hash: str
    action: str
    record: bytes
    signature: bytes
    seal_id: str
    at: datetime


@dataclass(frozen=True)
class Issued:
    license: License
    checkpoint: Checkpoint
    inclusion_proof: list[bytes]
    replayed: bool = False
    """True when an Idempotency-Key returned an earlier issuance."""


class LicenseService:
    """Issuance and reads of licenses over ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log: TransparencyLog,
        holder_key: bytes,
        *,
        verify_base_url: str,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessions
        self.registry = Registry(sessions, clock=clock)
        self.log = log
        self._holder_key = holder_key
        self._verify_base = verify_base_url.rstrip("/")
        self._clock = clock

    def holder_hash(self, holder_code: str) -> str:
        return holder_code_hash(holder_code, self._holder_key)

    def commit(self, label: str, data: bytes) -> str:
        """A keyed commitment (HMAC-SM3 under the holder key) for what the public log records
        of personal data: the registry can show a value matches, nobody else can guess it
        (a birth date and a category are few enough to enumerate behind a plain hash)."""
        return hmac.new(self._holder_key, label.encode() + b"\x00" + data, "sm3").hexdigest()

    def issue(
        self,
        request: IssueRequest,
        signer: LicenseSigner,
        actor: str,
        *,
        client: str | None = None,
        idempotency_key: str | None = None,
    ) -> Issued:
        """Issue a license; with ``idempotency_key`` a repeated request returns the first
        license and a different request under the same key is refused (409)."""
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
            earlier = self._replay(client or actor, idempotency_key, request, signer.seal_id)
            if earlier is not None:
                return earlier
        license_type, department = self.registry.issuing(request.type_code, request.department)
        if request.holder_code_type not in license_type.holder_code_types:
            raise LicenseDataError(
                f"licenses of type {license_type.code} are held under code types "
                f"{', '.join(license_type.holder_code_types)}, not {request.holder_code_type}"
            )
        holder_code = check_holder_code(request.holder_code, request.holder_code_type)
        holder_name = _one_line(request.holder_name, "holder name", 200) or ""
        number = _one_line(request.license_number, "license number", 64)
        data = license_type.validate(request.data)
        now = self._clock()
        issue_date, valid_from, valid_to = _dates(request, license_type, today(now))
        serial = format_serial(self._next_serial(license_type.code, department.uscc), SERIAL_WIDTH)
        content = _Content(
            license_type=license_type,
            department=department,
            license_id=LicenseId(license_type.code, department.uscc, serial, 1),
            holder_name=holder_name,
            holder_code=holder_code,
            holder_code_type=request.holder_code_type,
            number=number,
            data=data,
            issue_date=issue_date,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        made = self._make(content, signer, now, "issue", {})
        try:
            with transaction(self._sessions, write=True) as session:
                row = self._store(session, made, actor, None)
                if idempotency_key is not None:
                    session.add(
                        IdempotencyRow(
                            client=client or actor,
                            key=idempotency_key,
                            request_hash=request.fingerprint(signer.seal_id),
                            license_id=row.id,
                            created_at=now,
                        )
                    )
                checkpoint = self.log.sign_head(session)
                issued = license_of(row)
        except IntegrityError:
            if idempotency_key is None:
                raise
            # Another request with the same key won the race: answer as it did, or refuse.
            earlier = self._replay(client or actor, idempotency_key, request, signer.seal_id)
            if earlier is None:
                raise
            return earlier
        proof = self.log.inclusion_proof(issued.log_index, checkpoint.size)
        return Issued(issued, checkpoint, proof)

    def amend(
        self,
        identifier: str,
        changes: Amendment,
        signer: LicenseSigner,
        actor: str,
        *,
        department: str | None = None,
    ) -> Issued:
        """A new version of a license (version + 1, a new identifier, new sealed documents);
        the old version becomes superseded in the same transaction. ``department`` (a
        department client's) must be the issuer. The holder's code cannot change: another
        holder is another license."""
        reason = " ".join(changes.reason.split())
        if not 1 <= len(reason) <= 500:
            raise MalformedInputError("give a reason of 1-500 characters")
        with transaction(self._sessions) as session:
            old = license_of(row_by_identifier(session, identifier))
        if department is not None and old.department != department:
            raise ForbiddenError("only the issuing department amends a license")
        now = self._clock()
        status = old.status_on(today(now))
        if status != "valid":
            raise LicenseStateError(f"a {status} license cannot be amended")
        license_type, dept = self.registry.issuing(old.type_code, old.department)
        valid_to = changes.valid_to if changes.valid_to is not None else old.valid_to
        _check_validity(license_type, old.valid_from, valid_to)
        content = _Content(
            license_type=license_type,
            department=dept,
            license_id=LicenseId.parse(old.identifier).with_version(old.version + 1),
            holder_name=_one_line(changes.holder_name, "holder name", 200) or old.holder_name,
            holder_code=old.holder_code,
            holder_code_type=old.holder_code_type,
            number=_one_line(changes.license_number, "license number", 64) or old.license_number,
            data=license_type.validate(changes.data if changes.data is not None else old.data),
            issue_date=today(now),
            valid_from=old.valid_from,
            valid_to=valid_to,
        )
        made = self._make(
            content,
            signer,
            now,
            "amend",
            {"previous": old.identifier, "reason": self.commit("reason", reason.encode())},
        )
        with transaction(self._sessions, write=True) as session:
            superseded = session.execute(
                update(LicenseRow)
                .where(LicenseRow.id == old.id, LicenseRow.status == "valid")
                .values(
                    status="superseded",
                    status_reason=f"amended: {content.license_id}",
                    status_changed_at=now,
                )
            )
            if superseded.rowcount != 1:  # type: ignore[attr-defined]
                raise LicenseStateError("the license changed meanwhile; read it and try again")
            row = self._store(session, made, actor, reason)
            checkpoint = self.log.sign_head(session)
            issued = license_of(row)
        proof = self.log.inclusion_proof(issued.log_index, checkpoint.size)
        return Issued(issued, checkpoint, proof)

    def _make(
        self,
        content: _Content,
        signer: LicenseSigner,
        now: datetime,
        action: str,
        extra: Mapping[str, Any],
    ) -> _Made:
        """Everything of a license version that is signed, made outside any transaction: the
        QR payload, the sealed OFD and PDF, the event record and its signature."""
        identifier = str(content.license_id)
        salt = secrets.token_bytes(license_qr.HOLDER_SALT)
        payload = license_qr.encode(
            license_qr.LicenseCode(
                algorithm=signer.qr_algorithm,
                key_id=signer.qr_key_id,
                type_code=content.license_type.code,
                issuer_code=content.department.uscc,
                serial=content.license_id.serial,
                version=content.license_id.version,
                issue_date=content.issue_date,
                valid_from=content.valid_from,
                valid_to=content.valid_to,
                holder_name=(
                    content.holder_name
                    if content.license_type.qr_name == "full"
                    else mask_name(content.holder_name)
                ),
                holder_salt=salt,
                holder_hash=license_qr.holder_digest(content.holder_code, salt),
            ),
            signer.sign_qr,
        )
        face = LicenseFace(
            license_type=content.license_type,
            identifier=identifier,
            issuer_name=content.department.name,
            issuer_code=content.department.uscc,
            holder_name=content.holder_name,
            holder_code=content.holder_code,
            holder_code_type=content.holder_code_type,
            issue_date=content.issue_date,
            valid_from=content.valid_from,
            valid_to=content.valid_to,
            data=content.data,
            qr_text=self.qr_text(payload),
            license_number=content.number,
        )
        ofd, pdf = render(face, now)
        documents = {"ofd": signer.seal_ofd(ofd), "pdf": signer.seal_pdf(pdf)}
        holder_hash = self.holder_hash(content.holder_code)
        lineage = _lineage(content.license_id)
        record = canonicalize(
            {
                "action": action,
                "identifier": identifier,
                "version": content.license_id.version,
                "type": content.license_type.code,
                "issuer": content.department.uscc,
                # per license, so the public log cannot link one person's licenses
                "holder": self.commit("holder", f"{lineage}|{content.holder_code}".encode()),
                "valid_from": content.valid_from.isoformat(),
                "valid_to": content.valid_to.isoformat() if content.valid_to else None,
                "data": self.commit("data", canonicalize(content.data)),
                "documents": {
                    fmt: hashlib.sha256(data).hexdigest() for fmt, data in documents.items()
                },
                "seal": signer.seal_id,
                "at": now.isoformat(),
                **extra,
            }
        )
        return _Made(
            content, payload, documents, holder_hash, action, record, signer.sign(record),
            signer.seal_id, now,
        )  # fmt: skip

    def _store(self, session: Session, made: _Made, actor: str, reason: str | None) -> LicenseRow:
        """The license version, its documents, its event and its log entry (in ``session``)."""
        content = made.content
        _still_as_checked(session, content)
        row = LicenseRow(
            identifier=str(content.license_id),
            lineage=_lineage(content.license_id),
            version=content.license_id.version,
            type_code=content.license_type.code,
            department=content.department.code,
            license_number=content.number,
            holder_name=content.holder_name,
            holder_code=content.holder_code,
            holder_code_type=content.holder_code_type,
            holder_hash=made.holder_hash,
            issue_date=content.issue_date,
            valid_from=content.valid_from,
            valid_to=content.valid_to,
            data=canonicalize(content.data).decode("utf-8"),
            status="valid",
            status_reason=None,
            status_changed_at=made.at,
            seal=made.seal_id,
            qr_payload=made.payload,
            log_index=-1,
            issued_by=actor,
            created_at=made.at,
        )
        session.add(row)
        session.flush()
        (index,) = self.log.append(session, [made.record])
        row.log_index = index
        session.add_all(
            LicenseFileRow(
                license_id=row.id,
                format=fmt,
                content=data,
                sha256=hashlib.sha256(data).hexdigest(),
            )
            for fmt, data in made.documents.items()
        )
        session.add(
            LicenseEventRow(
                license_id=row.id,
                action=made.action,
                actor=actor,
                reason=reason,
                record=made.record,
                signature=made.signature,
                log_index=index,
                at=made.at,
            )
        )
        return row

    def qr_text(self, payload: bytes) -> str:
        """The QR code's text: our verify page with the payload in the fragment (a phone
        camera opens it; the fragment stays out of request logs, the page posts it to be checked)."""
        return license_qr.to_text(payload, f"{self._verify_base}/v")

    def _replay(self, client: str, key: str, request: IssueRequest, seal_id: str) -> Issued | None:
        with transaction(self._sessions) as session:
            found = session.get(IdempotencyRow, (client, key))
            if found is None:
                return None
            if found.request_hash != request.fingerprint(seal_id):
                raise IdempotencyConflictError(
                    f"Idempotency-Key {key!r} was used for a different request"
                )
            row = session.get(LicenseRow, found.license_id)
            assert row is not None  # a foreign key holds it
            issued = license_of(row)
        checkpoint = self.log.latest()
        proof = self.log.inclusion_proof(issued.log_index, checkpoint.size)
        return Issued(issued, checkpoint, proof, replayed=True)

    def _next_serial(self, type_code: str, issuer_code: str) -> int:
        """The next serial of (type, issuer): one atomic upsert, so concurrent issuances never
        share one (PostgreSQL and SQLite both do INSERT .. ON CONFLICT .. RETURNING)."""
        with transaction(self._sessions, write=True) as session:
            on_postgres = session.get_bind().dialect.name == "postgresql"
            dialect = postgresql if on_postgres else sqlite
            statement = dialect.insert(SerialCounterRow).values(
                type_code=type_code, issuer_code=issuer_code, next_serial=2
            )
            statement = statement.on_conflict_do_update(
                index_elements=["type_code", "issuer_code"],
                set_={"next_serial": SerialCounterRow.next_serial + 1},
            ).returning(SerialCounterRow.next_serial)
            value = session.execute(statement).scalar_one()
            return int(value) - 1


def _dates(
    request: IssueRequest, license_type: LicenseType, current: date
) -> tuple[date, date, date | None]:
    """Issue date, start and end of validity: today's and the type's rule, or those given
    (a historical license keeps its own, but none lies in the future or ends before it starts)."""
    issue_date = request.issue_date or current
    if not EARLIEST <= issue_date <= current:
        raise MalformedInputError(
            f"a license is issued between {EARLIEST} and today, not on {issue_date}"
        )
    valid_from = request.valid_from or issue_date
    if not EARLIEST <= valid_from <= current + MAX_START_AHEAD:
        raise MalformedInputError(
            f"a license starts between {EARLIEST} and a year from today, not on {valid_from}"
        )
    if request.valid_to is None:
        return issue_date, valid_from, _rule_end(license_type, valid_from)
    # A historical license keeps the end printed on it, even where an older rule allowed
    # more than today's; only nonsense is refused.
    if request.valid_to < valid_from:
        raise MalformedInputError("a license's validity cannot end before it starts")
    if request.valid_to > valid_from + MAX_HISTORICAL_VALIDITY:
        raise MalformedInputError("a license's validity cannot last over a hundred years")
    return issue_date, valid_from, request.valid_to


EARLIEST = date(1949, 10, 1)
"""No license of this registry predates the People's Republic."""
MAX_START_AHEAD = timedelta(days=366)
MAX_HISTORICAL_VALIDITY = timedelta(days=36525)


def _rule_end(license_type: LicenseType, valid_from: date) -> date | None:
    try:
        return license_type.valid_to(valid_from)
    except (ValueError, OverflowError) as exc:
        raise MalformedInputError(f"no end of validity can follow {valid_from}") from exc


def _check_validity(license_type: LicenseType, valid_from: date, valid_to: date | None) -> None:
    """An end no earlier than the start and no later than the type's rule allows (a
    department cannot extend a two-year license for ever); long-term types end never."""
    if valid_to is None:
        if license_type.validity_years is not None:
            raise MalformedInputError(f"licenses of type {license_type.code} have an end date")
        return
    if valid_to < valid_from:
        raise MalformedInputError("a license's validity cannot end before it starts")
    longest = _rule_end(license_type, valid_from)
    if longest is not None and valid_to > longest:
        raise MalformedInputError(
            f"licenses of type {license_type.code} are valid for at most "
            f"{license_type.validity_years} years: until {longest} at the latest"
        )


def _still_as_checked(session: Session, content: _Content) -> None:
    """The type and the department as they were when the license was checked and made: an
    admin redefining the type (or changing the department's USCC) meanwhile must not let
    a license in that the new definition refuses. FOR SHARE holds them until commit on
    PostgreSQL; SQLite's write transactions are serialised anyway."""
    type_row = session.scalar(
        select(LicenseTypeRow)
        .where(LicenseTypeRow.code == content.license_type.code)
        .with_for_update(read=True)
    )
    department = session.scalar(
        select(DepartmentRow)
        .where(DepartmentRow.code == content.department.code)
        .with_for_update(read=True)
    )
    if (
        type_row is None
        or type_row.definition != content.license_type.definition_json()
        or department is None
        or department.uscc != content.department.uscc
    ):
        raise ConflictError("the license type or the department changed meanwhile; try again")


def _lineage(license_id: LicenseId) -> str:
    """The identifier without version and check character: every version shares it."""
    return ".".join(str(license_id).split(".")[:-2])


def _one_line(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > limit or any(_control(c) for c in text):
        raise MalformedInputError(f"the {what} is one line of 1-{limit} characters")
    return text


def _control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def _check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= 128 or not key.isprintable() or not key.isascii():
        raise MalformedInputError("an Idempotency-Key is 1-128 printable ASCII characters")
