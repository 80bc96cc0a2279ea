"""``patient_files.identity_record_id``: which record holds the patient's identity.

Named by the owner's device when it creates the file (the record's kind is encrypted, so
the servers could not tell otherwise); ``GET /v1/files`` serves it, so that a device lists
a page of patients with one bulk read instead of a listing and a read per file. Files made
before it have none: clients then find the identity as before (``docs/sharing.md``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient_files") as batch:
        batch.add_column(sa.Column("identity_record_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patient_files") as batch:
        batch.drop_column("identity_record_id")
