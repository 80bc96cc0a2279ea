"""Resumable upload sessions: a content upload may be resumable, and when it was last
appended to (records.resumable; the purge gives such sessions a longer delay).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("content_uploads") as batch:
        batch.add_column(sa.Column("resumable", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("touched_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("content_uploads") as batch:
        batch.drop_column("touched_at")
        batch.drop_column("resumable")
