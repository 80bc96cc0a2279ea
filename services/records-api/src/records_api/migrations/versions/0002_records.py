"""Records, versions, content uploads and chunk rows, idempotency keys.

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

LISTED = "state = 'committed' AND deleted_at IS NULL"
TOMBSTONED = "deleted_at IS NOT NULL AND purged_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=False),
    )
    op.create_index("ix_records_listing", "records", ["file_id", "scope", "created_at", "id"],
                    postgresql_where=sa.text(LISTED), sqlite_where=sa.text(LISTED))
    op.create_index("ix_records_deleted_at", "records", ["deleted_at"],
                    postgresql_where=sa.text(TOMBSTONED), sqlite_where=sa.text(TOMBSTONED))
    op.create_table(
        "record_versions",
        sa.Column("record_id", sa.Uuid(), sa.ForeignKey("records.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("header", sa.LargeBinary(), nullable=False),
        sa.Column("metadata_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("content_length", sa.BigInteger(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("author", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed", sa.Boolean(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_upload_id", sa.Uuid(), nullable=True),
    )
    op.create_table(
        "content_uploads",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_content_uploads_record", "content_uploads", ["record_id", "version"])
    op.create_index("ix_content_uploads_started", "content_uploads", ["started_at"])
    op.create_table(
        "content_chunks",
        sa.Column("upload_id", sa.Uuid(),
                  sa.ForeignKey("content_uploads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.Uuid(), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("content_chunks")
    op.drop_index("ix_content_uploads_started", table_name="content_uploads")
    op.drop_index("ix_content_uploads_record", table_name="content_uploads")
    op.drop_table("content_uploads")
    op.drop_table("record_versions")
    op.drop_index("ix_records_deleted_at", table_name="records")
    op.drop_index("ix_records_listing", table_name="records")
    op.drop_table("records")
