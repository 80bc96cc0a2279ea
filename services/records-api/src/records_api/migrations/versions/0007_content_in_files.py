"""Content uploads may keep their rows as files under the content directory
(``ECRIN_RECORDS_CONTENT_DIR``, records.content_rows) instead of ``content_chunks``. Every
upload stored before stays in the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("content_uploads") as batch:
        batch.add_column(sa.Column("in_files", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    # The start-up check (are uploads kept in files?) reads this, not the whole table.
    op.create_index("ix_content_uploads_in_files", "content_uploads", ["id"],
                    postgresql_where=sa.text("in_files"), sqlite_where=sa.text("in_files = 1"))


def downgrade() -> None:
    # Content kept in files would be lost to the database's view: refuse rather than drop.
    if op.get_bind().execute(sa.text(
            "SELECT 1 FROM content_uploads WHERE in_files LIMIT 1")).first() is not None:
        raise RuntimeError("content uploads are kept in files; a downgrade would orphan them")
    op.drop_index("ix_content_uploads_in_files", table_name="content_uploads")
    with op.batch_alter_table("content_uploads") as batch:
        batch.drop_column("in_files")
