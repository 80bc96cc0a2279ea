"""Public-key directory and wrapped identity keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "directory",
        sa.Column("account_id", sa.Uuid(), primary_key=True),
        sa.Column("identity", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "wrapped_keys",
        sa.Column("account_id", sa.Uuid(), primary_key=True),
        sa.Column("purpose", sa.String(16), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("wrap", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("wrapped_keys")
    op.drop_table("directory")
