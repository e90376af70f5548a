"""handled updates: each webhook update is handled once, by one process

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00

Telegram may post an update again (it did not see our 200 in time, or a proxy
retried), and behind one URL the copy may reach another process. The receiver records
the update_id before handling it (INSERT … ON CONFLICT DO NOTHING); a copy finds it
taken and is only acknowledged. Rows are kept a day, pruned by received_at.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handled_updates",
        sa.Column("update_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=False, nullable=False),
        sa.Column("received_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_handled_updates")),
    )
    op.create_index(op.f("ix_handled_updates_received_at"), "handled_updates",
                    ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_handled_updates_received_at"), table_name="handled_updates")
    op.drop_table("handled_updates")
