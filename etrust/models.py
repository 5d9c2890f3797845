"""ORM tables of the trust service (SQLAlchemy 2 typed mappings).

These rows are persistence details: the rest of the code sees the dataclasses of
``trust.repository`` and ``etrust.store``, never these classes. The schema itself is created by
the Alembic revisions under ``etrust/migrations``; a test checks that they match these classes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

import license_store.models  # noqa: F401  (its tables are part of the one schema)
import verify_app.models  # noqa: F401  (so are these)
from storage.schema import Base

NAME_LENGTH = 64
"""CA names, client names, department codes and profile names: short identifiers."""

SERIAL_HEX_LENGTH = 40
"""RFC 5280 allows serials of up to 20 octets; we store them as zero-padded lowercase hex."""


class CaRow(Base):
    """A CA this service runs: where its key lives and its certificate."""

    __tablename__ = "certificate_authorities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    key_type: Mapped[str] = mapped_column(String(16))
    key_uri: Mapped[str] = mapped_column(String(1024))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    parent: Mapped[str | None] = mapped_column(
        String(NAME_LENGTH), ForeignKey("certificate_authorities.name")
    )
    created_at: Mapped[datetime]


class ServiceIdentityRow(Base):
    """A key and certificate a service signs with on a CA's behalf (delegated OCSP, TSA)."""

    __tablename__ = "service_identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    ca_name: Mapped[str] = mapped_column(
        String(NAME_LENGTH), ForeignKey("certificate_authorities.name")
    )
    key_uri: Mapped[str] = mapped_column(String(1024))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class IssuedCertificateRow(Base):
    """Every certificate a CA has signed (the CA's own memory, needed for OCSP and CRLs)."""

    __tablename__ = "issued_certificates"
    __table_args__ = (UniqueConstraint("issuer", "serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # indexed alone too: OCSP requests and "who issued serial X" look up by serial only
    serial: Mapped[str] = mapped_column(String(SERIAL_HEX_LENGTH), index=True)
    subject: Mapped[str] = mapped_column(Text)
    profile: Mapped[str] = mapped_column(String(NAME_LENGTH))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class RevocationRow(Base):
    """At most one revocation per issued certificate (the unique constraint enforces it)."""

    __tablename__ = "revocations"
    __table_args__ = (
        UniqueConstraint("issuer", "serial"),
        ForeignKeyConstraint(
            ["issuer", "serial"],
            ["issued_certificates.issuer", "issued_certificates.serial"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(NAME_LENGTH))
    serial: Mapped[str] = mapped_column(String(SERIAL_HEX_LENGTH))
    reason: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime]


class CrlNumberRow(Base):
    """The last CRL number each CA has used; bumped by a single atomic upsert."""

    __tablename__ = "crl_numbers"

    issuer: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    last_number: Mapped[int] = mapped_column(BigInteger)


class ApiClientRow(Base):
    """A machine or officer calling the API; only a hash of its token is kept."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    token_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AuditRecordRow(Base):
    """One entry of the append-only, hash-chained audit log (see etrust.audit)."""

    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(1024))
    key_uri: Mapped[str | None] = mapped_column(String(1024))
    request_hash: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain's head: the last record's id and hash, one row, locked by every append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    """A signature over the chain up to a record: the log's state, vouched for by a key."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    key_uri: Mapped[str] = mapped_column(String(1024))
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    algorithm: Mapped[str] = mapped_column(String(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class SecurityOfficerRow(Base):
    """A security officer and the public key whose signatures count as their approvals."""

    __tablename__ = "security_officers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ApprovalRequestRow(Base):
    """An operation waiting for m-of-n approvals; ``request_hash`` binds what was approved."""

    __tablename__ = "approval_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(1024))
    request_hash: Mapped[str] = mapped_column(String(64))
    requester: Mapped[str] = mapped_column(String(128))
    required: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))


class ApprovalRow(Base):
    """One officer's signed approval of one request (at most one each)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "officer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32), ForeignKey("approval_requests.id"))
    officer: Mapped[str] = mapped_column(String(NAME_LENGTH))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime]


class ManagedKeyRow(Base):
    """A key the security officers manage through its lifecycle (see etrust.lifecycle)."""

    __tablename__ = "managed_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    key_uri: Mapped[str] = mapped_column(String(1024))
    key_type: Mapped[str] = mapped_column(String(16))
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    ca_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    replaced_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class KeyEventRow(Base):
    """One state change of a managed key: who, why, from what to what."""

    __tablename__ = "key_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_name: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("managed_keys.name"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class SealRow(Base):
    """An electronic seal (GB/T 38540 SESeal) made for a department, and the key that uses it."""

    __tablename__ = "seals"

    id: Mapped[int] = mapped_column(primary_key=True)
    es_id: Mapped[str] = mapped_column(String(32), unique=True)
    department: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(200))
    alg: Mapped[str] = mapped_column(String(8))
    seal_type: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    seal_der: Mapped[bytes] = mapped_column(LargeBinary)
    key_name: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("managed_keys.name"))
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class SignedOutcomeRow(Base):
    """A case outcome as signed (canonical JSON, detached CMS), kept for its verification link."""

    __tablename__ = "signed_outcomes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seal_es_id: Mapped[str] = mapped_column(String(32), ForeignKey("seals.es_id"), index=True)
    case_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[str] = mapped_column(String(64))
    signed_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
