"""Electronic seals of departments and the case outcomes signed with them.

Revision ID: 0005_seals
Revises: 0004_key_lifecycle
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_seals"
down_revision: str | Sequence[str] | None = "0004_key_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("es_id", sa.String(32), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("seal_type", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seal_der", sa.LargeBinary(), nullable=False),
        sa.Column("key_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_seals"),
        sa.UniqueConstraint("es_id", name="uq_seals_es_id"),
        sa.ForeignKeyConstraint(
            ["key_name"], ["managed_keys.name"], name="fk_seals_key_name_managed_keys"
        ),
    )
    op.create_index("ix_seals_department", "seals", ["department"])
    op.create_table(
        "signed_outcomes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("seal_es_id", sa.String(32), nullable=False),
        sa.Column("case_ref", sa.String(128), nullable=True),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("signed_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signed_outcomes"),
        sa.ForeignKeyConstraint(
            ["seal_es_id"], ["seals.es_id"], name="fk_signed_outcomes_seal_es_id_seals"
        ),
    )
    op.create_index("ix_signed_outcomes_seal_es_id", "signed_outcomes", ["seal_es_id"])
    op.create_index("ix_signed_outcomes_case_ref", "signed_outcomes", ["case_ref"])


def downgrade() -> None:
    op.drop_table("signed_outcomes")
    op.drop_table("seals")
