"""Grant kinds, invitations and the rotation queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="direct"))
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("file_id", sa.Uuid(), sa.ForeignKey("patient_files.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("inviter_id", sa.Uuid(), nullable=False),
        sa.Column("lookup_id", sa.String(64), nullable=False, unique=True),
        sa.Column("relationship", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("valid_until", TS),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("redeemed_by", sa.Uuid()),
        sa.Column("redeemed_at", TS),
        sa.Column("grant_id", sa.Uuid()),
        sa.Column("cancelled_at", TS),
    )
    op.create_index("ix_invitations_file_id", "invitations", ["file_id"])
    op.create_table(
        "rotations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("file_id", sa.Uuid(), sa.ForeignKey("patient_files.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("grant_id", sa.Uuid()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("done_at", TS),
        sa.Column("done_version", sa.Integer()),
    )
    op.create_index("ix_rotations_file_pending", "rotations", ["file_id", "done_at"])


def downgrade() -> None:
    op.drop_table("rotations")
    op.drop_table("invitations")
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("kind")
