"""Patient keyrings: sealed scope key versions per member, and current versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "keyring_entries",
        sa.Column("file_id", sa.Uuid(), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Uuid(), primary_key=True),
        sa.Column("granter_id", sa.Uuid(), nullable=False),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_keyring_member", "keyring_entries", ["member_id", "file_id"])
    op.create_table(
        "keyring_versions",
        sa.Column("file_id", sa.Uuid(), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("keyring_versions")
    op.drop_table("keyring_entries")
