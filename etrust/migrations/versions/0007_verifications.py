"""Verification: every check made, and presentation codes (亮证) used once.

Revision ID: 0007_verifications
Revises: 0006_licenses
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_verifications"
down_revision: str | Sequence[str] | None = "0006_licenses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "presentations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("identifier", sa.String(length=128), nullable=False),
        sa.Column("holder_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_presentations")),
    )
    op.create_table(
        "verification_checks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("identifier", sa.String(length=128), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_checks")),
    )
    op.create_index("ix_verification_checks_at", "verification_checks", ["at"])
    op.create_index("ix_verification_checks_identifier", "verification_checks", ["identifier"])


def downgrade() -> None:
    op.drop_index("ix_verification_checks_identifier", "verification_checks")
    op.drop_index("ix_verification_checks_at", "verification_checks")
    op.drop_table("verification_checks")
    op.drop_table("presentations")
