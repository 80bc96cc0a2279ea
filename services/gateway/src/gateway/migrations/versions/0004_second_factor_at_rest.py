"""Second factor at rest: the last accepted TOTP step, room for sealed TOTP seeds, and
recovery codes re-hashed from bare SHA-256 to salted Argon2id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Each stored recovery-code hash was SHA-256(normalised code) in hex; it becomes
Argon2id(that hex), which the gateway checks by hashing a presented code the same way, so
the codes users hold keep working and no bare SHA-256 is left. TOTP seeds cannot be sealed
here (the key is a runtime setting): a plain seed is sealed the next time it is used, and
``docs/accounts.md`` says how to force it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ecrin_e2ee import OneTimeCodeHash

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

accounts = sa.table("accounts", sa.column("id", sa.Uuid()),
                    sa.column("recovery_code_hashes", sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger()))
        batch.alter_column("totp_secret", type_=sa.String(255),
                           existing_type=sa.String(64))
    bind = op.get_bind()
    for row in bind.execute(sa.select(accounts.c.id, accounts.c.recovery_code_hashes)):
        hashes = list(row.recovery_code_hashes or [])
        if not any(len(h) == 64 and not h.startswith("$") for h in hashes):
            continue
        upgraded = [OneTimeCodeHash.hash(h.encode()) if not h.startswith("$") else h
                    for h in hashes]
        bind.execute(sa.update(accounts).where(accounts.c.id == row.id)
                     .values(recovery_code_hashes=upgraded))


def downgrade() -> None:
    # Not reversible in kind: sealed seeds and Argon2id hashes stay as they are (the
    # previous release cannot read them: its users re-enrol), only the step is dropped.
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("totp_last_step")
