"""Licenses as the rest of the code sees them, and the queries that find them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from license_store.holder_codes import mask_holder_code, mask_name
from license_store.models import LicenseEventRow, LicenseFileRow, LicenseRow
from trust.errors import MalformedInputError, NotFoundError

CHINA = timezone(timedelta(hours=8))
"""Dates on licenses are Beijing dates: a license issued at 07:00 on 1 March is of 1 March."""

STATUSES = ("valid", "suspended", "revoked", "superseded", "expired")
"""Stored statuses. A license past its end reads "expired" before the daily sweep records it
(see :meth:`License.status_on`)."""

FORMATS = ("ofd", "pdf")


def today(now: datetime) -> date:
    return now.astimezone(CHINA).date()


@dataclass(frozen=True)
class License:
    id: int
    identifier: str
    lineage: str
    version: int
    type_code: str
    department: str
    license_number: str | None
    holder_name: str
    holder_code: str
    holder_code_type: str
    issue_date: date
    valid_from: date
    valid_to: date | None
    data: dict[str, Any]
    status: str
    status_reason: str | None
    status_changed_at: datetime
    seal: str
    qr_payload: bytes
    log_index: int
    created_at: datetime

    def status_on(self, day: date) -> str:
        """The status a verifier sees on ``day``: a valid license past its end is expired,
        one before its start not yet valid."""
        if self.status != "valid":
            return self.status
        if self.valid_to is not None and day > self.valid_to:
            return "expired"
        if day < self.valid_from:
            return "not_yet_valid"
        return "valid"

    def to_dict(self, now: datetime, *, reveal: bool = False) -> dict[str, Any]:
        """For answers: holder data masked unless ``reveal`` (the holder, the issuer)."""
        return {
            "identifier": self.identifier,
            "version": self.version,
            "type_code": self.type_code,
            "department": self.department,
            "license_number": self.license_number,
            "holder_name": self.holder_name if reveal else mask_name(self.holder_name),
            "holder_code": (
                self.holder_code
                if reveal
                else mask_holder_code(self.holder_code, self.holder_code_type)
            ),
            "holder_code_type": self.holder_code_type,
            "issue_date": self.issue_date.isoformat(),
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "data": self.data,
            "status": self.status_on(today(now)),
            "status_reason": self.status_reason,
            "status_changed_at": self.status_changed_at.isoformat(),
            "seal": self.seal,
            "log_index": self.log_index,
        }


def license_of(row: LicenseRow) -> License:
    return License(
        id=row.id,
        identifier=row.identifier,
        lineage=row.lineage,
        version=row.version,
        type_code=row.type_code,
        department=row.department,
        license_number=row.license_number,
        holder_name=row.holder_name,
        holder_code=row.holder_code,
        holder_code_type=row.holder_code_type,
        issue_date=row.issue_date,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        data=json.loads(row.data),
        status=row.status,
        status_reason=row.status_reason,
        status_changed_at=row.status_changed_at,
        seal=row.seal,
        qr_payload=row.qr_payload,
        log_index=row.log_index,
        created_at=row.created_at,
    )


def row_by_identifier(session: Session, identifier: str) -> LicenseRow:
    """A license version by its identifier, or the newest version of its lineage when the
    identifier is given without version and check character."""
    if len(identifier) > 256:
        raise MalformedInputError("an identifier is at most 256 characters")
    row = session.scalar(select(LicenseRow).where(LicenseRow.identifier == identifier))
    if row is None:
        row = session.scalar(
            select(LicenseRow)
            .where(LicenseRow.lineage == identifier)
            .order_by(LicenseRow.version.desc())
            .limit(1)
        )
    if row is None:
        raise NotFoundError(f"no license {identifier!r}")
    return row


def document_of(session: Session, license_id: int, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise MalformedInputError(f"a license document is {' or '.join(FORMATS)}")
    row = session.get(LicenseFileRow, (license_id, fmt))
    if row is None:
        raise NotFoundError(f"the license has no {fmt} document")
    return row.content


@dataclass(frozen=True)
class LicenseEvent:
    action: str
    actor: str
    reason: str | None
    at: datetime
    log_index: int
    record: bytes
    signature: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at.astimezone(UTC).isoformat(),
            "log_index": self.log_index,
            "record": json.loads(self.record),
        }


def events_of(session: Session, license_id: int) -> list[LicenseEvent]:
    rows = session.scalars(
        select(LicenseEventRow)
        .where(LicenseEventRow.license_id == license_id)
        .order_by(LicenseEventRow.id)
    )
    return [
        LicenseEvent(r.action, r.actor, r.reason, r.at, r.log_index, r.record, r.signature)
        for r in rows
    ]
