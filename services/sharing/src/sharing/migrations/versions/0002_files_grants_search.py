"""Patient files, grants and blind-index search tokens.

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

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "patient_files",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS),
    )
    op.create_index("ix_patient_files_owner_id", "patient_files", ["owner_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("file_id", sa.Uuid(), sa.ForeignKey("patient_files.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("grantee_id", sa.Uuid(), nullable=False),
        sa.Column("granter_id", sa.Uuid(), nullable=False),
        sa.Column("relationship", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("valid_from", TS),
        sa.Column("valid_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_grants_file_grantee", "grants", ["file_id", "grantee_id"])
    op.create_index("ix_grants_grantee", "grants", ["grantee_id", "status"])
    op.create_table(
        "search_tokens",
        sa.Column("file_id", sa.Uuid(), sa.ForeignKey("patient_files.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
    )
    op.create_index("ix_search_tokens_owner_token", "search_tokens", ["owner_id", "token"])


def downgrade() -> None:
    op.drop_table("search_tokens")
    op.drop_table("grants")
    op.drop_table("patient_files")
