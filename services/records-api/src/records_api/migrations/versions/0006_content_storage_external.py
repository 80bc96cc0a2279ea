"""Content rows stored out of line without compression on PostgreSQL.

Content is ciphertext: compression never shrinks it, yet with the default storage
(EXTENDED) PostgreSQL tries pglz on every 1 MiB row before giving up and storing it out of
line. EXTERNAL skips that attempt (and lets a read of part of a value fetch only its
pages). Rows written before keep their form; reading them is unchanged. SQLite has no
such setting: nothing to do there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE content_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE content_chunks ALTER COLUMN data SET STORAGE EXTENDED")
