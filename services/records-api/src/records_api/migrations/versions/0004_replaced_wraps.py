"""Wraps replaced by a re-key or a restore, kept so that a bad re-key can be undone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replaced_wraps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("record_id", sa.Uuid(), sa.ForeignKey("records.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("header", sa.LargeBinary(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_by", sa.Uuid(), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
    )
    op.create_index("ix_replaced_wraps_version", "replaced_wraps",
                    ["record_id", "version", "key_version"])


def downgrade() -> None:
    op.drop_index("ix_replaced_wraps_version", table_name="replaced_wraps")
    op.drop_table("replaced_wraps")
