"""audit chain: every audit entry sealed into a SHA-256 hash chain

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:00:00

Issue #17, an audit log that cannot be changed quietly. Each entry gets its place in
the chain (`seq`), the hash of the entry before it and its own hash (core/audit.py);
`audit_chain` holds the head (the last sealed entry) and where the kept chain starts
once retention has archived the oldest entries; its one row is made by the first seal.
Entries are written unsealed and sealed just after their commit (storage/audit_chain.py):
the entries already here are sealed by the first seal after this migration, in id
order.

The entries' user no longer becomes NULL when the user row is deleted (a sealed entry
must not change): such a delete is refused while entries name the user, who is
deactivated instead, as the bot has always done.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = "fk_audit_log_actor_user_id_users"


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("base_seq", sa.BigInteger(), nullable=False),
        sa.Column("base_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("archived_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.drop_constraint(FOREIGN_KEY, type_="foreignkey")
        batch_op.create_foreign_key(FOREIGN_KEY, "users", ["actor_user_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_audit_log_seq"), ["seq"], unique=True)
        batch_op.create_index(batch_op.f("ix_audit_log_actor_user_id"), ["actor_user_id"],
                              unique=False)
        batch_op.create_index("ix_audit_log_unsealed", ["id"], unique=False,
                              sqlite_where=sa.text("seq IS NULL"),
                              postgresql_where=sa.text("seq IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_unsealed")
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_user_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_seq"))
        batch_op.drop_constraint(FOREIGN_KEY, type_="foreignkey")
        batch_op.create_foreign_key(FOREIGN_KEY, "users", ["actor_user_id"], ["id"],
                                    ondelete="SET NULL")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    op.drop_table("audit_chain")
