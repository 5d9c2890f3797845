"""The license registry: departments, license types, licenses and their documents and events,
idempotency keys, consent grants and access receipts, and the transparency log.

Revision ID: 0006_licenses
Revises: 0005_seals
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_licenses"
down_revision: str | Sequence[str] | None = "0005_seals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("uscc", sa.String(length=18), nullable=False),
        sa.Column("area_code", sa.String(length=6), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_departments")),
        sa.UniqueConstraint("uscc", name=op.f("uq_departments_uscc")),
    )
    op.create_table(
        "license_serials",
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("issuer_code", sa.String(length=18), nullable=False),
        sa.Column("next_serial", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type_code", "issuer_code", name=op.f("pk_license_serials")),
    )
    op.create_table(
        "license_types",
        sa.Column("code", sa.String(length=21), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("authority", sa.String(length=200), nullable=False),
        sa.Column("holder_kind", sa.String(length=16), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_license_types")),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_log_checkpoints")),
    )
    op.create_table(
        "log_entries",
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("index", name=op.f("pk_log_entries")),
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_log_nodes")),
    )
    op.create_table(
        "license_grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("holder_hash", sa.String(length=64), nullable=False),
        sa.Column("grantee", sa.String(length=64), nullable=False),
        sa.Column("lineages", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grantee"], ["departments.code"], name=op.f("fk_license_grants_grantee_departments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_grants")),
    )
    with op.batch_alter_table("license_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_license_grants_holder_hash"), ["holder_hash"], unique=False
        )

    op.create_table(
        "license_type_issuers",
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"],
            ["departments.code"],
            name=op.f("fk_license_type_issuers_department_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["type_code"],
            ["license_types.code"],
            name=op.f("fk_license_type_issuers_type_code_license_types"),
        ),
        sa.PrimaryKeyConstraint("type_code", "department", name=op.f("pk_license_type_issuers")),
    )
    op.create_table(
        "licenses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("identifier", sa.String(length=128), nullable=False),
        sa.Column("lineage", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("license_number", sa.String(length=64), nullable=True),
        sa.Column("holder_name", sa.String(length=200), nullable=False),
        sa.Column("holder_code", sa.String(length=64), nullable=False),
        sa.Column("holder_code_type", sa.String(length=3), nullable=False),
        sa.Column("holder_hash", sa.String(length=64), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seal", sa.String(length=32), nullable=False),
        sa.Column("qr_payload", sa.LargeBinary(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"], ["departments.code"], name=op.f("fk_licenses_department_departments")
        ),
        sa.ForeignKeyConstraint(
            ["type_code"], ["license_types.code"], name=op.f("fk_licenses_type_code_license_types")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licenses")),
        sa.UniqueConstraint("identifier", name=op.f("uq_licenses_identifier")),
    )
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licenses_holder_hash"), ["holder_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_licenses_lineage"), ["lineage"], unique=False)

    op.create_table(
        "license_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "license_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_license_events_license_id_licenses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_events")),
    )
    with op.batch_alter_table("license_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_license_events_license_id"), ["license_id"], unique=False
        )

    op.create_table(
        "license_files",
        sa.Column(
            "license_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_license_files_license_id_licenses")
        ),
        sa.PrimaryKeyConstraint("license_id", "format", name=op.f("pk_license_files")),
    )
    op.create_table(
        "license_idempotency",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "license_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_license_idempotency_license_id_licenses")
        ),
        sa.PrimaryKeyConstraint("client", "key", name=op.f("pk_license_idempotency")),
    )
    op.create_table(
        "license_receipts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("holder_hash", sa.String(length=64), nullable=False),
        sa.Column("license_identifier", sa.String(length=128), nullable=False),
        sa.Column("grantee", sa.String(length=64), nullable=False),
        sa.Column("accessor", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["license_grants.id"],
            name=op.f("fk_license_receipts_grant_id_license_grants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_receipts")),
    )
    with op.batch_alter_table("license_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_license_receipts_grant_id"), ["grant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_license_receipts_holder_hash"), ["holder_hash"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("license_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_license_receipts_holder_hash"))
        batch_op.drop_index(batch_op.f("ix_license_receipts_grant_id"))

    op.drop_table("license_receipts")
    op.drop_table("license_idempotency")
    op.drop_table("license_files")
    with op.batch_alter_table("license_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_license_events_license_id"))

    op.drop_table("license_events")
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licenses_lineage"))
        batch_op.drop_index(batch_op.f("ix_licenses_holder_hash"))

    op.drop_table("licenses")
    op.drop_table("license_type_issuers")
    with op.batch_alter_table("license_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_license_grants_holder_hash"))

    op.drop_table("license_grants")
    op.drop_table("log_nodes")
    op.drop_table("log_head")
    op.drop_table("log_entries")
    op.drop_table("log_checkpoints")
    op.drop_table("license_types")
    op.drop_table("license_serials")
    op.drop_table("departments")
