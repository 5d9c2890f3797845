"""PKI tables: CAs, issued certificates, revocations, CRL numbers, API clients.

Revision ID: 0001_pki
Revises:
Create Date: 2025-11-27

Portable between SQLite and PostgreSQL: serial numbers are zero-padded hex strings (they are
up to 160 bits, beyond any integer column), timestamps are timezone-aware.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001_pki"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = 64
_SERIAL = 40


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "certificate_authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(_NAME), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("key_uri", sa.String(1024), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("parent", sa.String(_NAME), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_certificate_authorities"),
        sa.UniqueConstraint("name", name="uq_certificate_authorities_name"),
        sa.ForeignKeyConstraint(
            ["parent"],
            ["certificate_authorities.name"],
            name="fk_certificate_authorities_parent_certificate_authorities",
        ),
    )
    op.create_table(
        "service_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(_NAME), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("ca_name", sa.String(_NAME), nullable=False),
        sa.Column("key_uri", sa.String(1024), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_service_identities"),
        sa.UniqueConstraint("name", name="uq_service_identities_name"),
        sa.ForeignKeyConstraint(
            ["ca_name"],
            ["certificate_authorities.name"],
            name="fk_service_identities_ca_name_certificate_authorities",
        ),
    )
    op.create_table(
        "issued_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(_NAME), nullable=False),
        sa.Column("serial", sa.String(_SERIAL), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("profile", sa.String(_NAME), nullable=False),
        _timestamp("not_before"),
        _timestamp("not_after"),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_issued_certificates"),
        sa.UniqueConstraint("issuer", "serial", name="uq_issued_certificates_issuer_serial"),
    )
    op.create_index("ix_issued_certificates_serial", "issued_certificates", ["serial"])
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(_NAME), nullable=False),
        sa.Column("serial", sa.String(_SERIAL), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        _timestamp("revoked_at"),
        sa.PrimaryKeyConstraint("id", name="pk_revocations"),
        sa.UniqueConstraint("issuer", "serial", name="uq_revocations_issuer_serial"),
        sa.ForeignKeyConstraint(
            ["issuer", "serial"],
            ["issued_certificates.issuer", "issued_certificates.serial"],
            name="fk_revocations_issuer_serial_issued_certificates",
        ),
    )
    op.create_table(
        "crl_numbers",
        sa.Column("issuer", sa.String(_NAME), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", name="pk_crl_numbers"),
    )
    op.create_table(
        "api_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(_NAME), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("department", sa.String(_NAME), nullable=True),
        sa.Column("token_prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _timestamp("created_at"),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_clients"),
        sa.UniqueConstraint("name", name="uq_api_clients_name"),
        sa.UniqueConstraint("token_prefix", name="uq_api_clients_token_prefix"),
    )


def downgrade() -> None:
    op.drop_table("api_clients")
    op.drop_table("crl_numbers")
    op.drop_table("revocations")
    op.drop_index("ix_issued_certificates_serial", table_name="issued_certificates")
    op.drop_table("issued_certificates")
    op.drop_table("service_identities")
    op.drop_table("certificate_authorities")
