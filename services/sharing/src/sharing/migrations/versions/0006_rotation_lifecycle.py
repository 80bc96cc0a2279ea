"""Rotations finish only when the records are re-keyed; every loss of access rotates.

* ``patient_files.key_versions``: the current scope-key version per scope, as the kms
  reports it when it stores a rotation (absent: version 1). The records API re-keys only to
  it.
* ``rotations.rotated_version``: the new keys are stored; the rotation is done only once
  the rotating device re-keyed the records and said so.
* ``invitations.looked_up_at`` / ``loss_queued_at``: an invitation whose payload was fetched
  may have been opened; cancelling it or letting it expire queues a rotation, once.
* ``invitations.key_versions``: the file's key versions when it was made; redeeming it
  after one of its scopes rotated is refused (its keys are stale).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("patient_files") as batch:
        batch.add_column(sa.Column("key_versions", sa.JSON(), nullable=True))
    with op.batch_alter_table("rotations") as batch:
        batch.add_column(sa.Column("rotated_version", sa.Integer(), nullable=True))
    with op.batch_alter_table("invitations") as batch:
        batch.add_column(sa.Column("looked_up_at", TS, nullable=True))
        batch.add_column(sa.Column("loss_queued_at", TS, nullable=True))
        batch.add_column(sa.Column("key_versions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("key_versions")
        batch.drop_column("loss_queued_at")
        batch.drop_column("looked_up_at")
    with op.batch_alter_table("rotations") as batch:
        batch.drop_column("rotated_version")
    with op.batch_alter_table("patient_files") as batch:
        batch.drop_column("key_versions")
