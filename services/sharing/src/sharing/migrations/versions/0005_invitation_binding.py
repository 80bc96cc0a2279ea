"""Invitations bind both people: the inviter's verifier and the redeemer's proof.

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
    with op.batch_alter_table("invitations") as batch:
        # Nullable: invitations made before this revision have neither, and can only be
        # cancelled (the client refuses their version-1 payload).
        batch.add_column(sa.Column("verifier", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("redemption_proof", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("redemption_proof")
        batch.drop_column("verifier")
