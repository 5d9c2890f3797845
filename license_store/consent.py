"""Holder consent: a holder lets one department read chosen fields of chosen licenses, for a
stated purpose, until a date, a number of times; every read leaves a receipt the holder sees.

"Collect once, use many times" without a department browsing citizens: a department reads a
license only through a grant, and no grant answers differently to a department that may not
use it than one that does not exist, so grant ids and licenses cannot be probed.

A use is one read of the grant's licenses, consumed by one conditional UPDATE in the
transaction that writes the receipts: two departments' clerks racing on a one-use grant get
one answer and one refusal, on SQLite and PostgreSQL alike. A grant that includes the documents
lets each read be followed, within :data:`DOWNLOAD_WINDOW`, by one download of each format: the
download is part of the read, not a use of its own, so a spent one-use grant opens nothing more.

Every name that comes from outside (grant ids, license identifiers, department codes, fields) is
checked before any SQL: no NUL or other control character (PostgreSQL text cannot hold NUL),
nothing longer than its column.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from license_store.holder_codes import mask_holder_code, mask_name
from license_store.models import (
    CODE_LENGTH,
    IDENTIFIER_LENGTH,
    DepartmentRow,
    GrantRow,
    LicenseRow,
    LicenseTypeRow,
    ReceiptRow,
)
from license_store.records import (
    FORMATS,
    License,
    document_of,
    license_of,
    row_by_identifier,
    today,
)
from license_store.types import LicenseType
from storage.engine import transaction
from trust.clock import Clock, system_clock
from trust.errors import ConflictError, ForbiddenError, MalformedInputError, NotFoundError

HOLDER_FIELDS = ("holder_name", "holder_code")
"""Masked for the grantee unless granted."""
DOCUMENTS = "documents"
"""Granting it lets the grantee download the sealed OFD and PDF: the whole face of the license,
holder name and code in full included."""
EXTRA_FIELDS = ("license_number", DOCUMENTS)
MAX_GRANT_DAYS = 365
MAX_LICENSES = 50
MAX_FIELDS = 100
MAX_USES = 1000
MAX_GRANT_ID = 32
MAX_FIELD_NAME = 128
DOWNLOAD_WINDOW = timedelta(minutes=15)
"""How long after a read through a grant its documents may be downloaded (once per format)."""
_GRANT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_GRANT_ID}}}")


class GrantNotFoundError(NotFoundError):
    """No such grant, or one for another department (told apart by nobody)."""

    code = "GRANT_NOT_FOUND"
    message_zh = "找不到该授权"


class GrantExpiredError(ForbiddenError):
    code = "GRANT_EXPIRED"
    message_zh = "授权已过期"


class GrantRevokedError(ForbiddenError):
    code = "GRANT_REVOKED"
    message_zh = "持证人已撤回授权"


class GrantUsedUpError(ForbiddenError):
    code = "GRANT_USED_UP"
    message_zh = "授权的使用次数已用完"


class GrantScopeError(ForbiddenError):
    """A document download the grant does not cover."""

    code = "GRANT_SCOPE"
    message_zh = "授权范围不包括此项"


class GrantReadRequiredError(ForbiddenError):
    """A download not preceded by a read through the grant within :data:`DOWNLOAD_WINDOW`, or
    a second one of a format since the last read (while the grant could be read again; a
    grant that cannot is refused as used up)."""

    code = "GRANT_READ_REQUIRED"
    message_zh = "请先通过授权读取证照，读取后15分钟内每种格式可下载一次"


class GrantStateError(ConflictError):
    code = "GRANT_ALREADY_REVOKED"
    message_zh = "授权已撤回"


@dataclass(frozen=True)
class Grant:
    id: str
    grantee: str
    grantee_name: str
    lineages: tuple[str, ...]
    fields: tuple[str, ...]
    purpose: str
    uses_left: int | None
    """None: any number of reads until expiry."""
    expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime

    def state(self, now: datetime) -> str:
        """revoked, expired, used_up or active (in that order of precedence)."""
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if self.uses_left is not None and self.uses_left <= 0:
            return "used_up"
        return "active"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "grantee": self.grantee,
            "grantee_name": self.grantee_name,
            "licenses": list(self.lineages),
            "fields": list(self.fields),
            "purpose": self.purpose,
            "uses_left": self.uses_left,
            "expires_at": self.expires_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_at": self.created_at.isoformat(),
            "state": self.state(now),
        }


@dataclass(frozen=True)
class Receipt:
    id: int
    grant_id: str
    license_identifier: str
    grantee: str
    grantee_name: str
    accessor: str
    purpose: str
    fields: tuple[str, ...]
    at: datetime

    @property
    def kind(self) -> str:
        """``download`` (a sealed document through the grant) or ``read``."""
        downloads = {f"{DOCUMENTS}:{fmt}" for fmt in FORMATS}
        return "download" if len(self.fields) == 1 and self.fields[0] in downloads else "read"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "grant_id": self.grant_id,
            "license": self.license_identifier,
            "grantee": self.grantee,
            "grantee_name": self.grantee_name,
            "accessor": self.accessor,
            "purpose": self.purpose,
            "fields": list(self.fields),
            "at": self.at.isoformat(),
        }


class ConsentService:
    """Grants, reads through them and receipts, over ``sessions``.

    The holder is named by ``holder_hash`` (see :mod:`license_store.holder_access`): this
    module never sees how the holder proved who they are.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    # --- the holder's own licenses ---------------------------------------------------------

    def licenses(self, holder_hash: str) -> list[License]:
        """The holder's licenses, newest version of each, most recently issued first."""
        with transaction(self._sessions) as session:
            rows = session.scalars(
                select(LicenseRow)
                .where(LicenseRow.holder_hash == holder_hash)
                .order_by(LicenseRow.lineage, LicenseRow.version.desc())
            )
            newest: dict[str, License] = {}
            for row in rows:
                newest.setdefault(row.lineage, license_of(row))
        return sorted(newest.values(), key=lambda lic: (lic.created_at, lic.id), reverse=True)

    def document(self, holder_hash: str, identifier: str, fmt: str) -> tuple[License, bytes]:
        """A sealed document of one of the holder's licenses; anyone else's is "not found"."""
        identifier, fmt = check_identifier(identifier), _format(fmt)
        with transaction(self._sessions) as session:
            lic = _own(session, holder_hash, identifier)
            return lic, document_of(session, lic.id, fmt)

    # --- grants ----------------------------------------------------------------------------

    def grant(
        self,
        holder_hash: str,
        grantee_department: str,
        identifiers_or_lineages: Sequence[str],
        fields: Sequence[str],
        purpose: str,
        expires_at: datetime,
        max_uses: int | None,
    ) -> Grant:
        """Let ``grantee_department`` read ``fields`` of the named licenses (every version of
        each) for ``purpose`` until ``expires_at``, at most ``max_uses`` times.

        Fields are the license types' fields, ``holder_name``, ``holder_code``,
        ``license_number`` and ``documents``; each must belong to at least one of the licenses.
        A license of another holder is refused exactly as a missing one.
        """
        now = self._clock()
        text = _purpose(purpose)
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise MalformedInputError("give the grant's expiry with a time zone")
        if not now < expires_at <= now + timedelta(days=MAX_GRANT_DAYS):
            raise MalformedInputError(
                f"a grant expires in the future and within {MAX_GRANT_DAYS} days"
            )
        if max_uses is not None and (isinstance(max_uses, bool) or not 1 <= max_uses <= MAX_USES):
            raise MalformedInputError(f"max_uses is 1-{MAX_USES}, or none for no limit")
        grantee_department = check_department(grantee_department)
        if isinstance(identifiers_or_lineages, str) or isinstance(fields, str):
            raise MalformedInputError("a grant names its licenses and fields in lists")
        wanted = _unique(identifiers_or_lineages, check_identifier, MAX_LICENSES, "licenses")
        if not wanted:
            raise MalformedInputError(f"a grant names 1-{MAX_LICENSES} licenses")
        names = _unique(fields, _field_name, MAX_FIELDS, "fields")
        if not names:
            raise MalformedInputError(f"a grant names 1-{MAX_FIELDS} fields")
        with transaction(self._sessions, write=True) as session:
            lineages: list[str] = []
            type_codes: set[str] = set()
            for identifier in wanted:
                lic = _own(session, holder_hash, identifier)
                if lic.lineage not in lineages:
                    lineages.append(lic.lineage)
                type_codes.add(lic.type_code)
            allowed = set(HOLDER_FIELDS) | set(EXTRA_FIELDS)
            for code in sorted(type_codes):
                allowed |= set(_license_type(session, code).schema.get("properties", {}))
            unknown = [name for name in names if name not in allowed]
            if unknown:
                raise MalformedInputError(
                    f"the licenses have no fields {', '.join(unknown)}; choose from "
                    f"{', '.join(sorted(allowed))}"
                )
            department = session.get(DepartmentRow, grantee_department)
            if department is None:
                raise NotFoundError(f"no department {grantee_department!r}")
            row = GrantRow(
                id=secrets.token_urlsafe(16),
                holder_hash=holder_hash,
                grantee=department.code,
                lineages=json.dumps(lineages),
                fields=json.dumps(names, ensure_ascii=False),
                purpose=text,
                uses_left=max_uses,
                expires_at=expires_at,
                revoked_at=None,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return _grant(row, department.name)

    def grants(self, holder_hash: str) -> list[Grant]:
        """The holder's grants, newest first (revoked and expired ones too: a history)."""
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(GrantRow, DepartmentRow.name)
                .join(DepartmentRow, DepartmentRow.code == GrantRow.grantee)
                .where(GrantRow.holder_hash == holder_hash)
                .order_by(GrantRow.created_at.desc(), GrantRow.id)
            )
            return [_grant(row, name) for row, name in rows]

    def revoke(self, holder_hash: str, grant_id: str) -> Grant:
        """Withdraw one of the holder's grants; withdrawing it again is a conflict (409)."""
        grant_id = check_grant_id(grant_id)
        now = self._clock()
        with transaction(self._sessions, write=True) as session:
            row = _holders_grant(session, holder_hash, grant_id)
            if row.revoked_at is not None:
                raise GrantStateError(
                    f"grant {grant_id!r} was revoked at {row.revoked_at.isoformat()}"
                )
            row.revoked_at = now
            return _grant(row, _department_name(session, row.grantee))

    # --- the grantee -----------------------------------------------------------------------

    def fetch(self, grant_id: str, department: str, accessor: str) -> list[dict[str, Any]]:
        """``department`` reads the grant's licenses: one use spent and one receipt per
        license written, in one transaction.

        Each license is the newest version of a covered lineage, with its status of today
        (a revoked or suspended one included, so the department sees it), its validity and
        only the granted fields; holder name and code masked unless granted; ``documents``
        lists the formats downloadable through :meth:`grant_document` if granted.
        """
        grant_id = check_grant_id(grant_id)
        now = self._clock()
        with transaction(self._sessions, write=True) as session:
            spent = session.execute(
                update(GrantRow)
                .where(
                    GrantRow.id == grant_id,
                    GrantRow.grantee == department,
                    GrantRow.revoked_at.is_(None),
                    GrantRow.expires_at > now,
                    (GrantRow.uses_left.is_(None)) | (GrantRow.uses_left > 0),
                )
                .values(uses_left=GrantRow.uses_left - 1)  # NULL - 1 stays NULL: unlimited
                .returning(GrantRow.id)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            row = _departments_grant(session, grant_id, department)
            if spent is None:
                raise _refusal(row, now)
            grant = _grant(row, "")
            shared = [
                _shared(lic, grant, _type_name(session, lic.type_code), now)
                for lic in _covered(session, row)
            ]
            session.add_all(
                _receipt(row, item["identifier"], accessor, grant.fields, now) for item in shared
            )
        return shared

    def grant_document(
        self, grant_id: str, department: str, accessor: str, identifier: str, fmt: str
    ) -> tuple[License, bytes]:
        """A sealed document through a grant that lists ``documents``, receipted like a read.

        The download is part of a read, not a use of its own: it must follow a read of that
        license through this grant by at most :data:`DOWNLOAD_WINDOW`, and that read opens one
        download of each format. Otherwise the refusal is "read first" while the grant can be
        read again, and "used up" (or revoked, expired) when it cannot. The grant's row is
        locked, so two downloads racing on one read get one document.
        """
        grant_id, identifier, fmt = (
            check_grant_id(grant_id),
            check_identifier(identifier),
            _format(fmt),
        )
        now = self._clock()
        with transaction(self._sessions, write=True) as session:
            row = _departments_grant(session, grant_id, department, lock=True)
            grant = _grant(row, "")
            if grant.state(now) in ("revoked", "expired"):
                raise _refusal(row, now)
            if DOCUMENTS not in grant.fields:
                raise GrantScopeError("the grant does not include the documents")
            lic = next(
                (c for c in _covered(session, row) if identifier in (c.identifier, c.lineage)),
                None,
            )
            if lic is None:
                raise NotFoundError(f"no license {identifier!r}")
            of_license = (
                ReceiptRow.grant_id == row.id,
                ReceiptRow.license_identifier == lic.identifier,
            )
            read = session.execute(
                select(ReceiptRow.id, ReceiptRow.at)
                .where(*of_license, ReceiptRow.fields.not_in([_download(f) for f in FORMATS]))
                .order_by(ReceiptRow.id.desc())
                .limit(1)
            ).first()
            if read is None:
                raise _no_download(row, now, "read the license through the grant first")
            if now - read.at > DOWNLOAD_WINDOW:
                raise _no_download(
                    row,
                    now,
                    f"the last read through the grant was more than "
                    f"{DOWNLOAD_WINDOW.seconds // 60} minutes ago",
                )
            taken = session.scalar(
                select(ReceiptRow.id)
                .where(*of_license, ReceiptRow.fields == _download(fmt), ReceiptRow.id > read.id)
                .limit(1)
            )
            if taken is not None:
                raise _no_download(row, now, f"the {fmt} was downloaded since the last read")
            content = document_of(session, lic.id, fmt)
            session.add(_receipt(row, lic.identifier, accessor, (f"{DOCUMENTS}:{fmt}",), now))
        return lic, content

    # --- receipts --------------------------------------------------------------------------

    def receipts(self, holder_hash: str) -> list[Receipt]:
        """Every read of the holder's licenses through their grants, newest first."""
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(ReceiptRow, DepartmentRow.name)
                .join(DepartmentRow, DepartmentRow.code == ReceiptRow.grantee)
                .where(ReceiptRow.holder_hash == holder_hash)
                .order_by(ReceiptRow.at.desc(), ReceiptRow.id.desc())
            )
            return [
                Receipt(
                    id=r.id,
                    grant_id=r.grant_id,
                    license_identifier=r.license_identifier,
                    grantee=r.grantee,
                    grantee_name=name,
                    accessor=r.accessor,
                    purpose=r.purpose,
                    fields=tuple(json.loads(r.fields)),
                    at=r.at,
                )
                for r, name in rows
            ]


