"""Append-only, hash-chained audit events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

from ecrin_platform.audit import audit_table_columns

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("audit_events", *audit_table_columns())


def downgrade() -> None:
    op.drop_table("audit_events")
