"""Tables of the license registry (SQLAlchemy 2 typed mappings on the shared base).

Rows are persistence details: the rest of the code sees the dataclasses of the license_store
modules. Documents are kept in the database beside their license, so one transaction stores
both and a failure leaves neither (no orphan files on a disk).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.schema import Base

CODE_LENGTH = 64
"""Department codes and client names (as in the PKI tables)."""

IDENTIFIER_LENGTH = 128
"""A GB/T 36904 identifier: 14 + 21 + 18 + at most 32 + 3 + 1 characters and five dots."""


class DepartmentRow(Base):
    """A department that issues licenses: its USCC is the issuer code of its identifiers."""

    __tablename__ = "departments"

    code: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    area_code: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[datetime]


class LicenseTypeRow(Base):
    """A license type (GB/T 36902 catalogue entry): what its licenses hold and look like."""

    __tablename__ = "license_types"

    code: Mapped[str] = mapped_column(String(21), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    authority: Mapped[str] = mapped_column(String(200))
    holder_kind: Mapped[str] = mapped_column(String(16))
    definition: Mapped[str] = mapped_column(Text)
    """JSON: the fields' JSON Schema, labels, validity rule, QR name policy, example."""
    created_at: Mapped[datetime]


class LicenseTypeIssuerRow(Base):
    """Which departments may issue licenses of a type."""

    __tablename__ = "license_type_issuers"

    type_code: Mapped[str] = mapped_column(
        String(21), ForeignKey("license_types.code"), primary_key=True
    )
    department: Mapped[str] = mapped_column(
        String(CODE_LENGTH), ForeignKey("departments.code"), primary_key=True
    )


class SerialCounterRow(Base):
    """The next serial number per license type and issuer (gaps allowed, duplicates never)."""

    __tablename__ = "license_serials"

    type_code: Mapped[str] = mapped_column(String(21), primary_key=True)
    issuer_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    next_serial: Mapped[int] = mapped_column(BigInteger)


class LicenseRow(Base):
    """One version of a license. An amendment adds a row (version + 1) and supersedes this one."""

    __tablename__ = "licenses"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH), unique=True)
    lineage: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH), index=True)
    """The identifier without version and check character: the same for every version."""
    version: Mapped[int] = mapped_column(Integer)
    type_code: Mapped[str] = mapped_column(String(21), ForeignKey("license_types.code"))
    department: Mapped[str] = mapped_column(String(CODE_LENGTH), ForeignKey("departments.code"))
    license_number: Mapped[str | None] = mapped_column(String(64))
    holder_name: Mapped[str] = mapped_column(String(200))
    holder_code: Mapped[str] = mapped_column(String(64))
    holder_code_type: Mapped[str] = mapped_column(String(3))
    holder_hash: Mapped[str] = mapped_column(String(64), index=True)
    """Keyed hash (HMAC-SM3) of the holder code: found by holder without an index in clear."""
    issue_date: Mapped[date] = mapped_column(Date)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    data: Mapped[str] = mapped_column(Text)
    """The license's fields as JSON (canonical, RFC 8785)."""
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime]
    seal: Mapped[str] = mapped_column(String(32))
    qr_payload: Mapped[bytes] = mapped_column(LargeBinary)
    log_index: Mapped[int] = mapped_column(BigInteger)
    issued_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class LicenseFileRow(Base):
    """A license's sealed document (OFD or PDF)."""

    __tablename__ = "license_files"

    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id"), primary_key=True)
    format: Mapped[str] = mapped_column(String(8), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))


class LicenseEventRow(Base):
    """A change of a license (issue, amend, suspend, resume, revoke, expire): who, why, when,
    the signed record and its place in the transparency log."""

    __tablename__ = "license_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(500))
    record: Mapped[bytes] = mapped_column(LargeBinary)
    """The canonical JSON that was signed and logged."""
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    log_index: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]


class IdempotencyRow(Base):
    """A client's Idempotency-Key and the issuance it produced."""

    __tablename__ = "license_idempotency"

    client: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id"))
    created_at: Mapped[datetime]


class LogHeadRow(Base):
    """The transparency log's size and right edge (the perfect subtrees along it), in one row
    that every append locks, so entries get consecutive indexes."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class LogEntryRow(Base):
    """One leaf of the transparency log: the canonical JSON of a license event or seal use."""

    __tablename__ = "log_entries"

    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime]


class LogNodeRow(Base):
    """The hash of a perfect subtree (level 0: leaves); complete ones never change."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogCheckpointRow(Base):
    """A signed tree head: size, root, time, signed by the log key."""

    __tablename__ = "log_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime]


class GrantRow(Base):
    """A holder's consent: which department may read which licenses' fields, why, until when."""

    __tablename__ = "license_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder_hash: Mapped[str] = mapped_column(String(64), index=True)
    grantee: Mapped[str] = mapped_column(String(CODE_LENGTH), ForeignKey("departments.code"))
    lineages: Mapped[str] = mapped_column(Text)
    """JSON list of the license lineages covered (every version of each)."""
    fields: Mapped[str] = mapped_column(Text)
    """JSON list of field names the grantee may read (holder data masked unless listed)."""
    purpose: Mapped[str] = mapped_column(String(200))
    uses_left: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class ReceiptRow(Base):
    """A trace of every access through a grant, which the holder can read."""

    __tablename__ = "license_receipts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(32), ForeignKey("license_grants.id"), index=True)
    holder_hash: Mapped[str] = mapped_column(String(64), index=True)
    license_identifier: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH))
    grantee: Mapped[str] = mapped_column(String(CODE_LENGTH))
    accessor: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(200))
    fields: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