def _own(session: Session, holder_hash: str, identifier: str) -> License:
    """The license if it is the holder's; the same "not found" as a missing one otherwise."""
    row = row_by_identifier(session, identifier)
    if not secrets.compare_digest(row.holder_hash, holder_hash):
        raise NotFoundError(f"no license {identifier!r}")
    return license_of(row)


def check_grant_id(grant_id: str) -> str:
    """A grant id as :func:`secrets.token_urlsafe` makes them; anything else is malformed."""
    if not isinstance(grant_id, str) or not _GRANT_ID.fullmatch(grant_id):
        raise MalformedInputError(
            f"a grant id is 1-{MAX_GRANT_ID} characters of A-Z, a-z, 0-9, _ and -"
        )
    return grant_id


def check_identifier(identifier: str) -> str:
    """A license identifier or lineage: printable, no spaces, as long as the column at most."""
    return _name(identifier, "a license identifier", IDENTIFIER_LENGTH, spaces=False)


def check_department(code: str) -> str:
    return _name(code, "a department code", CODE_LENGTH, spaces=False)


def _field_name(name: str) -> str:
    return _name(name, "a field name", MAX_FIELD_NAME, spaces=True)


def _name(value: str, what: str, limit: int, *, spaces: bool) -> str:
    """``value`` if it is 1-``limit`` printable characters (no NUL, control, format or lone
    surrogate character; no white space unless ``spaces``), else a malformed input."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= limit
        or not value.isprintable()
        or (not spaces and any(c.isspace() for c in value))
    ):
        shown = repr(value[:40]) if isinstance(value, str) else type(value).__name__
        rule = "printable characters" if spaces else "printable characters without spaces"
        raise MalformedInputError(f"{what} is 1-{limit} {rule}, not {shown}")
    return value


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise MalformedInputError(f"a license document is {' or '.join(FORMATS)}")
    return fmt


def _download(fmt: str) -> str:
    """The ``fields`` of a download receipt (read receipts list the grant's fields)."""
    return json.dumps([f"{DOCUMENTS}:{fmt}"], ensure_ascii=False)


def _holders_grant(session: Session, holder_hash: str, grant_id: str) -> GrantRow:
    """Locked (PostgreSQL; SQLite's write transaction already is): two revokes, one 409."""
    row = session.get(GrantRow, grant_id, with_for_update=True)
    if row is None or not secrets.compare_digest(row.holder_hash, holder_hash):
        raise GrantNotFoundError(f"no grant {grant_id!r}")
    return row


def _departments_grant(
    session: Session, grant_id: str, department: str, *, lock: bool = False
) -> GrantRow:
    row = session.get(GrantRow, grant_id, with_for_update=lock)
    if row is None or row.grantee != department:
        raise GrantNotFoundError(f"no grant {grant_id!r}")
    return row


def _refusal(row: GrantRow, now: datetime) -> ForbiddenError:
    state = _grant(row, "").state(now)
    if state == "revoked":
        return GrantRevokedError(f"the holder revoked grant {row.id!r}")
    if state == "expired":
        return GrantExpiredError(f"grant {row.id!r} expired at {row.expires_at.isoformat()}")
    return GrantUsedUpError(f"grant {row.id!r} has no uses left")


def _no_download(row: GrantRow, now: datetime, why: str) -> ForbiddenError:
    """No read opens this download: read again if the grant allows, else say why it cannot."""
    if _grant(row, "").state(now) != "active":
        return _refusal(row, now)
    return GrantReadRequiredError(
        f"{why}: a read through the grant opens one download of each format for "
        f"{DOWNLOAD_WINDOW.seconds // 60} minutes"
    )


def _covered(session: Session, row: GrantRow) -> list[License]:
    """The newest version of each lineage of the grant still held by its holder."""
    found = []
    for lineage in json.loads(row.lineages):
        newest = session.scalar(
            select(LicenseRow)
            .where(LicenseRow.lineage == lineage)
            .order_by(LicenseRow.version.desc())
            .limit(1)
        )
        if newest is not None and newest.holder_hash == row.holder_hash:
            found.append(license_of(newest))
    return found


def _shared(lic: License, grant: Grant, type_name: str, now: datetime) -> dict[str, Any]:
    granted = set(grant.fields)
    item: dict[str, Any] = {
        "identifier": lic.identifier,
        "version": lic.version,
        "type_code": lic.type_code,
        "type_name": type_name,
        "issuer": lic.department,
        "status": lic.status_on(today(now)),
        "valid_from": lic.valid_from.isoformat(),
        "valid_to": lic.valid_to.isoformat() if lic.valid_to else None,
        "holder_name": lic.holder_name if "holder_name" in granted else mask_name(lic.holder_name),
        "holder_code": (
            lic.holder_code
            if "holder_code" in granted
            else mask_holder_code(lic.holder_code, lic.holder_code_type)
        ),
        "holder_code_type": lic.holder_code_type,
        "data": {name: value for name, value in lic.data.items() if name in granted},
    }
    if "license_number" in granted:
        item["license_number"] = lic.license_number
    if DOCUMENTS in granted:
        item["documents"] = list(FORMATS)
    return item


def _receipt(
    row: GrantRow, identifier: str, accessor: str, fields: Iterable[str], now: datetime
) -> ReceiptRow:
    return ReceiptRow(
        grant_id=row.id,
        holder_hash=row.holder_hash,
        license_identifier=identifier,
        grantee=row.grantee,
        accessor=accessor[:128],
        purpose=row.purpose,
        fields=json.dumps(list(fields), ensure_ascii=False),
        at=now,
    )


def _grant(row: GrantRow, grantee_name: str) -> Grant:
    return Grant(
        id=row.id,
        grantee=row.grantee,
        grantee_name=grantee_name,
        lineages=tuple(json.loads(row.lineages)),
        fields=tuple(json.loads(row.fields)),
        purpose=row.purpose,
        uses_left=row.uses_left,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
    )


def _license_type(session: Session, code: str) -> LicenseType:
    row = session.get(LicenseTypeRow, code)
    assert row is not None  # a foreign key holds it
    return LicenseType.from_definition(
        row.code, row.name, row.authority, row.holder_kind, row.definition
    )


def _type_name(session: Session, code: str) -> str:
    row = session.get(LicenseTypeRow, code)
    return row.name if row is not None else code


def _department_name(session: Session, code: str) -> str:
    row = session.get(DepartmentRow, code)
    return row.name if row is not None else code


def _purpose(purpose: str) -> str:
    text = " ".join(purpose.split()) if isinstance(purpose, str) else ""
    if not 1 <= len(text) <= 200 or not text.isprintable():
        raise MalformedInputError("the purpose is one line of 1-200 printable characters")
    return text


def _unique(values: Iterable[str], check: Callable[[str], str], limit: int, what: str) -> list[str]:
    """The checked values, duplicates dropped, refused beyond ``limit`` (before any is looked
    up, so a long list costs nothing)."""
    seen: list[str] = []
    for value in values:
        checked = check(value)
        if checked not in seen:
            if len(seen) == limit:
                raise MalformedInputError(f"a grant names at most {limit} {what}")
            seen.append(checked)
    return seen
